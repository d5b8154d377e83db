"""Run finner's stages in order on one store; with no arguments, the embedded demo end to end.

    python -m jobs.pipeline                                  # embedded sample, local Ray, ./finner-data, offline
    python -m jobs.pipeline --real --store ./finner-real     # the real headlines of ../shared/data, scored on the real gold
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
import dataclasses
import importlib
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from dataclasses import dataclass, field

import pyarrow.compute as pc

from finner.artifacts import PLOTS_DIR, REPORTS_DIR
from finner.config import Config, ConfigError, add_config_args, help_text
from finner.errors import FinnerError
from finner.gold import GOLD_REAL
from finner.label import ResponseFormat
from finner.models.registry import MODEL_KINDS, ModelKind
from finner.pipeline import cli
from finner.progress import say
from finner.schemas import GOLD_SUBMITTED, TABLES
from finner.store import Store, StoreConfig
from finner.training_data import ALL_ROWS, GOLD_LABELS, LLM_LABELS, SAMPLE_ROWS

ARGILLA_URL_ENV = "ARGILLA_API_URL"
DEMO_EPOCHS = 3
# `--real`: the real Benzinga headlines and listing that ship beside a checkout (../shared/data).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REAL_EPOCHS = 2
# `--real` before any review: the LLM's labels of every year's headlines (chosen on both dev parts, docs/results.md)
REAL_FEED_ROWS = ALL_ROWS


@dataclass(frozen=True)
class PipelineConfig(Config):
    """The pipeline's own flags: the feed, its labeler, the models. Flags of one stage's job go
    through `--stage-args` and are checked by that job."""

    path: str | None = field(default=None, metadata=help_text("local feed file or folder; none: the embedded sample"))
    hub: bool = field(default=False, metadata=help_text("stream the FNSPID Benzinga rows from the Hugging Face hub"))
    endpoint: str | None = field(default=None, metadata=help_text("chat-completions endpoint URL; none: the built-in listing labeller endpoint (not an LLM)"))
    response_format: ResponseFormat = field(default="tgi", metadata=help_text("constrained-output form the endpoint speaks"))
    llm_model: str | None = field(default=None, metadata=help_text("model name sent to the endpoint (vLLM needs it)"))
    listings: str | None = field(default=None, metadata=help_text("symbol,name CSV: the built-in endpoint's gazetteer and the ticker check's list"))
    models: tuple[ModelKind, ...] = field(default=MODEL_KINDS, metadata=help_text("compact models to fine-tune and evaluate"))
    offline: bool | None = field(
        default=None, metadata=help_text("build models on the packaged local encoder, not hub checkpoints; unset: on for the embedded demo only")
    )
    epochs: int | None = field(default=None, metadata=help_text(f"fine-tuning epochs; none: the training job's (20), or {DEMO_EPOCHS} for the demo", at_least=1))
    train_workers: int = field(default=1, metadata=help_text("Ray Train workers", at_least=1))
    learning_curve: bool = field(default=False, metadata=help_text("also run the learning curve (always on for the demo)"))
    gold: str | None = field(
        default=None, metadata=help_text("gold to evaluate on: real (the hand-labelled real headlines shipped with finner) or a gold JSONL file; none: reviewed gold")
    )
    real: bool = field(
        default=False,
        metadata=help_text(
            "the real-text run: the real headlines and listing of ../shared/data, labelled by the built-in labeller, models "
            "trained on the whole labelled feed, evaluated and drawn against the shipped hand-labelled gold"
        ),
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.models:
            raise ConfigError("models", f"name at least one of {list(MODEL_KINDS)}")

    @property
    def embedded(self) -> bool:
        return not (self.path or self.hub)

    def with_demo_defaults(self) -> PipelineConfig:
        """The embedded demo runs offline and trains a few epochs, unless told otherwise; `--real`
        fills in the real feed, its listing, the real gold and the learning curve."""
        if self.real:
            return dataclasses.replace(
                self,
                path=self.path or str(SHARED_DATA / "benzinga_headlines.parquet"),
                listings=self.listings or str(SHARED_DATA / "company_listings.csv"),
                gold=self.gold or GOLD_REAL,
                offline=True if self.offline is None else self.offline,
                epochs=self.epochs or REAL_EPOCHS,
                learning_curve=True,
                real=False,
            )
        offline = self.embedded if self.offline is None else self.offline
        epochs = DEMO_EPOCHS if self.embedded and self.epochs is None else self.epochs
        return dataclasses.replace(self, offline=offline, epochs=epochs)


@dataclass(frozen=True)
class Stage:
    name: str
    build: Callable[[PipelineConfig, Store], list[list[str]] | str]  # argv of each job call, or why the stage is skipped
    job: str  # module under jobs/


def _offline(cfg: PipelineConfig) -> list[str]:
    return ["--offline"] if cfg.offline else []


# The offline demo trains fresh heads on a local encoder for a few epochs: the case study's 5e-6
# (tuned for an already-trained GLiNER) would leave them untouched. Rates measured by the training tests.
DEMO_FIT_FLAGS = {
    "gliner": ["--learning-rate", "5e-5", "--head-learning-rate", "1e-3"],
    "spanmarker": ["--learning-rate", "1e-4", "--head-learning-rate", "5e-3", "--batch-size", "2"],
}
DEMO_CURVE_FLAGS = ["--sizes", "25", "50", "100"]
# The real gold's dev pool (202 headlines after validation) is the n = 200 point; a fresh head on the
# offline encoder needs a couple of hundred steps before it predicts anything, whatever n is.
REAL_CURVE_FLAGS = ["--sizes", "25", "50", "100", "--feed-sizes", "1000", "3000", "--min-steps", "200"]


def _fit_flags(cfg: PipelineConfig, kind: str) -> list[str]:
    epochs = ["--epochs", str(cfg.epochs)] if cfg.epochs else []
    return epochs + (DEMO_FIT_FLAGS[kind] if cfg.offline else []) + _offline(cfg)


def ingest_argv(cfg, store):
    return [["--path", cfg.path] if cfg.path else ["--hub"] if cfg.hub else []]


def label_argv(cfg, store):
    if cfg.endpoint:
        endpoint = ["--endpoint", cfg.endpoint, "--response-format", cfg.response_format] + (["--model", cfg.llm_model] if cfg.llm_model else [])
    else:
        endpoint = ["--test-endpoint"] + (["--listings", cfg.listings] if cfg.listings else [])
    return [endpoint]


def curate_argv(cfg, store):
    # The embedded feed has 400 headlines: 5% of it is too few to train and evaluate on.
    return [["--fraction", "1"] if cfg.embedded else []]


def _review(subcommand: str):
    def build(cfg, store):
        if not os.environ.get(ARGILLA_URL_ENV):
            return f"no {ARGILLA_URL_ENV}: human review skipped (start one with `python -m jobs.review serve`, see README)"
        return [[subcommand]]

    return build


def _has_gold(store: Store) -> bool:
    return bool(store.ids("gold", filter=pc.field("status") == GOLD_SUBMITTED))


def _training_source(cfg: PipelineConfig, store: Store) -> tuple[str, str]:
    """(labels, rows) the models train on: reviewed gold where there is some (the sample's rows);
    else the LLM's labels, of every labelled headline of the real feed (weak supervision; the
    gold's and the sample's valid/test title twins left out), of the sample otherwise."""
    if _has_gold(store):
        return GOLD_LABELS, SAMPLE_ROWS
    return LLM_LABELS, REAL_FEED_ROWS if cfg.gold == GOLD_REAL else SAMPLE_ROWS


def train_argv(cfg, store):
    labels, rows = _training_source(cfg, store)
    return [["--kind", kind, "--labels", labels, "--rows", rows, "--num-workers", str(cfg.train_workers), *_fit_flags(cfg, kind)] for kind in cfg.models]


NO_GOLD = "no reviewed gold yet (review-pull found no submitted rows): skipped"


def _no_gold(cfg: PipelineConfig, store: Store) -> bool:
    """Evaluation needs gold: reviewed rows, a gold file, or the embedded feed's generated truth."""
    return not (cfg.embedded or cfg.gold or _has_gold(store))


