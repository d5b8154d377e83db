"""A model of finner's own interface for tests that need predictions they can state exactly."""

from __future__ import annotations

from finner.models.base import ThresholdedModel
from finner.schemas import make_span


class ScoredSpans(ThresholdedModel):
    """Predicts given words of given titles with given scores, those above its threshold."""

    kind = "scored"
    subject_rules = False  # its spans exactly as given

    def __init__(self, scored: dict[str, list[tuple[str, float]]], threshold: float = 0.0) -> None:
        self.scored, self.threshold = scored, threshold

    @staticmethod
    def passes(score, threshold):
        return score > threshold

    def predict(self, titles):
        return [self.subjects(t, [make_span(t, t.index(w), t.index(w) + len(w), score=p) for w, p in self.scored.get(t, []) if self.passes(p, self.threshold)]) for t in titles]

    def save(self, path):
        raise NotImplementedError  # never saved in the tests that use it

    @classmethod
    def load(cls, path, **_):
        raise NotImplementedError
