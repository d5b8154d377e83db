"""Entity-level precision, recall and F1 over character spans, micro-averaged over headlines.

The same code scores every model, zero-shot or fine-tuned, and the LLM's own labels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from finner.models.base import Span


@dataclass(frozen=True)
class PRF:
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def _exact(spans: Iterable[Span]) -> set[tuple[int, int]]:
    return {(int(s["start"]), int(s["end"])) for s in spans}


def exact_prf(gold: Sequence[Sequence[Span]], predicted: Sequence[Sequence[Span]]) -> PRF:
    """Micro P/R/F1 with exact (start, end) matches; duplicate spans count once."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold rows but {len(predicted)} predicted rows")
    tp = fp = fn = 0
    for g, p in zip(gold, predicted):
        gs, ps = _exact(g), _exact(p)
        tp += len(gs & ps)
        fp += len(ps - gs)
        fn += len(gs - ps)
    return PRF(tp, fp, fn)
