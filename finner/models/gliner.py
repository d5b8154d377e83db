"""GLiNER behind `NerModel`: zero-shot with the label `company`, fine-tuning with gliner's Trainer.

    GlinerModel.load("EmergentMethods/gliner_medium_news-v2.1")   # hub id (needs network) or a local checkpoint
    GlinerModel.from_encoder(offline_encoder_dir())                # fresh span head on a local encoder, offline
    load_gliner(path)                                              # the bare `gliner.GLiNER`, for batch scorers

Training data is gliner's own format: word tokens plus inclusive token spans, both from
`finner.tokens`, and the model splits words with the same tokeniser at prediction time, so a
span it learned is a span it can predict.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from finner.errors import FinnerError
from finner.models.base import ThresholdedModel, best_device, local_checkpoint
from finner.models.train_config import Example, TrainConfig, hf_arguments
from finner.schemas import COMPANY, Span, make_span
from finner.tokens import char_to_token_span, word_tokens

if TYPE_CHECKING:
    import gliner
    import transformers

DEFAULT_GLINER = "EmergentMethods/gliner_medium_news-v2.1"


class SkippedBatchError(FinnerError):
    """gliner's Trainer swallowed a failing step (it returns a zero loss and moves on)."""


class FinnerWordsSplitter:
    """gliner's words-splitter protocol over `finner.tokens.word_tokens`: (word, start, end)."""

    def __call__(self, text: str) -> Iterator[tuple[str, int, int]]:
        yield from word_tokens(text)


def _use_finner_words(model: "gliner.GLiNER") -> "gliner.GLiNER":
    model.data_processor.words_splitter = FinnerWordsSplitter()
    return model


def load_gliner(path: str, device: str = "auto") -> "gliner.GLiNER":
    """The underlying `gliner.GLiNER` of a checkpoint (hub id or local directory), on `device`
    (`best_device`'s choice), splitting words like our training data. For scorers that batch gliner
    themselves; `device="cpu"` for the processes that only tokenize."""
    local = local_checkpoint(path)
    from gliner import GLiNER

    try:
        model = GLiNER.from_pretrained(path, local_files_only=local)
    except (OSError, ValueError) as err:
        raise FinnerError(f"cannot load a GLiNER model from {path!r}: {err}") from err
    return _use_finner_words(model).to(best_device(device)).eval()


def gliner_example(title: str, spans: Sequence[Span], row: str = "") -> dict[str, Any]:
    """One training example in gliner's format: `tokenized_text` and inclusive `ner` token spans."""
    tokens = word_tokens(title)
    ner = []
    for span in spans:
        covered = char_to_token_span(tokens, int(span["start"]), int(span["end"]))
        if covered is None:
            raise FinnerError(f"row {row or title!r}: span {span['start']}:{span['end']} covers no word of the title")
        ner.append([covered[0], covered[1], COMPANY])
    return {"tokenized_text": [token for token, _, _ in tokens], "ner": ner}


