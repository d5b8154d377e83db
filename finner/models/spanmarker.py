"""SpanMarker behind `NerModel`: zero-shot with an organisation model, fine-tuning with its Trainer.

    SpanMarkerModelAdapter.load("tomaarsen/span-marker-bert-base-orgs")   # hub id (network) or a local checkpoint
    SpanMarkerModelAdapter.from_encoder(offline_encoder_dir())             # fresh head on a local encoder, offline

The model reads pre-split words (`finner.tokens.word_tokens`, the tokenisation of every training
table), so predicted word ranges map back to exact character offsets in the original title.
Its organisation label (`ORG` in the hub model) is our `company`. Fine-tuning data is word tokens
plus tags in the model's own label scheme (IOB for a model built here, plain IO for the hub's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from finner.errors import FinnerError
from finner.models.base import ThresholdedModel, best_device, local_checkpoint
from finner.models.train_config import Example, TrainConfig, hf_arguments
from finner.schemas import COMPANY, Span, make_span
from finner.tokens import char_to_token_span, token_to_char_span, word_tokens

if TYPE_CHECKING:
    import span_marker
    import transformers

DEFAULT_SPANMARKER = "tomaarsen/span-marker-bert-base-orgs"
# Entity labels of SpanMarker checkpoints that mean "a company" here.
COMPANY_LABELS = (COMPANY, "ORG", "organization", "ORGANIZATION", "organisation")
# Labels of a model built on a bare encoder: IOB, so two adjacent companies stay two spans.
FRESH_LABELS = ("O", f"B-{COMPANY}", f"I-{COMPANY}")
# Sizes of a model built on a bare encoder. Every input is padded to model_max_length +
# 2 * marker_max_length tokens, so these set the cost of each step: headlines are short (a longer
# one is spread over several samples), and a company name is at most a few words.
MODEL_MAX_LENGTH = 64  # sub-word tokens of the headline
MARKER_MAX_LENGTH = 64  # candidate spans per sample
ENTITY_MAX_LENGTH = 5  # words in the longest company name


def _company_label(config: Any) -> str:
    """The model's entity label that stands for a company."""
    labels = set(config.id2label.values()) - {"O"}
    for label in COMPANY_LABELS:
        if label in labels:
            return label
    raise FinnerError(f"this SpanMarker model has no company-like label (has {sorted(labels)}; expected one of {list(COMPANY_LABELS)})")


def iob_tags(config: Any, title: str, spans: Sequence[Span], row: str = "") -> dict[str, list]:
    """`tokens` and `ner_tags` of one headline in the label ids the model was built with."""
    label = _company_label(config)
    scheme = {name: label_id for label_id, name in config.encoder["id2label"].items()}
    if config.are_labels_schemed():
        begin, inside = scheme[f"B-{label}"], scheme[f"I-{label}"]
    else:
        begin = inside = scheme[label]
    tokens = word_tokens(title)
    tags = [scheme["O"]] * len(tokens)
    for span in spans:
        covered = char_to_token_span(tokens, int(span["start"]), int(span["end"]))
        if covered is None:
            raise FinnerError(f"row {row or title!r}: span {span['start']}:{span['end']} covers no word of the title")
        tags[covered[0]] = begin
        for i in range(covered[0] + 1, covered[1] + 1):
            tags[i] = inside
    return {"tokens": [token for token, _, _ in tokens], "ner_tags": tags}


