"""Fine-tuning on Ray Train: Ray Data streams the labelled rows from the store into a `TorchTrainer`.

Why this shape (ray 2.60, Train v2):

* **Rows** are Ray Datasets read from the store's parquet parts (`Store.files` on
  `Store.filesystem`, so any pyarrow filesystem) through the same pure per-batch selection the
  library streams them with (`finner.training_data.RowSet`): the sample's split, or every
  train-year headline of the feed minus the title twins of held-out headlines. Nothing of their size
  passes through the driver (one streaming pass counts and fingerprints them), the loop config or
  a worker's memory.
* **Model inputs** are made by a Ray Data `map_batches` pool of CPU actors (one with CPU workers,
  up to one per GPU worker): every `--batch-size` rows become one training batch by the adapter's
  `batch_encoder` (gliner's collator; span_marker's normalizer, tokenizer and collator), which each
  actor builds from the model spec (the driver never loads the model). A row of the train dataset
  is a training batch.
* **Shards**: `TorchTrainer(datasets=...)` splits `train` between the workers
  (`streaming_split(equal=True)` under `preserve_order`, so every worker gets the same number of
  batches per epoch, and the same batches again on a re-run) and gives every worker the whole
  `valid` set (each scores every world-size-th row; it is the sample's valid split, small by
  construction, so a worker reads it once and keeps it). A worker pulls its batches through
  `iter_batches` with `PREFETCH_BATCHES` in flight and a `SHUFFLE_BATCHES` local shuffle buffer
  re-seeded every epoch: it holds a bounded number of batches, whatever the size of the feed, and
  the encoders run at most `INGEST_BYTES` ahead of it. As it starts, a worker asks for its first
  batch (`EarlyStart`) and reads its validation rows, on threads of their own, so the pipeline's
  start-up (its coordinator and encoder actors) and the validation read overlap the worker's
  model build.
* **Loop**: each worker runs the library's own Hugging Face Trainer through `finner.train.fine_tune`
  on the process group Ray Train set up (`ScalingConfig(use_gpu=...)`: one worker per GPU, bf16/fp16
  on CUDA; CPU workers otherwise). `prepare_trainer` would do the Ray Data half of this (it swaps
  in a loader for `iter_torch_batches`), but our stream also resumes mid-epoch, so the loop swaps in
  its own. Validation and checkpoints are ours too: `RayTrainReportCallback` reports HF's own step
  checkpoints, ours carry the optimizer, the schedule and the position in the stream.
* **Checkpoints**: every validation is reported with a checkpoint; Ray keeps the best by
  `valid_f1` and the latest (`CheckpointConfig(num_to_keep=1)`). The best is copied to the store as
  `models/<name>` (without its optimizer state), and the run is summarised under
  `_meta/train-<name>.json`, its validations under `_meta/train-<name>-epochs.json` as they come.

A re-run with the same model, rows and hyper-parameters finds its summary and does nothing
(`--force` retrains); a failed run leaves the previous model in place. A killed run is taken up
where it stopped: the Ray Train run is named by the model and a fingerprint of its data and settings,
so the re-run finds the run's checkpoints in the store (Train v2 restores them) and the workers
resume from the latest, mid-epoch, without repeating a step (`finner.train.Resume`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import random
import re
import tempfile
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from finner import artifacts
from finner.config import Config, config_from_dict, help_text
from finner.errors import FinnerError
from finner.ids import stable_hash
from finner.models.base import NerModel
from finner.models.registry import GLINER, ModelSpec, build_model, load_checkpoint
from finner.models.train_config import Example, TrainConfig
from finner.pipeline.cli import init_ray
from finner.progress import progress_bar, say
from finner.store import Store, filesystem_of
from finner.train import RESUME_DIR, SCORE_METRIC, Resume, examples, fine_tune, seed_everything, steps_per_epoch, total_training_steps
from finner.training_data import SAMPLE_ROWS, TRAIN_SPLIT, VALID_SPLIT, LabelSource, RowSet, RowSource, describe, gold_parts, model_name, training_rows

RUN_FINGERPRINT = "[0-9a-f]{12}"  # the run name's suffix: stable_hash(data and settings, length=12)
TRAIN, VALID = "train", "valid"  # the Trainer's dataset names
IDS_COLUMN = "finner_row_ids"  # beside the model inputs of a batch: the ids of its rows
DATA_CPUS = 0.25  # CPUs of each Ray Data read task or encoder actor
DATA_CPU_RESERVE = 0.5  # CPUs CPU workers leave to Ray Data (one encoder actor and one read task) when they size themselves
BLOCK_BYTES = 2**20  # most bytes in a Ray Data block (~40 encoded GLiNER batches of 4): a worker maps whole blocks, prefetching some
# The object store the training stream may fill ahead of the workers: how far encoding runs ahead. Large
# enough for a whole epoch of a real training set (~35 MiB for the real feed's 5.7k train-year rows):
# Ray Data 2.60's scheduling loop polls without pause while this budget holds it back and no task
# runs, so a budget smaller than the epoch keeps the stream's coordinator busy on a core of its own.
INGEST_BYTES = 256 * BLOCK_BYTES
PREFETCH_BATCHES = 4  # batches a worker fetches ahead of the one it trains on
SHUFFLE_BATCHES = 16  # batches a worker shuffles among before training on them
PROGRESS_WRITE_S = 5.0  # rank 0 writes the step it reached at most this often
PROGRESS_POLL_S = 2.0  # the driver's progress bar reads it this often


@dataclass(frozen=True)
class TrainJobConfig(Config):
    """Where the training rows come from and how the run is spread over Ray."""

    labels: LabelSource = field(default="llm", metadata=help_text("training labels: llm (the LLM's spans), gold (reviewed spans) or teacher (a trained model's spans of the feed, written by jobs.relabel; with --rows feed or all)"))
    rows: RowSource = field(
        default=SAMPLE_ROWS,
        metadata=help_text("training headlines: sample (the sample's train split), feed (every LLM-labelled headline of the train years, title twins of held-out headlines removed) or all (the same, of every year)"),
    )
    num_workers: int = field(default=1, metadata=help_text("Ray Train workers (data-parallel replicas; one per GPU)", at_least=1))
    gpu: Literal["auto", "yes", "no"] = field(
        default="auto", metadata=help_text("one GPU per worker: auto = when the Ray cluster has GPUs now; yes = also when the autoscaler must add GPU nodes first")
    )
    worker_cpus: float = field(
        default=0.0,
        metadata=help_text(f"CPUs per Ray Train worker; 0 = 1 per GPU worker, and CPU workers share what the cluster has less {DATA_CPU_RESERVE:g} left to Ray Data (at most 1 each)", at_least=0),
    )
    name: str = field(default="", metadata=help_text("model name in the store (models/<name>); default: <kind>-<labels>, <kind>-<labels>-<rows> with --rows feed or all"))
    max_train_rows: int = field(default=0, metadata=help_text("train on the first N training rows only; 0 = all", at_least=0))
    record_rows: bool = field(default=False, metadata=help_text("write the ids every worker trained on, per epoch and batch, to the trained_rows table (an audit trail)"))
    force: bool = field(default=False, metadata=help_text("retrain even if the same run already finished"))


@dataclass(frozen=True)
class TrainSummary:
    name: str
    path: str
    train_rows: int
    valid_rows: int
    best: dict[str, Any]
    evaluations: list[dict[str, Any]]
    fingerprint: str
    rows: str = SAMPLE_ROWS
    twins_removed: int = 0
    resumed_at_step: int | None = None
    seed: int = 0
    gold_overlap: dict[str, dict[str, int]] = field(default_factory=dict)  # gold source -> split -> training title keys in it
    reused: bool = False

    def line(self) -> str:
        start = self.evaluations[0][SCORE_METRIC] if self.evaluations else float("nan")
        verb = "already trained" if self.reused else f"trained on {self.train_rows} {self.rows} rows, seed {self.seed}"
        if self.twins_removed and not self.reused:
            verb += f" ({self.twins_removed} title twins of held-out headlines left out)"
        if self.resumed_at_step is not None and not self.reused:
            verb += f" (resumed at step {self.resumed_at_step} of a killed run)"
        return (
            f"{self.name}: {verb}; validation F1 {start:.3f} before training, best {self.best[SCORE_METRIC]:.3f} "
            f"at step {self.best['step']} (epoch {self.best['epoch']:g}; {self.valid_rows} validation rows) -> {self.path}"
        )


def _exists(uri: str) -> bool:
    fs, path = filesystem_of(uri)
    return fs.get_file_info(path).type == pafs.FileType.Directory


def _delete_runs(runs_dir: str, name: str) -> None:
    """Remove every Ray Train run directory of model `name`."""
    fs, path = filesystem_of(runs_dir)
    for info in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)):
        if info.type == pafs.FileType.Directory and re.fullmatch(rf"{re.escape(name)}-{RUN_FINGERPRINT}", info.base_name):
            fs.delete_dir(info.path)


def _publish(checkpoint: Any, destination: str) -> None:
    """Copy a Ray checkpoint's model to `destination` (not the optimizer state it resumes with),
    replacing what was there only once the copy is whole."""
    fs, path = filesystem_of(destination)
    staging = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    fs.create_dir(staging, recursive=True)
    pafs.copy_files(checkpoint.path, staging, source_filesystem=checkpoint.filesystem, destination_filesystem=fs)
    if fs.get_file_info(f"{staging}/{RESUME_DIR}").type == pafs.FileType.Directory:
        fs.delete_dir(f"{staging}/{RESUME_DIR}")
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_dir(path)
    fs.move(staging, path)


def _use_gpu(job: TrainJobConfig) -> bool:
    import ray

    if job.gpu != "auto":
        return job.gpu == "yes"
    return ray.cluster_resources().get("GPU", 0) >= 1


def worker_resources(job: TrainJobConfig, use_gpu: bool) -> dict[str, float]:
    """One GPU and one CPU per GPU worker; CPU workers share the cluster's CPUs less what Ray Data needs."""
    import ray

    if job.worker_cpus:
        cpus = job.worker_cpus
    elif use_gpu:
        cpus = 1.0
    else:
        cpus = min(1.0, math.floor(100 * (ray.cluster_resources().get("CPU", 0) - DATA_CPU_RESERVE) / job.num_workers) / 100)
        if cpus <= 0:
            raise FinnerError(f"the Ray cluster has too few CPUs for {job.num_workers} CPU workers and Ray Data; lower --num-workers or set --worker-cpus")
    return {"CPU": cpus, **({"GPU": 1.0} if use_gpu else {})}


