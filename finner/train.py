"""Fine-tuning: the loop every adapter trains through, step by step, with validation, checkpoints,
early stopping and resume.

Both adapters fine-tune through a `transformers.Trainer` subclass (gliner's, span_marker's), so
one loop serves both. The rows reach it as ready model inputs, one training batch at a time, made
by the adapter's `batch_encoder` (the library's own preprocessing): under Ray Train they stream
from the worker's Ray Data shard (`finner.pipeline.train`); in one process (`fit_locally`) they
are encoded from rows held in memory. The Trainer counts steps, not epochs: `epochs` times the
steps of one epoch (`steps_per_epoch`), the epochs following one another in one stream of batches.

Before the first step and every `eval_every` steps (`validation_interval`: a step count, never a
time, so two machines validate, and keep, the same checkpoints) it scores exact-match entity F1 on the
validation rows and hands the score, with a checkpoint, to a `report` function: `ray.train.report`
under Ray Train (Ray keeps the best by `valid_f1`), `KeepBest` in one process. After `patience`
validations without a better F1 it stops. A checkpoint holds the model, the optimizer and
learning-rate schedule (`RESUME_DIR`; not after the last step, where they are as large as the
model twice over and nothing resumes) and where the run stood (`STATE_FILE`: step, epoch and
batches of it done), so a killed run resumes after its latest checkpoint, mid-epoch, without
repeating a step.

With several workers the Trainer runs data-parallel on the process group Ray Train set up, each
worker on its own batches; each scores its share of the validation rows and the counts are summed,
so every worker reports the same F1 and takes the same decisions.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa

from finner.config import config_from_dict
from finner.errors import FinnerError
from finner.metrics import PRF, exact_prf
from finner.models.train_config import MIN_VALIDATIONS, Example, TrainConfig
from finner.schemas import Span

if TYPE_CHECKING:
    import transformers

SCORE_METRIC = "valid_f1"  # what the best checkpoint is chosen by
STATE_FILE = "finner_state.json"  # in every reported checkpoint: its metrics and where the run stood
RESUME_DIR = "resume"  # optimizer and schedule states in a checkpoint: what resumes training, not part of the model
Report = Callable[[dict[str, Any], "str | None"], None]  # (metrics, checkpoint dir or None)
EpochBatches = Callable[[int], Iterable[dict[str, Any]]]  # epoch -> this worker's training batches (model inputs), in order


class FineTunable(Protocol):
    """What `fine_tune` needs of an adapter (GlinerModel and SpanMarkerModelAdapter have it)."""

    kind: str
    fresh_head: bool

    def predict(self, titles: list[str]) -> list[list[Span]]: ...

    def save(self, path: str) -> None: ...

    def batch_encoder(self) -> Callable[[Sequence[Example]], dict[str, np.ndarray]]: ...

    def model_inputs(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]: ...

    def trainer(self, config: TrainConfig, work_dir: str, max_steps: int) -> "transformers.Trainer": ...


# -- training rows -------------------------------------------------------------------------------


def examples(table: pa.Table) -> list[Example]:
    """(id, title, spans) of a table with `title` and `spans` (and ideally `id`) columns."""
    missing = {"title", "spans"} - set(table.column_names)
    if missing:
        raise FinnerError(f"training table lacks column(s) {sorted(missing)}; it needs title and spans")
    titles, spans = table.column("title").to_pylist(), table.column("spans").to_pylist()
    ids = table.column("id").to_pylist() if "id" in table.column_names else [str(i) for i in range(len(titles))]
    out = []
    for row, title, row_spans in zip(ids, titles, spans):
        if not title:
            raise FinnerError(f"training row {row!r}: empty title")
        for s in row_spans or []:
            if not 0 <= s["start"] < s["end"] <= len(title):
                raise FinnerError(f"training row {row!r}: span {s['start']}:{s['end']} is outside its title ({len(title)} characters)")
        out.append((row, title, list(row_spans or [])))
    return out


def steps_per_epoch(rows: int, workers: int, batch_size: int) -> int:
    """Steps of one epoch: every worker takes an equal share of the rows, `batch_size` at a time."""
    return max(1, math.ceil(rows / (workers * batch_size)))


def total_training_steps(config: TrainConfig, epoch_steps: int) -> int:
    """`--epochs` passes of `epoch_steps` steps, or `--max-steps` when fewer."""
    total = config.epochs * epoch_steps
    return min(total, config.max_steps) if config.max_steps else total


def validation_interval(config: TrainConfig, epoch_steps: int) -> int:
    """Steps between two validations: `--eval-every`, else one epoch, shortened so that the run
    validates at least `MIN_VALIDATIONS` times (a run of one epoch, or `--max-steps` short of one,
    still has checkpoints to choose from). From step counts alone: the same on every machine."""
    if config.eval_every:
        return config.eval_every
    return max(1, min(epoch_steps, math.ceil(total_training_steps(config, epoch_steps) / MIN_VALIDATIONS)))


def seed_everything(seed: int) -> None:
    """Seed every generator a run draws from (Python's, numpy's, torch's): the fresh head's
    initialisation, dropout, and anything a library shuffles with. The Hugging Face Trainer seeds
    again from `TrainConfig.seed` when it starts."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def in_memory_batches(model: FineTunable, rows: Sequence[Example], config: TrainConfig) -> EpochBatches:
    """Batches encoded in this process from rows held in memory, reshuffled every epoch."""
    encode = model.batch_encoder()

    def epoch(number: int) -> Iterator[dict[str, Any]]:
        order = list(rows)
        random.Random(config.seed + number).shuffle(order)
        for start in range(0, len(order), config.batch_size):
            yield model.model_inputs(encode(order[start : start + config.batch_size]))

    return epoch


# -- where a run stands --------------------------------------------------------------------------


@dataclass(frozen=True)
class Position:
    """The epoch in progress and how many of its batches are done."""

    epoch: int = 0
    batches: int = 0


@dataclass(frozen=True)
class Resume:
    """A killed run's latest checkpoint: its `STATE_FILE` and the optimizer and schedule states
    (None after the last step: a finished run takes no further step)."""

    state: dict[str, Any]
    optimizer: dict[str, Any] | None
    scheduler: dict[str, Any] | None

    @property
    def step(self) -> int:
        return int(self.state["step"])

    @property
    def position(self) -> Position:
        return Position(*self.state["position"])

    @classmethod
    def read(cls, checkpoint: str) -> "Resume":
        import torch

        with open(os.path.join(checkpoint, STATE_FILE)) as f:
            state = json.load(f)
        if not os.path.isdir(os.path.join(checkpoint, RESUME_DIR)):
            return cls(state, None, None)
        load = lambda name: torch.load(os.path.join(checkpoint, RESUME_DIR, name), map_location="cpu", weights_only=False)  # noqa: E731
        return cls(state, load("optimizer.pt"), load("scheduler.pt"))


def _batch_stream(batches: EpochBatches, start: Position) -> Any:
    """One stream of training batches, epoch after epoch, from `start` on (the batches of the epoch
    in progress that are done are read and dropped). `position` is where the run stands once the
    batch last handed out is trained: it looks one batch ahead, so after an epoch's last batch it
    already points at the next epoch, and a run resumed there starts that epoch afresh."""
    from torch.utils.data import IterableDataset

    end = object()

    class BatchStream(IterableDataset):
        def __init__(self) -> None:
            self.position, self.handed_out = start, 0

        def __iter__(self) -> Iterator[dict[str, Any]]:
            epoch, skip = start.epoch, start.batches
            while True:
                source = iter(batches(epoch))
                done = sum(1 for _ in zip(range(skip), source))
                current = next(source, end)
                if current is end and not done:
                    raise FinnerError(f"epoch {epoch} has no training batches for this worker")
                while current is not end:
                    upcoming = next(source, end)
                    done += 1
                    self.position = Position(epoch + 1, 0) if upcoming is end else Position(epoch, done)
                    self.handed_out += 1
                    yield current
                    current = upcoming
                epoch, skip = epoch + 1, 0

    return BatchStream()


def _streaming(trainer: "transformers.Trainer", stream: Any) -> "transformers.Trainer":
    """The library's Trainer, taking its batches from `stream` as they are (already batched and
    per worker: no sampler, no re-batching, no sharding by accelerate), as Ray's `prepare_trainer`
    does for Ray Data iterables."""
    from torch.utils.data import DataLoader

    class Streaming(type(trainer)):  # type: ignore[misc, valid-type]
        def get_train_dataloader(self) -> DataLoader:
            return DataLoader(stream, batch_size=None)

    trainer.__class__ = Streaming
    return trainer


# -- validation ----------------------------------------------------------------------------------


def _world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_reduce(values: list[float], op: str, device: Any) -> list[float]:
    import torch
    import torch.distributed as dist

    if _world()[1] == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=getattr(dist.ReduceOp, op))
    return tensor.tolist()


