"""Fine-tuning on Ray Train: a `TorchTrainer` running `train_worker` on N workers.

Why this shape (ray 2.60, Train v2): both libraries fine-tune through a `transformers.Trainer`
subclass, and the HF Trainer runs data-parallel on the torch process group every Ray Train worker
joins, so each worker runs the library's own Trainer unchanged. `prepare_trainer` only swaps in
loaders for Ray Data iterables (our few thousand labelled rows travel in the loop config instead),
and `RayTrainReportCallback` reports HF's own step checkpoints (optimizer state included) with
metrics from the log history, so checkpoints and metrics come from our per-epoch callback instead
(`finner.train.epoch_validation`), the custom `TrainerCallback` Ray's documentation points to.
Ray keeps the checkpoint with the best `valid_f1` (`CheckpointConfig(num_to_keep=1)`); it is
copied to the store as `models/<name>`, and the run is summarised under `_meta/train-<name>.json`.

A re-run with the same model, data version and hyper-parameters finds its summary and does
nothing (`--force` retrains); a failed run leaves the previous model in place. A killed run is
taken up where it stopped: the Ray Train run is named by the model and a fingerprint of its data
and settings, so the re-run finds the run's checkpoints in the store (Train v2 restores them) and
the workers resume from the latest finished epoch (`resume_checkpoint`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow.fs as pafs

from finner import artifacts
from finner.config import Config, config_from_dict, help_text
from finner.errors import FinnerError
from finner.ids import stable_hash
from finner.models.base import NerModel
from finner.models.registry import GLINER, ModelSpec, build_model, load_checkpoint
from finner.models.train_config import TrainConfig
from finner.pipeline.cli import init_ray
from finner.store import Store, filesystem_of
from finner.train import EPOCH_FILE, SCORE_METRIC, examples, fine_tune
from finner.training_data import TRAIN_SPLIT, VALID_SPLIT, LabelSource, labelled

RUN_FINGERPRINT = "[0-9a-f]{12}"  # the run name's suffix: stable_hash(data and settings, length=12)


@dataclass(frozen=True)
class TrainJobConfig(Config):
    """Where the training rows come from and how the run is spread over Ray."""

    labels: LabelSource = field(default="llm", metadata=help_text("training labels: llm (the sample's LLM spans) or gold (reviewed spans)"))
    num_workers: int = field(default=1, metadata=help_text("Ray Train workers (data-parallel replicas)", at_least=1))
    gpu: Literal["auto", "yes", "no"] = field(default="auto", metadata=help_text("one GPU per worker: auto = when the Ray cluster has GPUs"))
    name: str = field(default="", metadata=help_text("model name in the store (models/<name>); default: <kind>-<labels>"))
    max_train_rows: int = field(default=0, metadata=help_text("train on the first N training rows only; 0 = all", at_least=0))
    force: bool = field(default=False, metadata=help_text("retrain even if the same run already finished"))



@dataclass(frozen=True)
class TrainSummary:
    name: str
    path: str
    train_rows: int
    valid_rows: int
    best: dict[str, Any]
    epochs: list[dict[str, Any]]
    fingerprint: str
    resumed_after_epoch: int | None = None
    reused: bool = False

    def line(self) -> str:
        start = self.epochs[0][SCORE_METRIC] if self.epochs else float("nan")
        verb = "already trained" if self.reused else f"trained on {self.train_rows} rows"
        if self.resumed_after_epoch is not None and not self.reused:
            verb += f" (resumed after epoch {self.resumed_after_epoch} of a killed run)"
        return (
            f"{self.name}: {verb}; validation F1 {start:.3f} before training, best {self.best[SCORE_METRIC]:.3f} "
            f"at epoch {self.best['epoch']} ({self.valid_rows} validation rows) -> {self.path}"
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
    """Copy a Ray checkpoint to `destination`, replacing what was there only once the copy is whole."""
    fs, path = filesystem_of(destination)
    staging = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    fs.create_dir(staging, recursive=True)
    pafs.copy_files(checkpoint.path, staging, source_filesystem=checkpoint.filesystem, destination_filesystem=fs)
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_dir(path)
    fs.move(staging, path)


def _use_gpu(job: TrainJobConfig) -> bool:
    import ray

    if job.gpu != "auto":
        return job.gpu == "yes"
    return ray.cluster_resources().get("GPU", 0) >= 1


def train_on_ray(spec: ModelSpec, config: TrainConfig, job: TrainJobConfig, store: Store) -> TrainSummary:
    """Fine-tune `spec` on the store's labelled train split with Ray Train, keep the best epoch by
    validation F1, and publish it to the store (joins `$RAY_ADDRESS`, else starts a local Ray)."""
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    name = artifacts.model_name(spec.kind, job.labels, job.name)
    train, valid = labelled(store, job.labels, TRAIN_SPLIT), labelled(store, job.labels, VALID_SPLIT)
    if job.max_train_rows:
        train = train.slice(0, job.max_train_rows)
    train_rows, valid_rows = examples(train), examples(valid)
    if not train_rows or not valid_rows:
        raise FinnerError(f"{job.labels} labels: {len(train_rows)} train and {len(valid_rows)} valid rows; both splits need rows")
    # The training rows themselves, not the tables' version names: curation rewrites `sample`
    # (same rows, new version) on every pipeline run, and that must not retrain.
    data = stable_hash([train_rows, valid_rows])
    run_fingerprint = stable_hash(
        {"spec": spec.source(), "threshold": spec.threshold, "train": dataclasses.asdict(config), "labels": job.labels, "data": data, "rows": job.max_train_rows},
        length=12,
    )
    previous = store.get_json(artifacts.train_summary_key(name))
    if previous and previous["fingerprint"] == run_fingerprint and not job.force and _exists(previous["path"]):
        fields = {f.name for f in dataclasses.fields(TrainSummary)} - {"reused"}
        return TrainSummary(**{k: previous[k] for k in fields}, reused=True)

    init_ray()
    use_gpu = _use_gpu(job)
    runs_dir = store.artifact(artifacts.RAY_RUNS_DIR, "runs")
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={
            "spec": dataclasses.asdict(spec),
            "train": dataclasses.asdict(config),
            "train_rows": train_rows,
            "valid_rows": valid_rows,
            "store": store.root,
            "history_key": artifacts.train_history_key(name),
        },
        scaling_config=ScalingConfig(num_workers=job.num_workers, use_gpu=use_gpu),
        run_config=RunConfig(
            name=f"{name}-{run_fingerprint}",  # the same run again after a kill: Ray restores its checkpoints
            storage_path=runs_dir,
            checkpoint_config=CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=SCORE_METRIC, checkpoint_score_order="max"),
        ),
    )
    try:
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
    summary = TrainSummary(name, destination, len(train_rows), len(valid_rows), _plain(best), history["epochs"], run_fingerprint, history.get("resumed_after_epoch"))
    record = dataclasses.asdict(summary) | {"spec": dataclasses.asdict(spec), "train": dataclasses.asdict(config), "gpu": use_gpu, "workers": job.num_workers}
    record.pop("reused")
    store.put_json(artifacts.train_summary_key(name), record)
    if spec.kind == GLINER:
        store.put_json(artifacts.SCORING_DEFAULT_KEY, {"path": destination, "name": name})  # the scoring job's default model
    return summary


def resume_checkpoint(spec: ModelSpec) -> tuple[NerModel, dict[str, Any]] | None:
    """The model of the latest epoch a killed run of this Ray Train run name reported, with that
    epoch's metrics (Ray Train v2 restores a run's checkpoints from its storage), or None."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as path:
        with open(os.path.join(path, EPOCH_FILE)) as f:
            metrics = json.load(f)
        model = load_checkpoint(spec.kind, path, threshold=spec.threshold)
    model.fresh_head = bool(spec.encoder_dir())  # the original run's head rate and loss weight
    return model, metrics