# -- Ray Data: rows and batches ------------------------------------------------------------------


def _read_rows(paths: dict[str, np.ndarray], rows: RowSet, filesystem: pafs.FileSystem) -> Iterator[pa.Table]:
    for raw in rows.read_parts(filesystem, paths["path"].tolist()):
        yield rows.select(raw)


def rows_dataset(store: Store, rows: RowSet) -> Any:
    """A row set as a Ray Dataset of (id, title, spans): one Ray Data task per parquet part of its
    table reads the part and applies the selection (held gold rows are handed over whole)."""
    import ray.data

    if rows.held is not None:
        dataset = ray.data.from_arrow(rows.held).map_batches(rows.select, batch_format="pyarrow", batch_size=None, num_cpus=DATA_CPUS)
    else:
        parts = ray.data.from_items([{"path": path} for path in store.files(rows.table)])
        dataset = parts.map_batches(
            _read_rows, fn_kwargs={"rows": rows, "filesystem": store.filesystem}, batch_size=1, batch_format="numpy", num_cpus=DATA_CPUS
        )
    return dataset.limit(rows.limit) if rows.limit else dataset


def encode_batch(rows: pa.Table, encoder: Any, seed: int) -> dict[str, np.ndarray]:
    """`rows` -> one Ray Data row holding one training batch: every model input as one array (its
    shape varies from batch to batch) and the batch's row ids. gliner's collator draws from
    Python's `random` (a blanked entity type now and then): seeded here from `seed` and the batch's
    ids, a batch is encoded the same whichever actor encodes it, in whatever order."""
    ids = np.empty(1, dtype=object)
    ids[0] = rows.column("id").to_pylist()
    random.seed(stable_hash([seed, ids[0]]))
    return {**{name: array[np.newaxis] for name, array in encoder(examples(rows)).items()}, IDS_COLUMN: ids}


