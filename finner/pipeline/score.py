"""Ray Data wiring of the scoring stage: `headlines` -> GLiNER actor pool -> `predictions`.

* **Read**: the committed `headlines` (id, title only) minus the ids already scored by the same
  `model_version`, so a re-run only scores what is left (resumable, idempotent), cut into one Ray
  Data block per actor call (`ray.data.from_arrow`).
* **Actors**: `map_batches` with `ScoreActor`, a callable class holding one loaded model, in an
  autoscaling actor pool (`concurrency=(min_actors, max_actors)`). With GPUs each actor takes
  `num_gpus=1` (fp16/bf16 autocast); otherwise CPU actors with `threads` intra-op threads each.
* **Writes**: every finished batch is appended by the actor to `predictions` as one atomic part
  named after its ids, so a killed job loses only the batches in flight and a Ray retry of a batch
  overwrites its own part instead of duplicating rows.
* **Throughput**: actors report rows and busy seconds per batch; the summary (headlines/s per
  actor and for the job) is stored as `score_throughput` for the cost report.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from finner import artifacts
from finner.config import Config, ConfigError, config_from_dict, help_text
from finner.errors import FinnerError
from finner.ids import stable_hash
from finner.score import ScoreConfig, Scorer, check_runtime, model_version, name_map_from_spans, prediction_rows
from finner.progress import progress_bar
from finner.store import Store, todo_headlines


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
    batch_rows: int = field(default=512, metadata=help_text("headlines per actor call; each finished batch is one appended part", at_least=1))
    limit: int = field(default=0, metadata=help_text("score at most this many headlines in this run; 0 = all not yet scored", at_least=0))
    agreement_rows: int = field(default=200, metadata=help_text("with --runtime onnx/onnx-int8: headlines used to compare it with the torch path first", at_least=1))
    agreement_tolerance: float = field(default=0.02, metadata=help_text("refuse the faster runtime when its span F1 against torch is below 1 - this", at_least=0, at_most=1))

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
    busy_s: dict[str, float] = field(default_factory=dict)  # actor -> seconds spent predicting
    actor_rows: dict[str, int] = field(default_factory=dict)
    # actor -> (time its first batch finished, rows of that batch, time its last batch finished)
    windows: dict[str, tuple[float, int, float]] = field(default_factory=dict)
    device: str = "cpu"
    runtime: str = "torch"
    agreement_f1: float | None = None

    def add(self, batch: pa.Table) -> None:
        columns = ("actor", "rows", "busy_s", "device", "finished_at")
        for actor, rows, busy, device, finished in zip(*(batch[c].to_pylist() for c in columns)):
            self.rows += rows
            self.actor_rows[actor] = self.actor_rows.get(actor, 0) + rows
            self.busy_s[actor] = self.busy_s.get(actor, 0.0) + busy
            self.device = device
            first, first_rows, last = self.windows.get(actor, (finished, rows, finished))
            self.windows[actor] = (min(first, finished), first_rows if finished >= first else rows, max(last, finished))

    @property
    def per_actor_hps(self) -> float:
        """Headlines per second of one actor while it predicts (rows / busy seconds, over actors)."""
        busy = sum(self.busy_s.values())
        return self.rows / busy if busy else 0.0

    @property
    def job_hps(self) -> float:
        """End to end, actor start-up (model loading) included."""
        return self.rows / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def steady_hps(self) -> float:
        """Headlines/s once the actors are up: per actor, the rows after its first batch over the time
        from its first to its last finished batch (reading, waiting and writing included), summed.
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
            "job_headlines_per_s": round(self.job_hps, 3),
            "steady_headlines_per_s": round(self.steady_hps, 3),
            "device": self.device,
            "runtime": self.runtime,
            "agreement_f1": self.agreement_f1,
        }

    def line(self) -> str:
        return (
            f"scored {self.rows} headlines with {self.model_version} in {self.elapsed_s:.1f}s "
            f"({self.job_hps:.1f}/s; {self.per_actor_hps:.1f}/s per {self.device} actor, {len(self.busy_s)} actor(s)); "
            f"{self.already_scored} already scored"
        )