def train_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train's `train_loop_per_worker`: build the model (or take up a killed run's latest
    checkpoint), fine-tune it data-parallel, and report each epoch's validation metrics with rank
    0's checkpoint. Rank 0 also writes the per-epoch curve to the store (`history_key`) as it
    grows, so a running job can be watched.

    `loop_config`: `spec` and `train` (ModelSpec / TrainConfig fields), `train_rows`/`valid_rows`
    (Examples), `store` (root) and `history_key`.
    """
    import ray.train
    import torch

    spec = config_from_dict(ModelSpec, loop_config["spec"])
    config = config_from_dict(TrainConfig, loop_config["train"])
    store = Store(loop_config["store"])
    torch.manual_seed(config.seed)  # every worker builds the same fresh head
    resumed = resume_checkpoint(spec)
    model, done_epochs = (resumed[0], resumed[1]["epoch"]) if resumed else (build_model(spec), 0)
    rank = ray.train.get_context().get_world_rank()
    history: list[dict[str, Any]] = []
    if done_epochs:  # the killed run's curve up to the epoch resumed from (epoch 0 is re-scored)
        previous = store.get_json(loop_config["history_key"]) or {"epochs": []}
        history = [e for e in previous["epochs"] if e["epoch"] < done_epochs] + [resumed[1]]

    def report(metrics: dict[str, Any], checkpoint: str | None) -> None:
        if rank == 0:
            history.append(metrics)
            store.put_json(
                loop_config["history_key"],
                {"spec": dataclasses.asdict(spec), "train": dataclasses.asdict(config), "epochs": history, "resumed_after_epoch": done_epochs or None},
            )
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(checkpoint) if checkpoint else None)

    with tempfile.TemporaryDirectory(prefix="finner-train-") as work_dir:
        fine_tune(model, loop_config["train_rows"], loop_config["valid_rows"], config, work_dir, report, done_epochs)


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