class SpanMarkerModelAdapter(ThresholdedModel):
    """A SpanMarker model predicting company spans (its organisation label) scored at least `threshold`."""

    kind = "spanmarker"

    def __init__(self, model: "span_marker.SpanMarkerModel", threshold: float = 0.5, batch_size: int = 32) -> None:
        self.model = model
        self.company_label = _company_label(model.config)
        self.threshold = threshold
        self.batch_size = batch_size
        self.fresh_head = False  # True when built on a bare encoder: its head trains at a higher rate

    @classmethod
    def load(cls, path: str, threshold: float = 0.5, batch_size: int = 32, **_: Any) -> "SpanMarkerModelAdapter":
        """A hub id (e.g. `tomaarsen/span-marker-bert-base-orgs`) or a checkpoint directory."""
        local = local_checkpoint(path)
        from span_marker import SpanMarkerModel

        try:
            model = SpanMarkerModel.from_pretrained(path, local_files_only=local)
        except (OSError, ValueError) as err:
            raise FinnerError(f"cannot load a SpanMarker model from {path!r}: {err}") from err
        return cls(model.to(best_device()), threshold=threshold, batch_size=batch_size)

    @classmethod
    def from_encoder(cls, encoder: str, threshold: float = 0.5, batch_size: int = 32) -> "SpanMarkerModelAdapter":
        """A SpanMarker with an untrained head on a local encoder directory (no network)."""
        from span_marker import SpanMarkerModel

        try:
            model = SpanMarkerModel.from_pretrained(
                encoder,
                labels=list(FRESH_LABELS),
                model_max_length=MODEL_MAX_LENGTH,
                marker_max_length=MARKER_MAX_LENGTH,
                entity_max_length=ENTITY_MAX_LENGTH,
            )
        except (OSError, ValueError) as err:
            raise FinnerError(f"cannot build SpanMarker on encoder {encoder!r}: {err}") from err
        built = cls(model.to(best_device()), threshold=threshold, batch_size=batch_size)
        built.fresh_head = True
        return built

    def predict(self, titles: list[str]) -> list[list[Span]]:
        tokenized = [word_tokens(title) for title in titles]
        todo = [i for i, tokens in enumerate(tokenized) if tokens]
        out: list[list[Span]] = [[] for _ in titles]
        if not todo:
            return out
        found = self.model.predict([[t for t, _, _ in tokenized[i]] for i in todo], batch_size=self.batch_size)
        for i, entities in zip(todo, found):
            title, tokens = titles[i], tokenized[i]
            for e in entities:
                if e["label"] != self.company_label or not self.passes(e["score"], self.threshold):
                    continue
                start, end = token_to_char_span(tokens, e["word_start_index"], e["word_end_index"] - 1)
                out[i].append(make_span(title, start, end, score=e["score"]))
        return [self.subjects(title, spans) for title, spans in zip(titles, out)]

    @staticmethod
    def passes(score: float, threshold: float) -> bool:
        return score >= threshold

    def save(self, path: str) -> None:
        self.model.save_pretrained(path)

    def batch_encoder(self) -> "SpanMarkerBatches":
        return SpanMarkerBatches(self.model)

    def model_inputs(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        import torch

        return {name: torch.tensor(array) for name, array in arrays.items()}

    def trainer(self, config: TrainConfig, work_dir: str, max_steps: int) -> "transformers.Trainer":
        """span_marker's Trainer, configured from `config`; the batches are handed to it by the
        fine-tuning loop (`finner.train`)."""
        from span_marker import Trainer
        from transformers import TrainingArguments

        self.model.loss_func = self._loss(config.company_span_weight(self.fresh_head))
        args = TrainingArguments(**hf_arguments(config, work_dir, max_steps))
        return Trainer(model=self.model, args=args, optimizers=(self._optimizer(config), None))

    def _loss(self, company_weight: float) -> Any:
        """Cross-entropy over candidate spans with entity labels weighted `company_weight` against
        `O`. The weights are a non-persistent buffer: they follow the model to its device but
        stay out of saved checkpoints, which load as plain SpanMarker models."""
        import torch

        loss = torch.nn.CrossEntropyLoss()
        weights = torch.full((self.model.config.num_labels,), company_weight)
        weights[self.model.config.outside_id] = 1.0
        loss.register_buffer("weight", weights.to(self.model.device), persistent=False)
        return loss

    def _optimizer(self, config: "TrainConfig") -> Any:
        """AdamW with the head on its own rate (None, the Trainer's own optimizer, when it is the encoder's)."""
        import torch

        head_rate = config.head_rate(self.fresh_head)
        if head_rate == config.learning_rate:
            return None
        encoder, head = [], []
        for name, parameter in self.model.named_parameters():
            (encoder if name.startswith("encoder.") else head).append(parameter)
        groups = [{"params": encoder, "lr": config.learning_rate}, {"params": head, "lr": head_rate}]
        return torch.optim.AdamW(groups, lr=config.learning_rate, weight_decay=config.weight_decay)


class SpanMarkerBatches:
    """Rows -> one training batch of SpanMarker's inputs, by span_marker's own preprocessing: word
    tokens and tags in the model's label scheme (`iob_tags`), its label normalizer, its tokenizer
    (candidate spans and their labels), `Trainer.spread_sample` (a headline with more candidate spans
    than one sample holds is spread over several, so a batch can hold more samples than rows) and its
    data collator. Holds tokenizer, config and collator only (no weights), so it pickles into Ray
    Data tasks."""

    def __init__(self, model: "span_marker.SpanMarkerModel") -> None:
        from span_marker.label_normalizer import AutoLabelNormalizer

        self.config, self.tokenizer, self.collator = model.config, model.tokenizer, model.data_collator
        self.normalizer = AutoLabelNormalizer.from_config(model.config)

    def __call__(self, rows: Sequence[Example]) -> dict[str, np.ndarray]:
        from span_marker import Trainer

        tagged = [iob_tags(self.config, title, spans, row) for row, title, spans in rows]
        tokens = [t["tokens"] for t in tagged]
        labels = self.normalizer(tokens, [t["ner_tags"] for t in tagged])["ner_tags"]
        encoded = self.tokenizer({"tokens": tokens, "ner_tags": labels})
        samples = Trainer.spread_sample(encoded, model_max_length=self.tokenizer.model_max_length, marker_max_length=self.config.marker_max_length)
        features = [dict(zip(samples, values)) for values in zip(*samples.values())]
        return {name: value.numpy() for name, value in self.collator(features).items()}
