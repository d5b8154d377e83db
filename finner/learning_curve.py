"""The learning curve of the case study's last figure: test F1 against training-set size, when a
compact model is fine-tuned on (a) the LLM's labels and (b) gold labels.

Both curves train on the same headlines, shuffled once with a seed; the subset of size n is the
first n of that order, so every larger subset contains the smaller ones. Only the labels differ.
Model selection uses validation rows labelled the same way as the training rows (the LLM curve
never sees gold before the test), and every point is scored on the gold test split with
`finner.evaluate`, subject companies.

* Reviewed or embedded gold: the train-split rows that have both an LLM label and a gold label;
  validation is the valid split.
* The real gold (`--gold real`, split dev/test): the dev headlines, less `--valid-rows` of them held
  out for validation. The LLM curve then goes on past the dev part with the feed's own labelled
  headlines (`--feed-sizes`, train years, no gold twin): can thousands of weak labels beat
  hundreds of human ones?

Training runs in-process (`finner.train.fit_locally`; no Ray needed: each point is one small
fine-tuning), for `--epochs` passes or at least `--min-steps` steps. Finished points are kept in
the store (`_meta/learning_curve-<model>.json`, keyed by a fingerprint of everything that changes
the numbers), so a re-run resumes after the last finished point, and their rows go to the
`metrics` table (stage `learning_curve`, setting `lc-<labels>-<n>`).
"""

from __future__ import annotations

import dataclasses
import math
import random
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from finner import artifacts, schemas
from finner.bootstrap import BootstrapConfig, difference, f1_interval
from finner.config import Config, ConfigError, help_text
from finner.errors import FinnerError
from finner.evaluate import Result, evaluate, llm_predictions, write_metrics
from finner.gold import DEV, GOLD_AUTO, GOLD_REAL, Gold
from finner.ids import stable_hash
from finner.metrics import EXACT, MATCHES, PRF
from finner.models.registry import ModelSpec, build_model, load_checkpoint
from finner.models.train_config import TrainConfig
from finner.plots import pyplot, save_figure
from finner.progress import progress_bar
from finner.roles import RULES_VERSION
from finner.store import Store
from finner.train import fit_locally, seed_everything, steps_per_epoch
from finner.training_data import GOLD_LABELS, LLM_LABELS, ROW_COLUMNS, feed_train_rows, llm_labelled

STAGE = "learning_curve"
CurveLabels = Literal["llm", "gold"]  # the label sources a curve compares (LLM_LABELS, GOLD_LABELS)


