"""Fine-tuning settings every adapter builds its Hugging Face Trainer from.

They live beside the adapters, below the fine-tuning loop (`finner.train`), because each adapter's
`trainer()` turns them into its library's own Trainer and loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from finner.config import Config, help_text
from finner.models.base import best_device
from finner.schemas import Span

Example = tuple[str, str, list[Span]]  # (row id, title, company spans)
FRESH_HEAD_LEARNING_RATE = 1e-3  # default head rate of a model built on a bare encoder
# Default loss weight of company spans against the far more numerous non-entity candidate spans
# for a SpanMarker head built on a bare encoder: with plain cross-entropy it first learns to
# predict no company at all and stays there for hundreds of steps.
FRESH_HEAD_COMPANY_WEIGHT = 10.0
MIN_VALIDATIONS = 3  # by default a run validates once per epoch, and at least this many times (after step 0)


@dataclass(frozen=True)
class TrainConfig(Config):
    """Fine-tuning hyper-parameters. Defaults are the case study's (20 epochs, lr 5e-6, batch 4,
    focal loss alpha 0.75 gamma 2); a fresh head on a bare encoder wants a larger head rate."""

    epochs: int = field(default=20, metadata=help_text("passes over the training rows", at_least=1))
    max_steps: int = field(default=0, metadata=help_text("train at most N steps (fewer than --epochs passes take on a large feed); 0 = no limit", at_least=0))
    learning_rate: float = field(default=5e-6, metadata=help_text("learning rate of the encoder (and of the head unless --head-learning-rate)", more_than=0))
    head_learning_rate: float | None = field(
        default=None,
        metadata=help_text(
            f"learning rate of everything but the encoder (the entity head); default: --learning-rate for a "
            f"pretrained checkpoint, {FRESH_HEAD_LEARNING_RATE:g} for a fresh head built on --encoder/--offline"
        , more_than=0),
    )
    batch_size: int = field(default=4, metadata=help_text("training headlines per step and worker", at_least=1))
    focal_loss_alpha: float = field(default=0.75, metadata=help_text("gliner focal loss alpha (weight of positive spans)", at_least=-1, at_most=1))
    focal_loss_gamma: float = field(default=2.0, metadata=help_text("gliner focal loss gamma (focus on hard spans)", at_least=0))
    company_weight: float | None = field(
        default=None,
        metadata=help_text(
            f"spanmarker: cross-entropy weight of company spans against non-entity spans; default: 1 for a "
            f"pretrained checkpoint, {FRESH_HEAD_COMPANY_WEIGHT:g} for a fresh head built on --encoder/--offline"
        , more_than=0),
    )
    weight_decay: float = field(default=0.01, metadata=help_text("AdamW weight decay", at_least=0))
    warmup_ratio: float = field(default=0.1, metadata=help_text("share of steps with a linear learning-rate warm-up", at_least=0, below=1))
    seed: int = field(default=0, metadata=help_text("seed of head initialisation and data order", at_least=0))
    valid_batch_size: int = field(default=32, metadata=help_text("headlines per prediction batch in validation", at_least=1))
    eval_every: int = field(
        default=0,
        metadata=help_text(
            f"validate and checkpoint every N training steps; 0 = once per epoch, and at least {MIN_VALIDATIONS} times a run "
            f"(every 1/{MIN_VALIDATIONS} of its steps when that is fewer)",
            at_least=0,
        ),
    )
    patience: int = field(default=0, metadata=help_text("stop after N validations in a row without a better F1; 0 = train every epoch", at_least=0))

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


def hf_arguments(config: "TrainConfig", work_dir: str, max_steps: int) -> dict[str, Any]:
    """`TrainingArguments` both adapters share: the config's optimisation settings over `max_steps`
    steps (the batches stream in, so the Trainer counts steps, not epochs), no HF checkpoints,
    evaluation or logging (validation and checkpoints are ours), no experiment trackers, data
    loading in the worker, no per-step progress bars, the fused AdamW kernel; CUDA when present, in
    bf16 mixed precision (fp16 where the GPU has no bf16)."""
    import torch

    cuda = best_device() == "cuda"
    bf16 = cuda and torch.cuda.is_bf16_supported()
    return {
        "output_dir": work_dir,
        "learning_rate": config.learning_rate,
        "weight_decay": config.weight_decay,
        "warmup_ratio": config.warmup_ratio,
        "per_device_train_batch_size": config.batch_size,
        "max_steps": max_steps,
        "seed": config.seed,
        # gliner's TrainingArguments default to the per-tensor AdamW loop: on CPU a quarter of a
        # MiniLM step's time, five times what the fused kernel takes
        "optim": "adamw_torch_fused",
        "use_cpu": not cuda,
        "bf16": bf16,
        "fp16": cuda and not bf16,
        "disable_tqdm": True,
        "save_strategy": "no",
        "eval_strategy": "no",
        "logging_strategy": "no",
        "report_to": "none",
        "dataloader_num_workers": 0,
        "remove_unused_columns": False,
        "ddp_find_unused_parameters": True,  # both models carry parameters the loss never uses (the encoder pooler)
    }