class BatchEncoder:
    """A Ray Data actor's body: every `batch_size` rows become one training batch by the adapter's
    `batch_encoder`, built here from the model spec once per actor (the weights it comes with are
    dropped). Built in the pipeline rather than the driver: the driver never imports the model's
    library, and the encoders start while the workers build their models."""

    def __init__(self, spec: dict[str, Any], seed: int) -> None:
        self.encoder, self.seed = build_model(config_from_dict(ModelSpec, spec)).batch_encoder(), seed

    def __call__(self, rows: pa.Table) -> dict[str, np.ndarray]:
        return encode_batch(rows, self.encoder, self.seed)


def train_dataset(store: Store, rows: RowSet, spec: ModelSpec, batch_size: int, encoders: int, seed: int) -> Any:
    """The training batches: rows read and selected in Ray Data tasks, then encoded `batch_size`
    rows at a time by the adapter's own preprocessing in a pool of 1 to `encoders` CPU actors."""
    from ray.data import ActorPoolStrategy

    return rows_dataset(store, rows).map_batches(
        BatchEncoder, fn_constructor_kwargs={"spec": dataclasses.asdict(spec), "seed": seed}, batch_size=batch_size, batch_format="pyarrow",
        num_cpus=DATA_CPUS, compute=ActorPoolStrategy(min_size=1, max_size=encoders),
    )  # fmt: skip