@dataclass(frozen=True)
class CurveConfig(Config):
    """Which points to draw; the model is a `ModelSpec`, the fine-tuning a `TrainConfig`."""

    sizes: tuple[int, ...] = field(default=(100, 250, 500, 1000), metadata=help_text("training-set sizes (sizes above the rows available are skipped)", at_least=1))
    include_all: bool = field(default=True, metadata=help_text("add points trained on the whole shared pool and on every row a label source has"))
    labels: tuple[CurveLabels, ...] = field(default=(LLM_LABELS, GOLD_LABELS), metadata=help_text("training-label sources to draw curves for: llm, gold"))
    shuffle_seed: int = field(default=0, metadata=help_text("seed of the shuffle that orders the training headlines (subsets are prefixes)", at_least=0))
    gold: str = field(default=GOLD_AUTO, metadata=help_text("gold: review (the gold table), real (the shipped hand-labelled headlines), embedded (the demo feed's truth), auto"))
    split: str = field(default="test", metadata=help_text("split every point is scored on"))
    valid_rows: int = field(default=40, metadata=help_text("with --gold real: dev headlines held out to choose each point's best epoch", at_least=1))
    feed_sizes: tuple[int, ...] = field(
        default=(1000, 3000), metadata=help_text("with --gold real: LLM-curve sizes past the dev part, from the feed's labelled train-year headlines", at_least=1)
    )
    min_steps: int = field(
        default=0,
        metadata=help_text("train every point for at least N steps (small points get more than --epochs passes); 0 = --epochs passes for every point", at_least=0),
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.labels:
            raise ConfigError("labels", f"name one or both of {LLM_LABELS}, {GOLD_LABELS}")


def curve_fingerprint(cfg: CurveConfig, spec: ModelSpec, train: TrainConfig, gold: Gold) -> str:
    """Everything that changes a point's numbers (not which points are drawn)."""
    return stable_hash(
        {
            "spec": dataclasses.asdict(spec),
            "train": dataclasses.asdict(train),
            "min_steps": cfg.min_steps,
            "seed": cfg.shuffle_seed,
            "split": cfg.split,
            "gold": gold.source,
            "subject_rules": RULES_VERSION,  # the rules each point's spans pass through
        },
        length=12,
    )


def point_training(cfg: CurveConfig, train: TrainConfig, size: int) -> TrainConfig:
    """The fine-tuning of an n-headline point: `--epochs` passes, or as many as `--min-steps` takes.
    With a fixed number of passes a 25-headline point takes a few dozen steps, too few for a fresh
    head to predict anything, and the curve's left end measures the step count, not the labels."""
    epochs_for_min_steps = math.ceil(cfg.min_steps / steps_per_epoch(size, 1, train.batch_size))
    return dataclasses.replace(train, epochs=max(train.epochs, epochs_for_min_steps))


def setting(labels: str, size: int) -> str:
    """metrics.setting of a point: `lc-llm-250`."""
    return f"lc-{labels}-{size}"


def point_of(name: str) -> tuple[str, int]:
    """(labels, size) of a `setting` name."""
    _, labels, size = name.split("-")
    return labels, int(size)


@dataclass(frozen=True)
class TrainingSets:
    """The shared pool of training headlines and, per label source, its train and valid tables;
    `extra`: ids past the pool that only the LLM curve trains on (the feed's own labels)."""

    pool: list[str]  # ids, in subset order
    train: dict[str, pa.Table]  # labels -> (id, title, spans)
    valid: dict[str, pa.Table]
    extra: list[str] = dataclasses.field(default_factory=list)

    def available(self, labels: str) -> int:
        return len(self.pool) + (len(self.extra) if labels == LLM_LABELS else 0)

    def subset(self, labels: str, size: int) -> pa.Table:
        wanted = pa.array((self.pool + (self.extra if labels == LLM_LABELS else []))[:size], pa.string())
        return self.train[labels].filter(pc.is_in(self.train[labels].column("id"), wanted))


def training_sets(store: Store, gold: Gold, cfg: CurveConfig) -> TrainingSets:
    """The headlines both curves train on, in a seeded order, and each label source's rows."""
    if gold.source == GOLD_REAL:
        return real_training_sets(store, gold, cfg)
    train = {LLM_LABELS: llm_labelled(store, "train"), GOLD_LABELS: gold.split("train").select(["id", "title", "spans"])}
    both = set(train[LLM_LABELS].column("id").to_pylist()) & set(train[GOLD_LABELS].column("id").to_pylist())
    if not both:
        raise FinnerError("no train-split headline has both an LLM label and a gold label: nothing to draw the curve from")
    pool = sorted(both)
    random.Random(cfg.shuffle_seed).shuffle(pool)
    valid = {LLM_LABELS: llm_labelled(store, "valid"), GOLD_LABELS: gold.split("valid").select(["id", "title", "spans"])}
    for labels in cfg.labels:
        if not valid[labels].num_rows:
            raise FinnerError(f"no valid-split rows with {labels} labels: the best checkpoint is chosen on them")
    return TrainingSets(pool, train, valid)


def real_training_sets(store: Store, gold: Gold, cfg: CurveConfig) -> TrainingSets:
    """The real gold's dev headlines (human spans, subject companies) and the store's LLM spans of
    the same headlines, less a held-out validation part; then the feed's LLM-labelled train-year
    headlines with no gold twin, for the LLM curve's larger points."""
    dev = gold.subjects().split(DEV).select(ROW_COLUMNS)
    ids = dev.column("id").to_pylist()
    llm = pa.table({"id": ids, "title": dev.column("title"), "spans": pa.array(llm_predictions(store, ids), schemas.SPANS)})
    order = list(ids)
    random.Random(cfg.shuffle_seed).shuffle(order)
    held_out, pool = order[: cfg.valid_rows], order[cfg.valid_rows :]
    if not pool:
        raise FinnerError(f"--valid-rows {cfg.valid_rows} leaves no dev headline to train on ({len(ids)} in dev)")
    feed = feed_train_rows(store).select(ROW_COLUMNS).cast(llm.schema)  # the feed's columns are non-null
    extra = feed.column("id").to_pylist()
    random.Random(cfg.shuffle_seed).shuffle(extra)
    rows = lambda table, wanted: table.filter(pc.is_in(table.column("id"), pa.array(wanted, pa.string())))  # noqa: E731
    return TrainingSets(
        pool,
        {LLM_LABELS: pa.concat_tables([rows(llm, pool), feed]), GOLD_LABELS: rows(dev, pool)},
        {LLM_LABELS: rows(llm, held_out), GOLD_LABELS: rows(dev, held_out)},
        extra,
    )


def curve_sizes(cfg: CurveConfig, sets: TrainingSets, labels: str) -> list[int]:
    available = sets.available(labels)
    wanted = set(cfg.sizes) | (set(cfg.feed_sizes) if sets.extra and labels == LLM_LABELS else set())
    every = {len(sets.pool), available} if cfg.include_all else set()  # the whole shared pool, and all this source has
    sizes = sorted({n for n in wanted if n <= available} | every)
    if not sizes:
        raise FinnerError(f"every size in --sizes exceeds the {available} training rows available; add smaller sizes or --include-all")
    return sizes


def run_curve(
    cfg: CurveConfig, spec: ModelSpec, train: TrainConfig, store: Store, gold: Gold, progress: bool = True, bootstrap: BootstrapConfig = BootstrapConfig()
) -> list[Result]:
    """Fine-tune one fresh model per (labels, size), score each on the gold `cfg.split`, keep the
    numbers in the store as each finishes (with every headline's counts, so a resumed point gets
    its interval too), and return every point's Result (resumed or new)."""
    sets = training_sets(store, gold, cfg)
    test = gold.subjects().split(cfg.split)
    if not test.num_rows:
        raise FinnerError(f"no gold rows in the {cfg.split!r} split to score the curve on")
    key, fingerprint = artifacts.learning_curve_key(spec.kind), curve_fingerprint(cfg, spec, train, gold)
    saved = store.get_json(key) or {}
    done: dict[str, dict] = saved.get("points", {}) if saved.get("fingerprint") == fingerprint else {}
    # smallest first, both label sources at each size: a stopped run leaves comparable pairs
    points = sorted(((labels, n) for labels in cfg.labels for n in curve_sizes(cfg, sets, labels)), key=lambda point: (point[1], point[0]))
    results = []
    for labels, n in progress_bar(points, desc=f"learning curve ({spec.kind})", unit=" points", enabled=progress):
        name = setting(labels, n)
        if name not in done:
            seed_everything(train.seed)  # every point starts from the same fresh head
            with tempfile.TemporaryDirectory(prefix="finner-lc-") as output_dir:
                options = dataclasses.asdict(point_training(cfg, train, n))
                checkpoint = fit_locally(build_model(spec), sets.subset(labels, n), sets.valid[labels], output_dir, **options)
                predicted = load_checkpoint(spec.kind, checkpoint, threshold=spec.threshold).predict(test.column("title").to_pylist())
            (result,) = evaluate(spec.kind, name, test, predicted, bootstrap=bootstrap)
            write_metrics(store, [result], stage=STAGE)
            done[name] = {
                "labels": labels, "size": n, "n_headlines": result.n_headlines,
                **{m: dataclasses.asdict(prf) for m, prf in result.scores.items()},
                "headline_counts": {m: runs[0].tolist() for m, runs in result.runs.items()},
            }  # fmt: skip
            store.put_json(key, {"fingerprint": fingerprint, "model": spec.source(), "seed": train.seed, "gold": gold.description, "points": done})
        results.append(_result(spec.kind, name, cfg.split, done[name], bootstrap))
    return results


def _result(model: str, name: str, split: str, point: dict, bootstrap: BootstrapConfig) -> Result:
    """A finished point's Result; its intervals from the headline counts it was stored with (a
    point stored before they were has none)."""
    runs = {m: (np.array(counts, dtype=np.int64).reshape(-1, 3),) for m, counts in point.get("headline_counts", {}).items()}
    intervals = {m: f1_interval(counts, bootstrap) for m, (counts,) in runs.items()}
    return Result(model, name, split, {m: PRF(**point[m]) for m in MATCHES}, point["n_headlines"], intervals=intervals, runs=runs)


def _points(results: Sequence[Result]) -> dict[str, dict[int, Result]]:
    curves: dict[str, dict[int, Result]] = {}
    for r in results:
        labels, size = point_of(r.setting)
        curves.setdefault(labels, {})[size] = r
    return curves


def markdown_curve(results: Sequence[Result], match: str = EXACT, bootstrap: BootstrapConfig = BootstrapConfig()) -> str:
    """Test F1 [95% interval] by training size (rows) and label source (columns); with both
    sources, the LLM labels' F1 minus the gold labels' at each size, with the paired interval."""
    curves = _points(results)
    sources = [labels for labels in (LLM_LABELS, GOLD_LABELS) if labels in curves]
    sizes = sorted({size for curve in curves.values() for size in curve})
    cell = lambda labels, n: curves[labels][n].f1_text(match) if n in curves[labels] else "N/A"  # noqa: E731

    def gap(n: int) -> str:
        llm, gold = (curves.get(labels, {}).get(n) for labels in (LLM_LABELS, GOLD_LABELS))
        if llm is None or gold is None or match not in llm.runs or match not in gold.runs:
            return "N/A"
        diff = difference(llm.runs[match], gold.runs[match], bootstrap)
        return f"{100 * diff.value:+.1f} [{100 * diff.interval.low:+.1f}, {100 * diff.interval.high:+.1f}]"

    both = len(sources) == 2
    split = results[0].split if results else "test"
    return "\n".join(
        [
            f"{split.capitalize()}-set F1 ({match} match) after fine-tuning on n headlines [95% bootstrap interval over headlines]:",
            "",
            "| Training headlines | " + " | ".join(f"F1 ({labels} labels)" for labels in sources) + (" | llm - gold (points) |" if both else " |"),
            "| --: |" + " --: |" * (len(sources) + both),
            *(f"| {n} | " + " | ".join(cell(labels, n) for labels in sources) + (f" | {gap(n)} |" if both else " |") for n in sizes),
        ]
    )


def plot_curve(results: Sequence[Result], store: Store, model: str, match: str = EXACT) -> str:
    """F1 against training-set size with its 95% interval, one line per label source; returns the PNG's location."""
    plt = pyplot()
    curves = _points(results)
    figure, ax = plt.subplots(figsize=(6, 4))
    for labels, colour in ((GOLD_LABELS, "tab:blue"), (LLM_LABELS, "tab:red")):
        if labels in curves:
            points = sorted(curves[labels].items())
            sizes, f1 = [n for n, _ in points], [r.f1(match) for _, r in points]
            intervals = [r.intervals.get(match) for _, r in points]  # the 95% bootstrap interval, where a point has one
            low = [f - i.low if i else 0.0 for f, i in zip(f1, intervals)]
            high = [i.high - f if i else 0.0 for f, i in zip(f1, intervals)]
            ax.errorbar(sizes, f1, yerr=[low, high], fmt="o-", capsize=3, color=colour, label=f"{labels} labels")
    sizes = [size for curve in curves.values() for size in curve]
    if sizes and max(sizes) > 20 * min(sizes):  # 25 hand-labelled headlines to thousands of weak ones
        ax.set_xscale("log")
    ax.set_xlabel("training headlines")
    ax.set_ylabel(f"test F1 ({match} match)")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"{model}: fine-tuned on LLM labels vs gold labels")
    return save_figure(figure, store, artifacts.PLOTS_DIR, f"learning_curve_{model}.png")