class ScoreActor:
    """Ray Data actor: one model per actor; predicts a batch, appends it, returns its timing."""

    def __init__(self, score_config: dict[str, Any], store_root: str, version: str, names: dict[str, str]):
        config = config_from_dict(ScoreConfig, {**score_config, "labels": tuple(score_config["labels"])})
        self.scorer = Scorer(config)
        self.store = Store(store_root)
        self.version = version
        self.names = names
        self.actor = f"{os.uname().nodename}-{os.getpid()}"

    def __call__(self, batch: pa.Table) -> pa.Table:
        started = time.perf_counter()
        ids = batch["id"].to_pylist()
        rows = prediction_rows(ids, self.scorer.predict(batch["title"].to_pylist()), self.version, self.names)
        busy = time.perf_counter() - started
        self.store.append("predictions", rows, part=stable_hash([self.version, ids]))
        return pa.table(
            {"actor": [self.actor], "rows": [len(ids)], "busy_s": [busy], "device": [self.scorer.device], "finished_at": [time.time()]}
        )


def name_map(store: Store) -> dict[str, str]:
    """Name -> cluster representative from the curation stage's `spans` table, when it exists."""
    return name_map_from_spans(store.read("spans", columns=["spans"])) if store.exists("spans") else {}


def _use_gpus(run: ScoreRunConfig) -> bool:
    import ray

    if run.gpus == "auto":
        return ray.cluster_resources().get("GPU", 0) > 0
    return run.gpus == "yes"


def run_scoring(store: Store, config: ScoreConfig, run: ScoreRunConfig, progress: bool = True) -> ScoreSummary:
    """The scoring stage: skip what this model version already scored, score the rest, store throughput."""
    import ray

    version = model_version(config)
    todo, already = todo_headlines(store, "predictions", pc.field("model_version") == version)
    summary = ScoreSummary(model_version=version, already_scored=already, runtime=config.runtime)
    if run.limit:
        todo = todo.slice(0, run.limit)
    if todo.num_rows == 0:
        return summary
    gpus = _use_gpus(run)
    if config.runtime != "torch":
        summary.agreement_f1 = check_runtime(config, todo.slice(0, run.agreement_rows)["title"].to_pylist(), run.agreement_tolerance)
    store.ensure("predictions")
    # One block per actor call: idle actors take the next block, and each call's summary reaches the
    # driver (progress) as soon as its batch is written. The blocks are cut here rather than by a
    # Ray read + repartition, whose tasks need a CPU that busy CPU actors may hold (a deadlock).
    blocks = [todo.slice(start, run.batch_rows) for start in range(0, todo.num_rows, run.batch_rows)]
    dataset = ray.data.from_arrow(blocks)
    dataset = dataset.map_batches(
        ScoreActor,
        fn_constructor_kwargs={
            "score_config": dataclasses.asdict(config),
            "store_root": store.root,
            "version": version,
            "names": name_map(store),
        },
        batch_size=run.batch_rows,
        batch_format="pyarrow",
        concurrency=(run.min_actors, run.max_actors),
        num_cpus=run.actor_cpus,
        num_gpus=run.gpus_per_actor if gpus else 0,
    )
    bar = progress_bar(desc="scoring", unit=" headlines", total=todo.num_rows, enabled=progress)
    started = time.perf_counter()
    for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
        summary.add(batch)
        bar.update(int(pc.sum(batch["rows"]).as_py()))
    summary.elapsed_s = time.perf_counter() - started
    bar.close()
    store.put_json(artifacts.SCORE_THROUGHPUT_KEY, summary.to_json() | {"gpus_per_actor": run.gpus_per_actor if summary.device == "cuda" else None})
    return summary