# -- the job -------------------------------------------------------------------------------------


def train_on_ray(spec: ModelSpec, config: TrainConfig, job: TrainJobConfig, store: Store) -> TrainSummary:
    """Fine-tune `spec` on the store's labelled rows with Ray Train, keep the checkpoint with the best
    validation F1, and publish it to the store (joins `$RAY_ADDRESS`, else starts a local Ray)."""
    from ray.data import DataContext, ExecutionOptions, ExecutionResources
    from ray.train import CheckpointConfig, DataConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    name = model_name(spec.kind, job.labels, job.name, job.rows)
    train_rows = training_rows(store, job.labels, job.rows, TRAIN_SPLIT, job.max_train_rows)
    valid_rows = training_rows(store, job.labels, job.rows, VALID_SPLIT)
    train, valid = describe(store, train_rows, gold_parts(store)), describe(store, valid_rows)
    if not train.rows or not valid.rows:
        raise FinnerError(f"{job.labels} labels, {job.rows} rows: {train.rows} train and {valid.rows} valid rows; both splits need rows")
    if train_rows.held is None:
        say(f"{job.rows}: {train.rows} training rows; {train.twins_removed} rows left out as title twins of held-out headlines")
    epoch_steps = steps_per_epoch(train.rows, job.num_workers, config.batch_size)
    # The training rows themselves, not the tables' version names: curation rewrites its tables
    # (same rows, new version) on every pipeline run, and that must not retrain. The worker count
    # is in: it decides which batches each worker trains on, and so what a checkpoint's position means.
    run_fingerprint = stable_hash(
        {
            "spec": spec.source(), "threshold": spec.threshold, "train": dataclasses.asdict(config), "labels": job.labels, "rows": job.rows,
            "data": [train.digest, valid.digest], "max_rows": job.max_train_rows, "workers": job.num_workers,
        },
        length=12,
    )
    previous = store.get_json(artifacts.train_summary_key(name))
    if previous and previous.get("fingerprint") == run_fingerprint and not job.force and _exists(previous["path"]):
        fields = {f.name for f in dataclasses.fields(TrainSummary)} - {"reused"}
        return TrainSummary(**({"seed": config.seed} | {k: previous[k] for k in fields if k in previous}), reused=True)  # a summary older than its seed field

    init_ray()
    use_gpu = _use_gpu(job)
    runs_dir = store.artifact(artifacts.RAY_RUNS_DIR, "runs")
    encoders = job.num_workers if use_gpu else 1  # CPU workers leave room for one (DATA_CPU_RESERVE)
    # The same batches for the same worker on every run (what a resumed position relies on), and
    # encoding at most INGEST_BYTES ahead of training. (Built here: `DataConfig.default_ingest_options()`
    # sets a deprecated field and warns.)
    ingest = ExecutionOptions(preserve_order=True, resource_limits=ExecutionResources(object_store_memory=INGEST_BYTES))
    context = DataContext.get_current()  # captured with the datasets and handed to the workers
    context.enable_progress_bars = False  # the Ray logs go to the stage's log file
    context.target_max_block_size = BLOCK_BYTES
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={
            "spec": dataclasses.asdict(spec),
            "train": dataclasses.asdict(config),
            "epoch_steps": epoch_steps,
            "store": store.root,
            "history_key": artifacts.train_history_key(name),
            "progress_key": artifacts.train_progress_key(name),
            "record": {"model": name, "run": run_fingerprint} if job.record_rows else None,
        },
        datasets={TRAIN: train_dataset(store, train_rows, spec, config.batch_size, encoders, config.seed), VALID: rows_dataset(store, valid_rows)},
        dataset_config=DataConfig(datasets_to_split=[TRAIN], execution_options=ingest, enable_shard_locality=False),
        scaling_config=ScalingConfig(num_workers=job.num_workers, use_gpu=use_gpu, resources_per_worker=worker_resources(job, use_gpu)),
        run_config=RunConfig(
            name=f"{name}-{run_fingerprint}",  # the same run again after a kill: Ray restores its checkpoints
            storage_path=runs_dir,
            checkpoint_config=CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=SCORE_METRIC, checkpoint_score_order="max"),
        ),
    )
    try:
        with step_progress(store, artifacts.train_progress_key(name), f"train {name}", total_training_steps(config, epoch_steps)):
            result = trainer.fit()
    except Exception as err:  # Ray wraps worker errors (ours included) in its own types
        raise FinnerError(f"training {name} failed: {_root_message(err)}") from err
    if not result.best_checkpoints:
        raise FinnerError(f"training {name} reported no checkpoint")
    checkpoint, best = result.best_checkpoints[0]
    destination = artifacts.model_path(store, name)
    _publish(checkpoint, destination)
    _delete_runs(runs_dir, name)  # Ray's copies (and killed runs of other settings); models/<name> is kept
    history = store.get_json(artifacts.train_history_key(name))
    summary = TrainSummary(
        name, destination, train.rows, valid.rows, _plain(best), history["evaluations"], run_fingerprint, job.rows, train.twins_removed,
        history.get("resumed_at_step"), config.seed, train.gold_overlap,
    )
    record = dataclasses.asdict(summary) | {"spec": dataclasses.asdict(spec), "train": dataclasses.asdict(config), "gpu": use_gpu, "workers": job.num_workers}
    record.pop("reused")
    record["labels"] = job.labels  # what the model card says it learned from
    store.put_json(artifacts.train_summary_key(name), record)
    if spec.kind == GLINER:
        store.put_json(artifacts.SCORING_DEFAULT_KEY, {"path": destination, "name": name})  # the scoring job's default model
    return summary