def validate(model: FineTunable, valid: Iterable[Example], batch_size: int = 32, device: Any = None) -> PRF:
    """Exact-match entity P/R/F1 on `valid`, streamed `batch_size` rows at a time; under data
    parallelism each worker predicts every world-size-th row and the counts are summed, so every
    worker returns the same numbers. It leaves every random generator as it found it, so how often
    a run validates never changes what it learns."""
    rank, world = _world()
    prf, chunk = PRF(0, 0, 0), []
    with _generators_kept():
        for index, row in enumerate(valid):
            if index % world == rank:
                chunk.append(row)
            if len(chunk) == batch_size:
                prf, chunk = prf + _score(model, chunk), []
        prf += _score(model, chunk)
    return PRF(*(int(c) for c in _all_reduce([prf.tp, prf.fp, prf.fn], "SUM", device)))


@contextlib.contextmanager
def _generators_kept() -> Iterator[None]:
    """Python's, numpy's and torch's generators restored on leaving: a prediction's DataLoader draws
    its seed from torch's, which would otherwise shift every dropout mask after it."""
    import torch

    python, numpy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=range(torch.cuda.device_count()) if torch.cuda.is_available() else []):
        yield
    random.setstate(python)
    np.random.set_state(numpy)


def _score(model: FineTunable, rows: list[Example]) -> PRF:
    if not rows:
        return PRF(0, 0, 0)
    return exact_prf([spans for _, _, spans in rows], model.predict([title for _, title, _ in rows]))


