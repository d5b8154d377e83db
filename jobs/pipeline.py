"""Run finner's stages in order on one store; with no arguments, the embedded demo end to end.

    python -m jobs.pipeline                                  # embedded sample, local Ray, ./finner-data, offline
    python -m jobs.pipeline --path feed.parquet --endpoint URL --until review-push
    # ... reviewers work in Argilla ...
    python -m jobs.pipeline --path feed.parquet --endpoint URL --from review-pull
    ray job submit --runtime-env runtime_env/pipeline.yaml -- python -m jobs.pipeline --hub --endpoint URL --store s3://b/finner

Stages: ingest -> label -> curate -> review-push -> [human review] -> review-pull -> train -> evaluate
-> learning-curve -> score -> report. Each stage is one job (`python -m jobs.<stage>`) over tables of
the store, so any stage can be skipped (`--skip`), re-run alone (`--only`), or the pipeline resumed
from one (`--from`); every job skips work it already finished, so re-running the pipeline after a
kill redoes nothing that was done. Extra flags reach one stage with `--stage-args STAGE="--flag value"`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from finner.errors import FinnerError
from finner.pipeline import cli
from finner.schemas import GOLD_SUBMITTED, TABLES

ARGILLA_URL_ENV = "ARGILLA_API_URL"


@dataclass(frozen=True)
class Stage:
    name: str
    build: Callable[[argparse.Namespace], list[list[str]] | None]  # argv of each job call; None: skipped (reason printed)
    job: str  # module under jobs/


def _embedded(args: argparse.Namespace) -> bool:
    return not (args.path or args.hub)


def _offline(args: argparse.Namespace) -> list[str]:
    return ["--offline"] if args.offline else []


# The offline demo trains fresh heads on a local encoder for a few epochs: the case study's 5e-6
# (tuned for an already-trained GLiNER) would leave them untouched. Rates measured by the training tests.
DEMO_FIT_FLAGS = {
    "gliner": ["--learning-rate", "5e-5", "--head-learning-rate", "1e-3"],
    "spanmarker": ["--learning-rate", "1e-4", "--head-learning-rate", "5e-3", "--batch-size", "2"],
}
DEMO_CURVE_SIZES = ["--sizes", "25", "50", "100"]


def _fit_flags(args: argparse.Namespace, kind: str) -> list[str]:
    epochs = ["--epochs", str(args.epochs)] if args.epochs else []
    return epochs + (DEMO_FIT_FLAGS[kind] if args.offline else []) + _offline(args)


def ingest_argv(args):
    return [["--path", args.path] if args.path else ["--hub"] if args.hub else []]


def label_argv(args):
    if args.endpoint:
        endpoint = ["--endpoint", args.endpoint, "--response-format", args.response_format] + (["--model", args.llm_model] if args.llm_model else [])
    else:
        endpoint = ["--test-endpoint"] + (["--listings", args.listings] if args.listings else [])
    return [endpoint]


def curate_argv(args):
    # The embedded feed has 400 headlines: 5% of it is too few to train and evaluate on.
    return [["--fraction", "1"] if _embedded(args) else []]


def _review(subcommand: str):
    def build(args):
        if not os.environ.get(ARGILLA_URL_ENV):
            print(f"  no {ARGILLA_URL_ENV}: human review skipped (start one with `python -m jobs.review serve`, see README)")
            return None
        return [[subcommand]]

    return build


def _has_gold(args) -> bool:
    import pyarrow.compute as pc

    return bool(cli.store_from(args).ids("gold", filter=pc.field("status") == GOLD_SUBMITTED))


def train_argv(args):
    labels = "gold" if _has_gold(args) else "llm"
    return [["--kind", kind, "--labels", labels, "--num-workers", str(args.train_workers), *_fit_flags(args, kind)] for kind in args.models]


def _no_gold(args) -> bool:
    """Evaluation needs gold: reviewed rows, or the embedded feed's generated truth."""
    if _embedded(args) or _has_gold(args):
        return False
    print("  no reviewed gold yet (review-pull found no submitted rows): skipped")
    return True


def evaluate_argv(args):
    if _no_gold(args):
        return None
    gold = ["--gold", "embedded"] if _embedded(args) else []
    labels = ["--train-labels", "gold" if _has_gold(args) else "llm"]
    return [["--models", *args.models, "spacy", "llm", *gold, *labels, *_offline(args)]]


def learning_curve_argv(args):
    if not (args.learning_curve or _embedded(args)):
        print("  learning curve not asked for (--learning-curve)")
        return None
    if _no_gold(args):
        return None
    demo = ["--gold", "embedded", *DEMO_CURVE_SIZES] if _embedded(args) else []
    return [["--kind", args.models[0], *demo, *_fit_flags(args, args.models[0])]]


def score_argv(args):
    listings = ["--listings", args.listings] if args.listings else []
    return [[*listings]]