@contextlib.contextmanager
def step_progress(store: Store, key: str, desc: str, total: int) -> Iterator[None]:
    """The stage's progress bar, in training steps: the workers run elsewhere, so rank 0 writes
    the step it reached to the store every few seconds (`progress_key`) and a thread here reads it."""
    store.put_json(key, {"step": 0})
    bar = progress_bar(desc=desc, unit=" steps", total=total)
    stop = threading.Event()

    def catch_up() -> None:
        bar.update((store.get_json(key) or {}).get("step", 0) - bar.n)

    def follow() -> None:
        while not stop.wait(PROGRESS_POLL_S):
            catch_up()

    thread = threading.Thread(target=follow, name="train-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        catch_up()
        bar.close()


def step_writer(store: Store, key: str, total: int) -> Callable[[int], None]:
    """Rank 0's half of `step_progress`: the step reached, written at most every few seconds, and the last one."""
    last = [0.0]

    def write(step: int) -> None:
        if step >= total or time.monotonic() - last[0] >= PROGRESS_WRITE_S:
            store.put_json(key, {"step": step})
            last[0] = time.monotonic()

    return write


# -- the worker ----------------------------------------------------------------------------------


def resumed_model(spec: ModelSpec, checkpoint_dir: str) -> NerModel:
    """The model of a killed run's checkpoint, training on as the original run did."""
    model = load_checkpoint(spec.kind, checkpoint_dir, threshold=spec.threshold)
    model.fresh_head = bool(spec.encoder_dir())  # the original run's head rate and loss weight
    return model


def in_background(work: Callable[[], Any], name: str) -> Future:
    """`work()` started now on a thread of its own; its result (or its error, raised in the thread
    that asks) when asked for."""
    future: Future = Future()

    def run() -> None:
        try:
            future.set_result(work())
        except BaseException as err:  # handed to the thread that asks
            future.set_exception(err)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


class EarlyStart:
    """An epoch's rows whose first row a thread starts fetching at once: Ray Data starts a split
    dataset's pipeline (its coordinator and encoder actors) only when a worker first asks for a
    row, and the worker would otherwise ask only after building its model and validating it. Any
    other epoch is read when it is asked for."""

    def __init__(self, rows: Callable[[int], Iterable[Any]], epoch: int) -> None:
        self.rows, self.epoch = rows, epoch
        self.started: Future | None = in_background(self._first_row_fetched, "train-early-start")

    def _first_row_fetched(self) -> Iterator[Any]:
        source = iter(self.rows(self.epoch))
        return itertools.chain(list(itertools.islice(source, 1)), source)

    def __call__(self, epoch: int) -> Iterator[Any]:
        if epoch != self.epoch or self.started is None:
            yield from self.rows(epoch)
            return
        started, self.started = self.started.result(), None
        yield from started


class TrainedRows:
    """`--record-rows`: the ids of the batches a worker is handed, written to the `trained_rows`
    table at every checkpoint for the batches trained on by then (one part per worker and step, so
    a resumed run that repeats a killed run's unregistered interval rewrites the same part)."""

    def __init__(self, store: Store, record: dict[str, str], rank: int, start: tuple[int, int]) -> None:
        self.store, self.record, self.rank, self.start = store, record, rank, start
        self.pending: list[tuple[int, int, list[str]]] = []  # (epoch, batch number in it, ids)

    def add(self, epoch: int, batch: int, ids: list[str]) -> None:
        if (epoch, batch) > self.start:  # batches read again only to be skipped were recorded by the killed run
            self.pending.append((epoch, batch, ids))

    def flush(self, step: int, position: tuple[int, int]) -> None:
        done = [entry for entry in self.pending if entry[:2] <= position]
        self.pending = [entry for entry in self.pending if entry[:2] > position]
        rows = [{**self.record, "rank": self.rank, "epoch": e, "batch": b, "id": i} for e, b, ids in done for i in ids]
        if rows:
            self.store.append("trained_rows", pa.Table.from_pylist(rows), part=f"{self.record['run']}-{self.rank:04d}-{step:010d}")


def read_valid_rows(valid_shard: Any, batch_size: int) -> list[Example]:
    """A worker's validation rows, read once and kept: the sample's valid split, small by construction."""
    return [row for batch in valid_shard.iter_batches(batch_size=batch_size, batch_format="pyarrow", prefetch_batches=1) for row in examples(batch)]


def train_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train's `train_loop_per_worker`: build the model (or take up a killed run's latest
    checkpoint), fine-tune it data-parallel on this worker's shard, and report every validation with
    rank 0's checkpoint. Rank 0 also writes the validations to the store (`history_key`) as they
    come, so a running job can be watched.

    `loop_config`: `spec` and `train` (ModelSpec / TrainConfig fields), `epoch_steps`, `store` (root),
    `history_key` and `record` (model name and run fingerprint with --record-rows, else None).
    """
    import ray.train

    spec = config_from_dict(ModelSpec, loop_config["spec"])
    config = config_from_dict(TrainConfig, loop_config["train"])
    store = Store(loop_config["store"])
    train_shard, valid_shard = ray.train.get_dataset_shard(TRAIN), ray.train.get_dataset_shard(VALID)

    def shard_rows(epoch: int) -> Iterable[dict[str, np.ndarray]]:
        return train_shard.iter_batches(
            batch_size=1, batch_format="numpy", prefetch_batches=PREFETCH_BATCHES,
            local_shuffle_buffer_size=SHUFFLE_BATCHES, local_shuffle_seed=config.seed + epoch,
        )

    seed_everything(config.seed)  # every worker builds the same fresh head
    checkpoint = ray.train.get_checkpoint()  # a killed run's latest (Train v2 restores a run's checkpoints)
    with checkpoint.as_directory() if checkpoint else contextlib.nullcontext() as checkpoint_dir:
        resume = Resume.read(checkpoint_dir) if checkpoint_dir else None
        start = (resume.position.epoch, resume.position.batches) if resume else (0, 0)
        epoch_rows = EarlyStart(shard_rows, start[0])  # the pipeline starts while the model is built
        valid_read = in_background(lambda: read_valid_rows(valid_shard, config.valid_batch_size), "train-valid-read")  # so does this
        model = resumed_model(spec, checkpoint_dir) if checkpoint_dir else build_model(spec)
    rank = ray.train.get_context().get_world_rank()
    recorder = TrainedRows(store, loop_config["record"], rank, start) if loop_config["record"] else None
    history: list[dict[str, Any]] = []
    if resume:  # the killed run's validations up to its checkpoint (which is not scored again)
        previous = store.get_json(loop_config["history_key"]) or {"evaluations": []}
        history = [e for e in previous["evaluations"] if e["step"] < resume.step] + [resume.state["metrics"]]

    def batches(epoch: int):
        for number, row in enumerate(epoch_rows(epoch), 1):
            if recorder:
                recorder.add(epoch, number, list(row[IDS_COLUMN][0]))
            yield model.model_inputs({name: value[0] for name, value in row.items() if name != IDS_COLUMN})

    def report(metrics: dict[str, Any], checkpoint: str | None) -> None:
        if recorder:
            recorder.flush(metrics["step"], tuple(metrics["position"]))
        if rank == 0:
            history.append(metrics)
            store.put_json(
                loop_config["history_key"],
                {"spec": dataclasses.asdict(spec), "train": dataclasses.asdict(config), "evaluations": history, "resumed_at_step": resume.step if resume else None},
            )
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(checkpoint) if checkpoint else None)

    with tempfile.TemporaryDirectory(prefix="finner-train-") as work_dir:
        total = total_training_steps(config, loop_config["epoch_steps"])
        on_step = step_writer(store, loop_config["progress_key"], total) if rank == 0 else None
        fine_tune(model, batches, valid_read.result, config, loop_config["epoch_steps"], work_dir, report, resume, on_step=on_step)


def _plain(metrics: dict[str, Any]) -> dict[str, Any]:
    """The metrics we reported (Ray adds bookkeeping keys of its own)."""
    return {k: v for k, v in metrics.items() if not k.startswith("_") and k not in ("timestamp", "checkpoint_dir_name")}


def _root_message(err: BaseException) -> str:
    """The first worker's original error: a worker's FinnerError reads as itself, not as Ray's wrapper."""
    for _ in range(8):
        failures = getattr(err, "worker_failures", None)  # ray.train WorkerGroupError: rank -> error
        inner = failures[min(failures)] if failures else getattr(err, "cause", None) or err.__cause__  # RayTaskError.cause
        if not isinstance(inner, BaseException):
            break
        err = inner
    return str(err) if isinstance(err, FinnerError) else f"{type(err).__name__}: {err}".splitlines()[0]
