"""Fine-tuning: the loop every adapter trains through, with validation and checkpoints.

Both adapters fine-tune through a `transformers.Trainer` subclass (gliner's, span_marker's), so
one loop serves both: `fine_tune` builds the adapter's Trainer, scores entity F1 on the validation
split (`finner.metrics.exact_prf` on character spans) before training and after every epoch,
and hands each score with a model-only checkpoint to a `report` function. Under Ray Train that
is `ray.train.report` (`finner.pipeline.train`; Ray keeps the best checkpoint by `valid_f1`), in
one process it is `KeepBest` (`fit_locally`).

With several workers the Trainer runs data-parallel on the process group Ray Train set up; each
worker scores its share of the validation rows and the counts are summed across workers, so
every worker reports the same F1. Every checkpoint carries its epoch's metrics (`EPOCH_FILE`), so
a killed run restored by Ray Train resumes after the latest one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa

from finner.config import config_from_dict
from finner.errors import FinnerError
from finner.metrics import PRF, exact_prf
from finner.models.train_config import Example, TrainConfig
from finner.schemas import Span

if TYPE_CHECKING:
    import transformers

SCORE_METRIC = "valid_f1"  # what the best checkpoint is chosen by
EPOCH_FILE = "finner_epoch.json"  # in every reported checkpoint: the metrics of the epoch it holds
Report = Callable[[dict[str, Any], "str | None"], None]  # (metrics, checkpoint dir or None)


class FineTunable(Protocol):
    """What `fine_tune` needs of an adapter (GlinerModel and SpanMarkerModelAdapter have it)."""

    kind: str
    fresh_head: bool

    def predict(self, titles: list[str]) -> list[list[Span]]: ...

    def save(self, path: str) -> None: ...

    def trainer(self, train: Sequence[Example], config: TrainConfig, work_dir: str) -> "transformers.Trainer": ...


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


# -- validation every epoch -----------------------------------------------------------------------


def _world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def validate(model: FineTunable, valid: Sequence[Example], device: Any = None) -> PRF:
    """Exact-match entity P/R/F1 on `valid`; under data parallelism each worker predicts its
    share and the counts are summed, so every worker returns the same numbers."""
    import torch
    import torch.distributed as dist

    rank, world = _world()
    mine = list(valid[rank::world])
    predicted = model.predict([title for _, title, _ in mine]) if mine else []
    prf = exact_prf([spans for _, _, spans in mine], predicted)
    if world == 1:
        return prf
    counts = torch.tensor([prf.tp, prf.fp, prf.fn], dtype=torch.long, device=device)
    dist.all_reduce(counts)
    return PRF(*(int(c) for c in counts.tolist()))


def epoch_validation(model: FineTunable, valid: Sequence[Example], report: Report, done_epochs: int = 0) -> Any:
    """A TrainerCallback: validation F1 before training (epoch 0) and after every epoch, reported
    with a checkpoint of the model (written by rank 0 only). A run resumed after `done_epochs`
    numbers its epochs on from there and does not re-score the checkpoint it resumed from."""
    from transformers import TrainerCallback

    class EpochValidation(TrainerCallback):
        def __init__(self) -> None:
            self.started = time.monotonic()

        def _validate(self, args: Any, state: Any, epoch: int) -> None:
            prf = validate(model, valid, device=args.device)
            metrics = {
                "epoch": epoch,
                SCORE_METRIC: prf.f1,
                "valid_precision": prf.precision,
                "valid_recall": prf.recall,
                "valid_tp": prf.tp,
                "valid_fp": prf.fp,
                "valid_fn": prf.fn,
                "seconds": round(time.monotonic() - self.started, 1),
            }
            if _world()[0] == 0:
                with tempfile.TemporaryDirectory(prefix="finner-ckpt-") as checkpoint:
                    model.save(checkpoint)
                    with open(os.path.join(checkpoint, EPOCH_FILE), "w") as f:
                        json.dump(metrics, f)
                    report(metrics, checkpoint)
            else:
                report(metrics, None)

        def on_train_begin(self, args, state, control, **kwargs):
            if done_epochs == 0:
                self._validate(args, state, 0)

        def on_epoch_end(self, args, state, control, **kwargs):
            self._validate(args, state, done_epochs + round(state.epoch))

    return EpochValidation()


def fine_tune(
    model: FineTunable, train: Sequence[Example], valid: Sequence[Example], config: TrainConfig, work_dir: str, report: Report, done_epochs: int = 0
) -> None:
    """Train `model` in place for `config.epochs`, reporting validation metrics every epoch; a
    model resumed from the checkpoint of epoch `done_epochs` trains the remaining epochs only."""
    if not train:
        raise FinnerError("no training rows")
    if not valid:
        raise FinnerError("no validation rows: the best checkpoint is chosen by validation F1")
    if done_epochs >= config.epochs:
        return
    if done_epochs:
        config = config.remaining(done_epochs, model.fresh_head)
    trainer = model.trainer(train, config, work_dir)
    trainer.add_callback(epoch_validation(model, valid, report, done_epochs))
    trainer.train()


# -- one process: NerModel.fit ----------------------------------------------------------------------


class KeepBest:
    """A `Report` for one process: keeps the best-F1 checkpoint in `output_dir/best` and every
    epoch's metrics in `output_dir/history.json`. Of equal scores the later epoch wins, as in Ray
    Train's checkpoint manager, so both paths pick the same epoch."""

    def __init__(self, output_dir: str) -> None:
        self.best_dir = os.path.join(output_dir, "best")
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self._history_path = os.path.join(output_dir, "history.json")

    def __call__(self, metrics: dict[str, Any], checkpoint: str | None) -> None:
        self.history.append(metrics)
        if checkpoint and (self.best is None or metrics[SCORE_METRIC] >= self.best[SCORE_METRIC]):
            shutil.rmtree(self.best_dir, ignore_errors=True)
            shutil.copytree(checkpoint, self.best_dir)
            self.best = metrics
        with open(self._history_path, "w") as f:
            json.dump(self.history, f, indent=2)


def fit_locally(model: FineTunable, train: pa.Table, valid: pa.Table, output_dir: str, **options: Any) -> str:
    """Fine-tune in this process (options are `TrainConfig` fields) and return the best checkpoint's path."""
    config = config_from_dict(TrainConfig, options)
    os.makedirs(output_dir, exist_ok=True)
    keep = KeepBest(output_dir)
    with tempfile.TemporaryDirectory(prefix="finner-train-") as work_dir:
        fine_tune(model, examples(train), examples(valid), config, work_dir, keep)
    return keep.best_dir