def _gold(cfg: PipelineConfig) -> list[str]:
    return ["--gold", cfg.gold] if cfg.gold else ["--gold", "embedded"] if cfg.embedded else []


def evaluate_argv(cfg, store):
    if _no_gold(cfg, store):
        return NO_GOLD
    labels, rows = _training_source(cfg, store)
    return [["--models", *cfg.models, "spacy", "llm", *_gold(cfg), "--train-labels", labels, "--train-rows", rows, *_offline(cfg)]]


def learning_curve_argv(cfg, store):
    if not (cfg.learning_curve or cfg.embedded):
        return "learning curve not asked for (--learning-curve)"
    if _no_gold(cfg, store):
        return NO_GOLD
    points = DEMO_CURVE_FLAGS if cfg.embedded else REAL_CURVE_FLAGS if cfg.gold == GOLD_REAL else []
    return [["--kind", cfg.models[0], *_gold(cfg), *points, *_fit_flags(cfg, cfg.models[0])]]


def score_argv(cfg, store):
    listings = ["--listings", cfg.listings] if cfg.listings else []
    # In the embedded feed's 400 headlines a company has a dozen rows: a nickname is on a few.
    aliases = ["--alias-min-rows", "3"] if cfg.embedded else []
    return [[*listings, *aliases]]


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


