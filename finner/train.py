"""Fine-tuning: the training rows, the per-epoch validation, and the function each worker runs.

Both adapters fine-tune through a `transformers.Trainer` subclass (gliner's, span_marker's), so
one loop serves both: `fine_tune` builds the adapter's Trainer, scores entity F1 on the validation
split (`finner.evaluate.exact_prf` on character spans) before training and after every epoch,
and hands each score with a model-only checkpoint to a `report` function. Under Ray Train that
is `ray.train.report` (`train_worker`; Ray keeps the best checkpoint by `valid_f1`), in one
process it is `KeepBest` (`fit_locally`, what `NerModel.fit` runs).

With several workers the Trainer runs data-parallel on the process group Ray Train set up; each
worker scores its share of the validation rows and the counts are summed across workers, so
every worker reports the same F1. Every checkpoint carries its epoch's metrics (`EPOCH_FILE`), so
a killed run restored by Ray Train resumes after the latest one (`resume_checkpoint`).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from finner import schemas
from finner.config import config_from_dict, help_text
from finner.errors import FinnerError
from finner.evaluate import PRF, exact_prf, review_gold
from finner.models.base import Span
from finner.store import Store

if TYPE_CHECKING:
    import transformers

    from finner.models.base import NerModel
    from finner.models.registry import ModelSpec

LLM_LABELS, GOLD_LABELS = "llm", "gold"  # where training labels come from
LabelSource = Literal["llm", "gold"]
TRAIN_SPLIT, VALID_SPLIT = "train", "valid"
SCORE_METRIC = "valid_f1"  # what the best checkpoint is chosen by
FRESH_HEAD_LEARNING_RATE = 1e-3  # default head rate of a model built on a bare encoder
# Default loss weight of company spans against the far more numerous non-entity candidate spans
# for a SpanMarker head built on a bare encoder: with plain cross-entropy it first learns to
# predict no company at all and stays there for hundreds of steps.
FRESH_HEAD_COMPANY_WEIGHT = 10.0

EPOCH_FILE = "finner_epoch.json"  # in every reported checkpoint: the metrics of the epoch it holds
Example = tuple[str, str, list[Span]]  # (row id, title, company spans)
Report = Callable[[dict[str, Any], "str | None"], None]  # (metrics, checkpoint dir or None)


@dataclass(frozen=True)
class TrainConfig:
    """Fine-tuning hyper-parameters. Defaults are the case study's (20 epochs, lr 5e-6, batch 4,
    focal loss alpha 0.75 gamma 2); a fresh head on a bare encoder wants a larger head rate."""

    epochs: int = field(default=20, metadata=help_text("passes over the training rows"))
    learning_rate: float = field(default=5e-6, metadata=help_text("learning rate of the encoder (and of the head unless --head-learning-rate)"))
    head_learning_rate: float | None = field(
        default=None,
        metadata=help_text(
            f"learning rate of everything but the encoder (the entity head); default: --learning-rate for a "
            f"pretrained checkpoint, {FRESH_HEAD_LEARNING_RATE:g} for a fresh head built on --encoder/--offline"
        ),
    )
    batch_size: int = field(default=4, metadata=help_text("training headlines per step and worker"))
    focal_loss_alpha: float = field(default=0.75, metadata=help_text("gliner focal loss alpha (weight of positive spans)"))
    focal_loss_gamma: float = field(default=2.0, metadata=help_text("gliner focal loss gamma (focus on hard spans)"))
    company_weight: float | None = field(
        default=None,
        metadata=help_text(
            f"spanmarker: cross-entropy weight of company spans against non-entity spans; default: 1 for a "
            f"pretrained checkpoint, {FRESH_HEAD_COMPANY_WEIGHT:g} for a fresh head built on --encoder/--offline"
        ),
    )
    weight_decay: float = field(default=0.01, metadata=help_text("AdamW weight decay"))
    warmup_ratio: float = field(default=0.1, metadata=help_text("share of steps with a linear learning-rate warm-up"))
    seed: int = field(default=0, metadata=help_text("seed of head initialisation and data order"))
    valid_batch_size: int = field(default=32, metadata=help_text("headlines per prediction batch in validation"))

    def head_rate(self, fresh_head: bool) -> float:
        """The entity head's learning rate: an untrained head needs a far larger one than a pretrained head."""
        if self.head_learning_rate is not None:
            return self.head_learning_rate
        return FRESH_HEAD_LEARNING_RATE if fresh_head else self.learning_rate

    def company_span_weight(self, fresh_head: bool) -> float:
        """SpanMarker's loss weight of company spans: an untrained head needs them up-weighted."""
        if self.company_weight is not None:
            return self.company_weight
        return FRESH_HEAD_COMPANY_WEIGHT if fresh_head else 1.0

    def learning_rate_fraction(self, done_epochs: int) -> float:
        """Where the Trainer's linear schedule (warm-up, then decay to 0) stands after `done_epochs`."""
        done, warmup = done_epochs / self.epochs, self.warmup_ratio
        decay = (1 - done) / (1 - warmup) if warmup < 1 else 0.0
        return min(done / warmup, decay) if warmup > 0 else 1 - done

    def remaining(self, done_epochs: int, fresh_head: bool) -> "TrainConfig":
        """The rest of this run once `done_epochs` epochs are finished: the remaining epochs, on
        the rest of the learning-rate schedule (decaying from where it stood; the optimizer's
        moment estimates start afresh). Head rate and loss weight keep the original defaults."""
        scale = self.learning_rate_fraction(done_epochs)
        return dataclasses.replace(
            self,
            epochs=self.epochs - done_epochs,
            learning_rate=self.learning_rate * scale,
            head_learning_rate=self.head_rate(fresh_head) * scale,
            company_weight=self.company_span_weight(fresh_head),
            warmup_ratio=0.0,
            seed=self.seed + done_epochs,  # a fresh data order, not a replay of epoch 1's
        )

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.valid_batch_size < 1:
            raise FinnerError("--epochs, --batch-size and --valid-batch-size must be at least 1")
        if self.learning_rate <= 0 or (self.head_learning_rate is not None and self.head_learning_rate <= 0):
            raise FinnerError("learning rates must be positive")
        if self.company_weight is not None and self.company_weight <= 0:
            raise FinnerError(f"--company-weight must be positive, got {self.company_weight}")


