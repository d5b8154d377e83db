"""Ray Data wiring of the scoring stage: `headlines` -> CPU preparation tasks -> model actors ->
writing tasks -> `predictions`.

* **Read**: the committed `headlines` (id, title only) minus the ids already scored by the same
  `model_version`, streamed by Ray Data tasks (`finner.pipeline.todo`), so a re-run only scores
  what is left (resumable, idempotent) and the driver holds no headline; the stream is cut into
  one block per commit (`commit_batches` batches of `batch_rows`: `in_batches`), so idle actors
  take the next one and each commit's summary reaches the driver (progress) as soon as it is
  written. A block of one batch would be small enough for Ray to keep in its owner's memory, the
  driver's, instead of the object store, and the queue of blocks waiting for slow actors would
  grow the driver with the feed (docs/scale.md).
* **Runtime**: `--runtime auto` is resolved first (`finner.score.choose_runtime`): torch on GPUs;
  on CPUs the fastest runtime whose spans agree with torch's on the feed's first headlines. The
  check runs in a one-CPU Ray task whose process exits after it, so the driver never loads a
  model; the store remembers the choice (`remembered_runtime_choice`), so a re-run or a resumed
  job takes the same runtime, and keeps its model version, without checking again.
* **Prepare** (`--prepare tasks`): `map_batches` tasks run `finner.score.prepare` (gliner's word
  splitting, sub-word tokenization and collation into padded, length-bucketed numpy arrays) on the
  CPUs of the cluster, so this Python-heavy work scales with CPUs instead of holding up a GPU. The
  arrays reach the actors as Arrow list columns (`Prepared.to_arrow`), no pickle in the blocks.
  `--prepare actor` leaves it to the actors (one process does everything, as CPU actors may prefer).
* **Score**: `ScoreActor`, a callable class holding one loaded model (or a vote's models), in an autoscaling actor pool
  (`ActorPoolStrategy(min_actors, max_actors)`); on GPUs it only moves the arrays to the device,
  runs the forward pass and decodes there (`finner.score.decode_spans`).
* **Write**: `map_batches` tasks turn scored batches into `predictions` rows and append every
  `--commit-batches` of them in one commit named after its ids, so a killed job loses only the
  batches in flight, a Ray retry of a committed batch changes nothing, and no actor waits on the
  store. The stage ends by compacting the table's small files (`Store.compact`, in a worker of its
  own: `finner.pipeline.worker`).
* **Throughput**: each batch reports its preparation CPU seconds and the actor's busy seconds; the
  summary (headlines/s per CPU of preparation, per actor, for the job) is stored as
  `score_throughput` for the cost report, which says which side bounds the job.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from finner import artifacts
from finner.config import Config, ConfigError, config_from_dict, help_text
from finner.ids import stable_hash
from finner.models.gliner import load_gliner
from finner.pipeline.todo import write_task_options, DoneRule, in_batches, todo_dataset
from finner.pipeline.worker import in_worker
from finner.progress import progress_bar
from finner.score import (
    Prepared,
    RuntimeChoice,
    ScoreConfig,
    Scorer,
    default_forward_rows,
    model_version,
    name_map_from_spans,
    prediction_rows,
    prepare,
    remembered_runtime_choice,
    title_spans,
)
from finner.store import BOUNDED_SCAN, Store

@dataclass(frozen=True)
class ScoreRunConfig(Config):
    """How the scoring job runs on Ray."""

    min_actors: int = field(default=1, metadata=help_text("actors kept alive; the pool grows to --max-actors while work queues", at_least=1))
    max_actors: int = field(default=1, metadata=help_text("most actors (GPU nodes the autoscaler may add, or CPU workers)", at_least=1))
    actor_cpus: float = field(default=1.0, metadata=help_text("CPUs reserved per actor (CPU actors compute with --threads threads)", more_than=0))
    gpus: Literal["auto", "yes", "no"] = field(
        default="auto", metadata=help_text("GPU actors: auto = when the cluster has GPUs now; yes = also when the autoscaler must add GPU nodes first")
    )
    gpus_per_actor: float = field(default=1.0, metadata=help_text("GPUs per GPU actor (0.5: two actors share one GPU)", more_than=0, at_most=1))
    prepare: Literal["tasks", "actor"] = field(
        default="tasks",
        metadata=help_text("tasks: CPU tasks tokenize and collate ahead of the actors, which only run the model; actor: each actor prepares its own batches"),
    )
    task_cpus: float = field(default=1.0, metadata=help_text("CPUs reserved per preparation task", more_than=0))
    batch_rows: int = field(default=512, metadata=help_text("headlines per batch", at_least=1))
    commit_batches: int = field(
        default=4,
        metadata=help_text(
            "scored batches per commit to the predictions table, and per block of headlines an actor takes: "
            "fewer, larger commits cost less; a killed job loses the uncommitted ones",
            at_least=1,
        ),
    )
    limit: int = field(default=0, metadata=help_text("score at most this many headlines in this run; 0 = all not yet scored", at_least=0))
    agreement_rows: int = field(
        default=200, metadata=help_text("the feed's first headlines on which --runtime auto/onnx/onnx-int8 is compared with torch", at_least=1)
    )
    agreement_tolerance: float = field(
        default=0.02, metadata=help_text("a faster runtime needs span F1 against torch of at least 1 - this", at_least=0, at_most=1)
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.min_actors > self.max_actors:
            raise ConfigError("min_actors", f"must be at most --max-actors ({self.max_actors}), got {self.min_actors}")


@dataclass
class ScoreSummary:
    """What a run scored and how fast."""

    model_version: str
    rows: int = 0
    already_scored: int = 0
    elapsed_s: float = 0.0
    busy_s: dict[str, float] = field(default_factory=dict)  # actor -> seconds spent scoring (and preparing, with --prepare actor)
    actor_rows: dict[str, int] = field(default_factory=dict)
    prepare_cpu_s: float = 0.0  # CPU seconds of preparation, wherever it ran
    # actor -> (time its first commit finished, rows of that commit, time its last batch finished)
    windows: dict[str, tuple[float, int, float]] = field(default_factory=dict)
    device: str = "cpu"
    runtime: str = "torch"
    prepare: str = "tasks"
    choice: RuntimeChoice | None = None

    def add(self, batch: pa.Table) -> None:
        columns = ("actor", "rows", "busy_s", "prepare_cpu_s", "device", "finished_at")
        for actor, rows, busy, prepare_cpu, device, finished in zip(*(batch[c].to_pylist() for c in columns)):
            self.rows += rows
            self.actor_rows[actor] = self.actor_rows.get(actor, 0) + rows
            self.busy_s[actor] = self.busy_s.get(actor, 0.0) + busy
            self.prepare_cpu_s += prepare_cpu
            self.device = device
            # A commit writes several batches at one time: all of them count as the first window's.
            first, first_rows, last = self.windows.get(actor, (finished, 0, finished))
            if finished < first:
                first, first_rows = finished, rows
            elif finished == first:
                first_rows += rows
            self.windows[actor] = (first, first_rows, max(last, finished))

    @property
    def per_actor_hps(self) -> float:
        """Headlines per second of one actor while it works (rows / busy seconds, over actors)."""
        busy = sum(self.busy_s.values())
        return self.rows / busy if busy else 0.0

    @property
    def prepare_hps_per_cpu(self) -> float:
        """Headlines per CPU-second of preparation (tokenization and collation)."""
        return self.rows / self.prepare_cpu_s if self.prepare_cpu_s else 0.0

    @property
    def job_hps(self) -> float:
        """End to end, actor start-up (model loading) included."""
        return self.rows / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def steady_hps(self) -> float:
        """Headlines/s once the actors are up: per actor, the rows after its first commit over the time
        from its first to its last written batch (preparing, waiting and writing included), summed.
        What a long run converges to; 0.0 when no actor finished two batches."""
        rates = [
            (self.actor_rows[a] - first_rows) / (last - first) for a, (first, first_rows, last) in self.windows.items() if last > first
        ]
        return sum(rates)

    def to_json(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version,
            "rows": self.rows,
            "already_scored": self.already_scored,
            "elapsed_s": round(self.elapsed_s, 3),
            "actors": len(self.busy_s),
            "per_actor_headlines_per_s": round(self.per_actor_hps, 3),
            "prepare": self.prepare,
            "prepare_headlines_per_cpu_s": round(self.prepare_hps_per_cpu, 3),
            "job_headlines_per_s": round(self.job_hps, 3),
            "steady_headlines_per_s": round(self.steady_hps, 3),
            "device": self.device,
            "runtime": self.runtime,
            "runtime_reason": self.choice.reason if self.choice else None,
            "agreement_f1": self.choice.agreement_f1 if self.choice else None,
        }

    def line(self) -> str:
        return (
            f"scored {self.rows} headlines with {self.model_version} in {self.elapsed_s:.1f}s "
            f"({self.job_hps:.1f}/s; {self.per_actor_hps:.1f}/s per {self.device} actor, {len(self.busy_s)} actor(s); "
            f"preparation {self.prepare_hps_per_cpu:.1f}/s per CPU); {self.already_scored} already scored"
        )


@functools.lru_cache(maxsize=2)
def _preparer(model: str) -> Any:
    """The GLiNER whose tokenizer and collator a preparation task uses, loaded once per worker process."""
    return load_gliner(model, device="cpu")


def _timed_prepare(model: Any, titles: list[str], labels: tuple[str, ...], forward_rows: int) -> tuple[Prepared, float]:
    """`prepare`, and the CPU seconds it took (the process's, so tokenizer threads count too)."""
    started = time.process_time()
    prepared = prepare(model, titles, labels, forward_rows)
    return prepared, time.process_time() - started


def prepare_task(batch: pa.Table, model: str, labels: tuple[str, ...], forward_rows: int) -> pa.Table:
    """Ray Data task: one batch of (id, title) -> one row holding its `Prepared` arrays as Arrow
    list columns (`Prepared.to_arrow`), its ids and the CPU seconds preparation took."""
    prepared, cpu_s = _timed_prepare(_preparer(model), batch["title"].to_pylist(), labels, forward_rows)
    ids = pa.array([batch["id"].to_pylist()], pa.list_(pa.string()))
    return prepared.to_arrow().append_column("ids", ids).append_column("prepare_cpu_s", pa.array([cpu_s], pa.float64()))


class ScoreActor:
    """Ray Data actor: one model (or one vote) per actor; scores a prepared batch (or, with --prepare actor, a
    batch of titles it prepares itself) and returns its spans and timing for the writing task."""

    def __init__(self, score_config: dict[str, Any]):
        self.scorer = Scorer(config_from_dict(ScoreConfig, score_config))
        self.actor = f"{os.uname().nodename}-{os.getpid()}"

    def __call__(self, batch: pa.Table) -> pa.Table:
        started = time.perf_counter()
        if Prepared.carried_by(batch):
            (ids,), (prepare_cpu_s,) = batch["ids"].to_pylist(), batch["prepare_cpu_s"].to_pylist()
            prepared = Prepared.from_arrow(batch)
        else:
            ids = batch["id"].to_pylist()
            prepared, prepare_cpu_s = _timed_prepare(self.scorer.gliner, batch["title"].to_pylist(), self.scorer.config.labels, self.scorer.forward_rows)
        title, start, end, score = self.scorer.score(prepared)
        return pa.table(
            {
                "ids": pa.array([ids], pa.list_(pa.string())),
                "titles": pa.array([prepared.titles], pa.list_(pa.string())),
                "span_title": pa.array([title], pa.list_(pa.int32())),
                "span_start": pa.array([start], pa.list_(pa.int32())),
                "span_end": pa.array([end], pa.list_(pa.int32())),
                "span_score": pa.array([score], pa.list_(pa.float64())),
                "actor": [self.actor],
                "busy_s": [time.perf_counter() - started],
                "prepare_cpu_s": [prepare_cpu_s],
                "device": [self.scorer.device],
            }
        )


def write_task(batch: pa.Table, store_root: str, version: str, names: dict[str, str]) -> pa.Table:
    """Ray Data task: scored batches -> `predictions` rows, appended in one commit named after their
    ids (a Ray retry of a committed one changes nothing); returns each batch's timing (and when it
    was written) for the summary."""
    store = Store(store_root)
    stats = {"actor": [], "rows": [], "busy_s": [], "prepare_cpu_s": [], "device": [], "finished_at": []}
    predictions = []
    for row in batch.to_pylist():
        spans = title_spans(row["titles"], row["span_title"], row["span_start"], row["span_end"], row["span_score"])
        predictions.append(prediction_rows(row["ids"], spans, version, names))
        for key, value in (("actor", row["actor"]), ("rows", len(row["ids"])), ("busy_s", row["busy_s"]),
                           ("prepare_cpu_s", row["prepare_cpu_s"]), ("device", row["device"])):  # fmt: skip
            stats[key].append(value)
    rows = pa.concat_tables(predictions)
    store.append("predictions", rows, part=stable_hash([version, rows["id"].to_pylist()]))
    stats["finished_at"] = [time.time()] * len(predictions)
    return pa.table(stats)


def name_map(store: Store) -> dict[str, str]:
    """Name -> cluster representative from the curation stage's `spans` table, when it exists. Run
    in a worker (`in_worker`): the scan's buffers grow with the feed and Arrow's allocator keeps
    them, so the driver only receives the names (docs/scale.md)."""
    return name_map_from_spans(store.dataset("spans").to_batches(columns=["spans"])) if store.exists("spans") else {}  # streamed: one batch at a time


def _use_gpus(run: ScoreRunConfig) -> bool:
    import ray

    if run.gpus == "auto":
        return ray.cluster_resources().get("GPU", 0) > 0
    return run.gpus == "yes"


def _choice_on_feed_head(store: Store, config: ScoreConfig, rows: int, min_f1: float, gpus: bool) -> RuntimeChoice | None:
    """`remembered_runtime_choice` on the feed's first `rows` titles; None when there is no headline.
    A bounded scan (`BOUNDED_SCAN`): pyarrow's default read-ahead decodes most of the title column."""
    sample = store.dataset("headlines").head(rows, columns=["title"], **BOUNDED_SCAN)["title"].to_pylist()
    return remembered_runtime_choice(store, config, sample, min_f1, gpus=gpus) if sample else None


def runtime_choice(store: Store, config: ScoreConfig, run: ScoreRunConfig, gpus: bool) -> RuntimeChoice | None:
    """`remembered_runtime_choice` on the feed's first `run.agreement_rows` titles, read and checked in
    a one-CPU Ray task whose worker exits after it: neither the models it loads nor the scan's
    buffers ever live in the driver, nor in a worker kept for later tasks. None when there is no headline."""
    return in_worker(_choice_on_feed_head, store, config, run.agreement_rows, 1.0 - run.agreement_tolerance, gpus)


def run_scoring(store: Store, config: ScoreConfig, run: ScoreRunConfig, progress: bool = True) -> ScoreSummary:
    """The scoring stage: resolve the runtime, skip what this model version already scored, score
    the rest, store throughput."""
    import ray

    gpus = _use_gpus(run)
    config = dataclasses.replace(config, threshold=config.span_thresholds())  # the actors and the model version use the same ones
    choice = runtime_choice(store, config, run, gpus)  # None: no headline to score (or no headlines table, which todo_dataset reports)
    if choice is not None:
        config = dataclasses.replace(config, runtime=choice.runtime)
    version = model_version(config)
    todo = todo_dataset(store, DoneRule.at_start(store, "predictions", [("model_version", "=", version)]), ("id", "title"), limit=run.limit)
    summary = ScoreSummary(model_version=version, already_scored=todo.done, runtime=config.runtime, prepare=run.prepare, choice=choice)
    if todo.rows == 0:
        return summary
    store.ensure("predictions")
    if not config.forward_rows:  # the preparation tasks cut forward batches for the actors' device
        config = dataclasses.replace(config, forward_rows=default_forward_rows("cuda" if gpus else "cpu"))
    dataset = in_batches(todo, run.batch_rows * run.commit_batches)  # one block per commit: see the module docstring
    if run.prepare == "tasks":
        # With CPU actors of --task-cpus CPUs, Ray Data fuses this stage into the actors' (equal
        # resources): each actor then prepares its batches in its own process, as well on CPUs.
        dataset = dataset.map_batches(
            prepare_task,
            fn_kwargs={"model": config.preparing_model(), "labels": config.labels, "forward_rows": config.forward_rows},
            batch_size=run.batch_rows,
            batch_format="pyarrow",
            num_cpus=run.task_cpus,
        )
    dataset = dataset.map_batches(
        ScoreActor,
        fn_constructor_kwargs={"score_config": dataclasses.asdict(config)},
        batch_size=1 if run.prepare == "tasks" else run.batch_rows,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=run.min_actors, max_size=run.max_actors),
        num_cpus=run.actor_cpus,
        num_gpus=run.gpus_per_actor if gpus else 0,
    )
    dataset = dataset.map_batches(
        write_task,
        fn_kwargs={"store_root": store.root, "version": version, "names": in_worker(name_map, store)},
        batch_size=run.commit_batches,
        batch_format="pyarrow",
        **write_task_options(),
    )
    bar = progress_bar(desc="scoring", unit=" headlines", total=todo.rows, enabled=progress)
    started = time.perf_counter()
    for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
        summary.add(batch)
        bar.update(int(pc.sum(batch["rows"]).as_py()))
    summary.elapsed_s = time.perf_counter() - started
    bar.close()
    in_worker(store.compact, "predictions")  # one small file per batch -> a few large ones
    store.put_json(
        artifacts.SCORE_THROUGHPUT_KEY,
        summary.to_json() | {"gpus_per_actor": run.gpus_per_actor if summary.device == "cuda" else None, "actor_cpus": run.actor_cpus},
    )
    return summary