class _SkipRecorder(logging.Handler):
    """Collects the warnings gliner's Trainer logs when it swallows a failing step."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.skips: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Skipping batch"):
            self.skips.append(record.getMessage())


def _strict_trainer_class() -> type:
    from gliner.training import Trainer
    from gliner.training import trainer as gliner_trainer

    class StrictGlinerTrainer(Trainer):
        """gliner's Trainer, but a step it skipped (it catches out-of-memory errors, logs
        "Skipping batch" and returns a zero loss) stops training instead of silently training on
        nothing. Detected from that log record, not from the loss: a confident model's focal loss
        can legitimately underflow to exactly zero."""

        def training_step(self, model, inputs, num_items_in_batch=None):
            recorder = _SkipRecorder()
            gliner_trainer.logger.addHandler(recorder)
            try:
                loss = super().training_step(model, inputs, num_items_in_batch)
            finally:
                gliner_trainer.logger.removeHandler(recorder)
            if recorder.skips:
                raise SkippedBatchError(
                    f"gliner skipped training step {self.state.global_step + 1} ({recorder.skips[0][:200]}): "
                    "lower --batch-size or use a larger device"
                )
            return loss

    return StrictGlinerTrainer


class GlinerModel(ThresholdedModel):
    """A GLiNER model predicting `company` spans above `threshold`, the guideline's subjects
    (`finner.roles.subject_companies`)."""

    kind = "gliner"

    def __init__(self, model: "gliner.GLiNER", threshold: float = 0.5, batch_size: int = 32) -> None:
        self.model = _use_finner_words(model)
        self.threshold = threshold
        self.batch_size = batch_size
        self.fresh_head = False  # True when built on a bare encoder: its head trains at a higher rate

    @classmethod
    def load(cls, path: str, threshold: float = 0.5, batch_size: int = 32, **_: Any) -> "GlinerModel":
        """A hub id (e.g. `EmergentMethods/gliner_medium_news-v2.1`) or a checkpoint directory."""
        return cls(load_gliner(path), threshold=threshold, batch_size=batch_size)

    @classmethod
    def from_encoder(cls, encoder: str, threshold: float = 0.5, batch_size: int = 32, max_width: int = 8) -> "GlinerModel":
        """A GLiNER with an untrained span head on a local encoder directory (no network):
        zero-shot it knows nothing, fine-tuning teaches it. `max_width`: longest span in words."""
        from gliner import GLiNER, GLiNERConfig

        config = GLiNERConfig(model_name=encoder, max_width=max_width)
        try:
            model = GLiNER.from_config(config)
        except OSError as err:
            raise FinnerError(f"cannot build GLiNER on encoder {encoder!r}: {err}") from err
        built = cls(model.to(best_device()), threshold=threshold, batch_size=batch_size)
        built.fresh_head = True
        return built

    def predict(self, titles: list[str]) -> list[list[Span]]:
        if not titles:
            return []
        found = self.model.inference(titles, [COMPANY], threshold=self.threshold, batch_size=self.batch_size, flat_ner=True)
        return [
            self.subjects(title, [make_span(title, e["start"], e["end"], score=e["score"]) for e in entities])
            for title, entities in zip(titles, found)
        ]

    @staticmethod
    def passes(score: float, threshold: float) -> bool:
        """gliner keeps a span score above the threshold compared in the scores' float32."""
        return score > float(np.float32(threshold))

    def save(self, path: str) -> None:
        self.model.save_pretrained(path)

    def batch_encoder(self) -> "GlinerBatches":
        return GlinerBatches(self.model._create_data_collator())

    def model_inputs(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        """A training batch as the model takes it: tensors, plus the lengths gliner's collator
        precomputes on the CPU (its forward would otherwise read them back from the GPU)."""
        import torch
        from gliner.data_processing.collator import BaseDataCollator

        batch = {name: torch.tensor(array) for name, array in arrays.items()}
        BaseDataCollator._add_precomputed_lengths(batch)
        return batch

    def trainer(self, config: TrainConfig, work_dir: str, max_steps: int) -> "transformers.Trainer":
        """gliner's Trainer, configured from `config` (focal loss, learning rates); the batches are
        handed to it by the fine-tuning loop (`finner.train`)."""
        from gliner.training import TrainingArguments

        args = TrainingArguments(
            others_lr=config.head_rate(self.fresh_head),
            others_weight_decay=config.weight_decay,
            focal_loss_alpha=config.focal_loss_alpha,
            focal_loss_gamma=config.focal_loss_gamma,
            **hf_arguments(config, work_dir, max_steps),
        )
        return _strict_trainer_class()(model=self.model, args=args, processing_class=self.model.data_processor.transformer_tokenizer)


class GlinerBatches:
    """Rows -> one training batch of gliner's inputs, by gliner's own collator (word tokens and
    span labels from `gliner_example`, then its tokenisation, span enumeration, padding and label
    tensors). Holds the collator only (tokenizer and config, no weights), so it pickles into Ray
    Data tasks."""

    def __init__(self, collator: Any) -> None:
        self.collator = collator

    def __call__(self, rows: Sequence[Example]) -> dict[str, np.ndarray]:
        import torch

        batch = self.collator([gliner_example(title, spans, row) for row, title, spans in rows])
        return {name: value.numpy() for name, value in batch.items() if isinstance(value, torch.Tensor)}