def hf_arguments(config: "TrainConfig", work_dir: str) -> dict[str, Any]:
    """`TrainingArguments` both adapters share: the config's optimisation settings, no HF
    checkpoints or evaluation (validation and checkpoints are ours, per epoch), no experiment
    trackers, data loading in the worker, CUDA when present."""
    import torch

    return {
        "output_dir": work_dir,
        "learning_rate": config.learning_rate,
        "weight_decay": config.weight_decay,
        "warmup_ratio": config.warmup_ratio,
        "per_device_train_batch_size": config.batch_size,
        "num_train_epochs": config.epochs,
        "seed": config.seed,
        "use_cpu": not torch.cuda.is_available(),
        "save_strategy": "no",
        "eval_strategy": "no",
        "report_to": "none",
        "logging_strategy": "epoch",
        "dataloader_num_workers": 0,
        "remove_unused_columns": False,
        "ddp_find_unused_parameters": True,  # both models carry parameters the loss never uses (the encoder pooler)
    }


class FineTunable(Protocol):
    """What `fine_tune` needs of an adapter (GlinerModel and SpanMarkerModelAdapter have it)."""

    kind: str
    fresh_head: bool

    def predict(self, titles: list[str]) -> list[list[Span]]: ...

    def save(self, path: str) -> None: ...

    def trainer(self, train: Sequence[Example], config: TrainConfig, work_dir: str) -> "transformers.Trainer": ...


# -- training rows ------------------------------------------------------------------------------


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


def llm_labelled(store: Store, split: str) -> pa.Table:
    """(id, title, spans) of the sample's `split` rows the LLM labelled successfully (a failed
    label is not a 'no company' label, so those rows are left out)."""
    if not store.exists("sample"):
        raise FinnerError("no `sample` table in the store: run the curation stage (jobs.curate) first")
    sample = store.read("sample", columns=["id", "title", "spans", "split", "llm_status"])
    keep = pc.and_(pc.equal(sample.column("split"), split), pc.equal(sample.column("llm_status"), schemas.LABEL_OK))
    return sample.filter(keep).select(["id", "title", "spans"])


def gold_labelled(store: Store, split: str) -> pa.Table:
    """(id, title, spans) of the reviewed (`submitted`) gold rows of `split`."""
    if not store.exists("gold"):
        raise FinnerError("no `gold` table in the store: review the sample first (jobs.review), or train with --labels llm")
    gold = review_gold(store)
    return gold.filter(pc.equal(gold.column("split"), split)).select(["id", "title", "spans"])


def labelled(store: Store, labels: LabelSource, split: str) -> pa.Table:
    if labels == LLM_LABELS:
        return llm_labelled(store, split)
    if labels == GOLD_LABELS:
        return gold_labelled(store, split)
    raise FinnerError(f"unknown label source {labels!r}; expected {LLM_LABELS} or {GOLD_LABELS}")


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
    import json
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
        import json

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


# -- Ray Train: the function every worker runs --------------------------------------------------------


def resume_checkpoint(spec: "ModelSpec") -> "tuple[NerModel, dict[str, Any]] | None":
    """The model of the latest epoch a killed run of this Ray Train run name reported, with that
    epoch's metrics (Ray Train v2 restores a run's checkpoints from its storage), or None."""
    import json

    import ray.train

    from finner.models.registry import load_checkpoint

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

    from finner.models.registry import ModelSpec, build_model

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