def report(store: Store) -> None:
    """What the run left in the store: rows per table and where the pictures and reports are."""
    rows = [f"{table} {store.dataset(table).count_rows():,}" for table in TABLES if store.exists(table)]
    say(f"  {store.root}, rows per table: {', '.join(rows)}")
    for folder in (PLOTS_DIR, REPORTS_DIR):
        directory = os.path.dirname(store.artifact(folder, "x"))
        if files := sorted(os.listdir(directory)):
            say(f"  {directory}: {', '.join(files)}")


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


def run_job(stage: Stage, argv: list[str]) -> None:
    say(f"[{stage.name}] python -m jobs.{stage.job} {shlex.join(argv)}")
    status = importlib.import_module(f"jobs.{stage.job}").main(argv)
    if status:
        raise FinnerError(f"stage job jobs.{stage.job} failed (exit {status}); fix it and re-run: finished work is kept")


def main(argv: list[str] | None = None) -> int:
    p = cli.parser("python -m jobs.pipeline", __doc__.split("\n\n")[0])
    add_config_args(p, PipelineConfig)
    flow = p.add_argument_group("flow")
    flow.add_argument("--from", dest="from_stage", choices=STAGE_NAMES, help="start at this stage")
    flow.add_argument("--until", choices=STAGE_NAMES, help="stop after this stage (e.g. review-push, then let people review)")
    flow.add_argument("--only", nargs="+", choices=STAGE_NAMES, help="run just these stages")
    flow.add_argument("--skip", nargs="+", default=[], choices=STAGE_NAMES, help="stages not to run")
    flow.add_argument("--stage-args", action="append", default=[], metavar="STAGE=FLAGS", help='extra flags for one stage\'s job, e.g. label="--max-in-flight 64"')
    args = p.parse_args(argv)

    def body(cfg: PipelineConfig) -> None:
        cfg = cfg.with_demo_defaults()
        store = cli.store_from(args)
        extra = stage_args(args.stage_args)
        common = ["--store", args.store] + (["--verbose"] if args.verbose else [])  # a verbose pipeline runs verbose stages
        if store.config != StoreConfig():
            common += ["--retention-hours", str(store.config.retention_hours)]
        names = selected(args)
        started = time.perf_counter()
        for stage in STAGES:
            if stage.name not in names:
                continue
            start = time.perf_counter()
            calls = stage.build(cfg, store)
            if isinstance(calls, str):
                say(f"[{stage.name}] {calls}")
                continue
            for call in calls:
                run_job(stage, [*common, *call, *extra.get(stage.name, [])])
            say(f"[{stage.name}] done in {time.perf_counter() - start:.1f}s")
        if "report" in names:
            say("[report]")
            report(store)
        say(f"pipeline finished in {time.perf_counter() - started:.1f}s")

    return cli.run(body, args, configs=(PipelineConfig,))


if __name__ == "__main__":
    sys.exit(main())