STAGES: tuple[Stage, ...] = (
    Stage("ingest", ingest_argv, "ingest"),
    Stage("label", label_argv, "label"),
    Stage("curate", curate_argv, "curate"),
    Stage("review-push", _review("push"), "review"),
    Stage("review-pull", _review("pull"), "review"),
    Stage("train", train_argv, "train"),
    Stage("evaluate", evaluate_argv, "evaluate"),
    Stage("learning-curve", learning_curve_argv, "learning_curve"),
    Stage("score", score_argv, "score"),
)
STAGE_NAMES = [s.name for s in STAGES] + ["report"]


def report(args: argparse.Namespace) -> None:
    """What the run left in the store: rows per table and where the pictures are."""
    store = cli.store_from(args)
    print(f"  store {store.root}")
    for table in TABLES:
        if store.exists(table):
            print(f"  {table:<12} {store.dataset(table).count_rows():>9,} rows")
    for folder in ("plots", "reports"):
        directory = store.artifact(folder, "x").rsplit("/", 1)[0]
        if os.path.isdir(directory):
            for name in sorted(os.listdir(directory)):
                print(f"  plot         {directory}/{name}")


def selected(args: argparse.Namespace) -> list[str]:
    names = STAGE_NAMES
    if args.from_stage:
        names = names[names.index(args.from_stage) :]
    if args.until:
        names = names[: names.index(args.until) + 1]
    if args.only:
        names = [n for n in names if n in args.only]
    return [n for n in names if n not in args.skip]


def stage_args(values: list[str]) -> dict[str, list[str]]:
    extra: dict[str, list[str]] = {}
    for value in values:
        name, _, flags = value.partition("=")
        if name not in STAGE_NAMES:
            raise FinnerError(f"--stage-args {value!r}: unknown stage {name!r}; stages are {STAGE_NAMES}")
        extra.setdefault(name, []).extend(shlex.split(flags))
    return extra


def run_job(module: str, argv: list[str]) -> None:
    import importlib

    job = importlib.import_module(f"jobs.{module}")
    print(f"  python -m jobs.{module} {shlex.join(argv)}")
    status = job.main(argv)
    if status:
        raise FinnerError(f"stage job jobs.{module} failed (exit {status}); fix it and re-run: finished work is kept")


def main(argv: list[str] | None = None) -> int:
    p = cli.parser("python -m jobs.pipeline", __doc__.split("\n\n")[0])
    source = p.add_argument_group("source")
    source.add_argument("--path", help="local feed file or folder (default: the embedded sample)")
    source.add_argument("--hub", action="store_true", help="stream the FNSPID Benzinga rows from the Hugging Face hub")
    llm = p.add_argument_group("labeling")
    llm.add_argument("--endpoint", help="chat-completions endpoint URL (default: the built-in gazetteer endpoint, not an LLM)")
    llm.add_argument("--response-format", default="tgi", choices=("tgi", "openai", "llamacpp"), help="constrained-output form the endpoint speaks")
    llm.add_argument("--llm-model", help="model name sent to the endpoint (vLLM needs it)")
    llm.add_argument("--listings", help="symbol,name CSV: the built-in endpoint's gazetteer and the ticker check's list")
    models = p.add_argument_group("models")
    models.add_argument("--models", nargs="+", default=["gliner", "spanmarker"], choices=("gliner", "spanmarker"), help="compact models to fine-tune and evaluate")
    models.add_argument("--offline", action=argparse.BooleanOptionalAction, default=None, help="build models on the packaged local encoder, not hub checkpoints (default: on for the embedded demo)")
    models.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs (default: the training job's, 20; the demo uses 3)")
    models.add_argument("--train-workers", type=int, default=1, help="Ray Train workers")
    models.add_argument("--learning-curve", action="store_true", help="also run the learning curve (always on for the demo)")
    flow = p.add_argument_group("flow")
    flow.add_argument("--from", dest="from_stage", choices=STAGE_NAMES, help="start at this stage")
    flow.add_argument("--until", choices=STAGE_NAMES, help="stop after this stage (e.g. review-push, then let people review)")
    flow.add_argument("--only", nargs="+", choices=STAGE_NAMES, help="run just these stages")
    flow.add_argument("--skip", nargs="+", default=[], choices=STAGE_NAMES, help="stages not to run")
    flow.add_argument("--stage-args", action="append", default=[], metavar="STAGE=FLAGS", help='extra flags for one stage\'s job, e.g. label="--max-in-flight 64"')
    args = p.parse_args(argv)
    if args.offline is None:
        args.offline = _embedded(args)
    if _embedded(args) and args.epochs is None:
        args.epochs = 3

    def body() -> None:
        extra = stage_args(args.stage_args)
        names = selected(args)
        started = time.perf_counter()
        for stage in STAGES:
            if stage.name not in names:
                continue
            print(f"[{stage.name}]", flush=True)
            start = time.perf_counter()
            calls = stage.build(args)
            for call in calls or []:
                run_job(stage.job, ["--store", args.store, *call, *extra.get(stage.name, [])])
            if calls is not None:
                print(f"[{stage.name}] done in {time.perf_counter() - start:.1f}s", flush=True)
        if "report" in names:
            print("[report]")
            report(args)
        print(f"pipeline finished in {time.perf_counter() - started:.1f}s")

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