# -- the loop ------------------------------------------------------------------------------------


def _checkpoints(
    model: FineTunable, valid: Callable[[], Iterable[Example]], config: TrainConfig, epoch_steps: int, total_steps: int,
    report: Report, stream: Any, resume: Resume | None, keep_training_state: bool, on_step: Callable[[int], None] | None = None,
) -> Any:
    """The TrainerCallback that validates, checkpoints (rank 0 writes), keeps count of the best F1
    for early stopping, times the steps (reported, never used to decide), and on resume loads the
    optimizer and schedule and sets the step counter where the killed run stood."""
    import torch
    from transformers import TrainerCallback

    saved = resume.state if resume else {}

    class Checkpoints(TrainerCallback):
        def __init__(self) -> None:
            self.best: float | None = saved.get("best_f1")
            self.since_best = int(saved.get("since_best", 0))
            self.eval_every = int(saved.get("eval_every") or validation_interval(config, epoch_steps))
            metrics = saved.get("metrics", {})
            self.train_seconds, self.timed_steps = float(metrics.get("train_seconds", 0.0)), int(metrics.get("timed_steps", 0))
            self.first_step = resume.step if resume else 0
            self.last_end: float | None = None

        def on_train_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
            if resume:
                optimizer.load_state_dict(resume.optimizer)
                lr_scheduler.load_state_dict(resume.scheduler)
                state.global_step = resume.step
            else:
                self._validate(args, state, optimizer, lr_scheduler)

        def on_step_end(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
            step, now = state.global_step, time.monotonic()
            if stream.handed_out != step - self.first_step:  # the position recorded must be this step's
                raise FinnerError(f"step {step}: {stream.handed_out} batches handed out since step {self.first_step}")
            if self.last_end is not None:  # the first step of a process (start-up, first batch) is not timed
                self.train_seconds += now - self.last_end
                self.timed_steps += 1
            self.last_end = now
            if on_step:
                on_step(step)
            if step % self.eval_every == 0 or step >= total_steps:
                self._validate(args, state, optimizer, lr_scheduler)
                if config.patience and self.since_best >= config.patience:
                    control.should_training_stop = True
                self.last_end = time.monotonic()  # validating is not training

        def _validate(self, args, state, optimizer, lr_scheduler) -> None:
            prf = validate(model, valid(), config.valid_batch_size, device=args.device)
            if self.best is None or prf.f1 > self.best:
                self.best, self.since_best = prf.f1, 0
            else:
                self.since_best += 1
            step = state.global_step
            metrics = {
                "step": step,
                "epoch": round(step / epoch_steps, 3),
                "position": [stream.position.epoch, stream.position.batches],
                SCORE_METRIC: prf.f1,
                "valid_precision": prf.precision,
                "valid_recall": prf.recall,
                "valid_tp": prf.tp,
                "valid_fp": prf.fp,
                "valid_fn": prf.fn,
                "train_seconds": round(self.train_seconds, 3),
                "timed_steps": self.timed_steps,
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),  # this process's, so far
            }
            run_state = {
                "metrics": metrics,
                "step": step,
                "position": metrics["position"],
                "best_f1": self.best,
                "since_best": self.since_best,
                "eval_every": self.eval_every,
            }
            if _world()[0] != 0:
                report(metrics, None)
                return
            with tempfile.TemporaryDirectory(prefix="finner-ckpt-") as checkpoint:
                model.save(checkpoint)
                if keep_training_state and step < total_steps:  # the last step's is never resumed: don't write it
                    os.makedirs(os.path.join(checkpoint, RESUME_DIR))
                    torch.save(optimizer.state_dict(), os.path.join(checkpoint, RESUME_DIR, "optimizer.pt"))
                    torch.save(lr_scheduler.state_dict(), os.path.join(checkpoint, RESUME_DIR, "scheduler.pt"))
                with open(os.path.join(checkpoint, STATE_FILE), "w") as f:
                    json.dump(run_state, f)
                report(metrics, checkpoint)

    return Checkpoints()


def finished(resume: Resume | None, config: TrainConfig, total_steps: int) -> bool:
    """A resumed run with nothing left: every step taken, or stopped early for want of progress."""
    if resume is None:
        return False
    return resume.step >= total_steps or bool(config.patience and resume.state["since_best"] >= config.patience)


def fine_tune(
    model: FineTunable,
    batches: EpochBatches,
    valid: Callable[[], Iterable[Example]],
    config: TrainConfig,
    epoch_steps: int,
    work_dir: str,
    report: Report,
    resume: Resume | None = None,
    keep_training_state: bool = True,
    on_step: Callable[[int], None] | None = None,
    trainer_summary: bool = True,
) -> None:
    """Train `model` in place for `config.epochs` epochs of `epoch_steps` steps (at most
    `config.max_steps`) on `batches`,
    validating on the rows `valid()` yields and reporting as it goes (see the module docstring); a
    `resume`d run takes the remaining steps only. Without `keep_training_state` checkpoints hold
    the model alone (a run that will not be resumed). `on_step(step)` follows every step (progress).
    Without `trainer_summary` transformers does not print its end-of-training dict (with tqdm off it
    prints its logs to stdout: a Ray Train worker's go to the training log, an in-process fit's would
    land between the caller's lines)."""
    total_steps = total_training_steps(config, epoch_steps)
    if finished(resume, config, total_steps):
        return
    stream = _batch_stream(batches, resume.position if resume else Position())
    trainer = _streaming(model.trainer(config, work_dir, total_steps), stream)
    if not trainer_summary:
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    trainer.add_callback(_checkpoints(model, valid, config, epoch_steps, total_steps, report, stream, resume, keep_training_state, on_step))
    trainer.train()


# -- one process: fit_locally --------------------------------------------------------------------


class KeepBest:
    """A `Report` for one process: keeps the best-F1 checkpoint in `output_dir/best` and every
    validation's metrics in `output_dir/history.json`. Of equal scores the later wins, as in Ray
    Train's checkpoint manager, so both paths pick the same checkpoint."""

    def __init__(self, output_dir: str) -> None:
        self.best_dir = os.path.join(output_dir, "best")
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self._history_path = os.path.join(output_dir, "history.json")

    def __call__(self, metrics: dict[str, Any], checkpoint: str | None) -> None:
        self.history.append(metrics)
        if checkpoint and (self.best is None or metrics[SCORE_METRIC] >= self.best[SCORE_METRIC]):
            shutil.rmtree(self.best_dir, ignore_errors=True)
            shutil.copytree(checkpoint, self.best_dir, ignore=shutil.ignore_patterns(RESUME_DIR))
            self.best = metrics
        with open(self._history_path, "w") as f:
            json.dump(self.history, f, indent=2)


def fit_locally(model: FineTunable, train: pa.Table, valid: pa.Table, output_dir: str, **options: Any) -> str:
    """Fine-tune in this process on rows held in memory (options are `TrainConfig` fields) and
    return the best checkpoint's path."""
    config = config_from_dict(TrainConfig, options)
    rows, valid_rows = examples(train), examples(valid)
    if not rows:
        raise FinnerError("no training rows")
    if not valid_rows:
        raise FinnerError("no validation rows: the best checkpoint is chosen by validation F1")
    os.makedirs(output_dir, exist_ok=True)
    keep = KeepBest(output_dir)
    with tempfile.TemporaryDirectory(prefix="finner-train-") as work_dir:
        epoch_steps = steps_per_epoch(len(rows), 1, config.batch_size)
        fine_tune(model, in_memory_batches(model, rows, config), lambda: valid_rows, config, epoch_steps, work_dir, keep, keep_training_state=False, trainer_summary=False)
    return keep.best_dir
