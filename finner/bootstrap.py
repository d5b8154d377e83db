"""How sure an F1 is: a seeded, paired bootstrap over headlines.

A test part of a few hundred headlines leaves one F1 a standard error of about a point, so a figure
alone cannot tell a gain from the luck of the draw. Headlines are drawn with replacement (the
headline is the unit: its spans are not independent of one another), `resamples` times, and each
F1 gets the 2.5th to 97.5th percentile of its resampled values.

Paired: every system scored on the same headlines is scored on the same draws (`Resamples`, a
function of the headline count and the seed alone), so the interval of a difference counts only
the headlines on which the two systems differ, not the draw of headlines both get right or wrong.
Several training seeds of one model are averaged draw by draw (`mean_f1`), so the interval of a
mean difference holds the test headlines' uncertainty; the seeds' spread is reported beside it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from finner.config import Config, help_text
from finner.metrics import MATCHES
from finner.schemas import Span

CONFIDENCE = 0.95


@dataclass(frozen=True)
class BootstrapConfig(Config):
    """The bootstrap behind every interval a job prints and stores."""

    bootstrap_seed: int = field(default=0, metadata=help_text("seed of the headline resamples behind every 95% interval", at_least=0))
    resamples: int = field(default=1000, metadata=help_text("bootstrap resamples of the headlines per interval", at_least=100))


@dataclass(frozen=True)
class Interval:
    """A 95% bootstrap interval."""

    low: float
    high: float


def headline_counts(gold: Sequence[Sequence[Span]], predicted: Sequence[Sequence[Span]], match: str) -> np.ndarray:
    """(tp, fp, fn) of every headline under `match`, shape (headlines, 3): what the resamples sum."""
    score = MATCHES[match]
    counts = [dataclasses.astuple(score([g or []], [p or []])) for g, p in zip(gold, predicted, strict=True)]
    return np.array(counts, dtype=np.int64).reshape(-1, 3)


def f1_of(counts: np.ndarray) -> np.ndarray:
    """F1 of summed (tp, fp, fn) along the last axis: 2tp / (2tp + fp + fn), 0 where nothing counts."""
    tp, fp, fn = np.moveaxis(counts.astype(np.float64), -1, 0)
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros_like(denominator), where=denominator > 0)


@functools.lru_cache(maxsize=8)
def _weights(headlines: int, seed: int, resamples: int) -> np.ndarray:
    rng = np.random.default_rng([seed, headlines])
    return rng.multinomial(headlines, np.full(headlines, 1 / headlines), size=resamples)


@dataclass(frozen=True)
class Resamples:
    """`resamples` draws of `headlines` headlines with replacement; `weights[b, i]` is how often
    headline i is in draw b. The same (headlines, seed, resamples) give the same draws anywhere."""

    headlines: int
    config: BootstrapConfig = BootstrapConfig()

    @property
    def weights(self) -> np.ndarray:
        return _weights(self.headlines, self.config.bootstrap_seed, self.config.resamples)

    def f1(self, counts: np.ndarray) -> np.ndarray:
        """The F1 of every draw, from per-headline counts (`headline_counts`)."""
        if counts.shape != (self.headlines, 3):
            raise ValueError(f"counts of {counts.shape[0]} headlines resampled as {self.headlines}")
        return f1_of(self.weights @ counts)

    def mean_f1(self, runs: Sequence[np.ndarray]) -> np.ndarray:
        """Draw by draw, the mean F1 of several runs (training seeds) scored on the same headlines."""
        return np.mean([self.f1(counts) for counts in runs], axis=0)


def interval(values: np.ndarray) -> Interval:
    """The central `CONFIDENCE` share of resampled values."""
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return Interval(float(low), float(high))


def f1_interval(counts: np.ndarray, config: BootstrapConfig = BootstrapConfig()) -> Interval:
    return interval(Resamples(len(counts), config).f1(counts))


@dataclass(frozen=True)
class Difference:
    """A − B on the same headlines: the F1 difference (means over runs) and its paired interval."""

    value: float
    interval: Interval


def difference(a: Sequence[np.ndarray], b: Sequence[np.ndarray], config: BootstrapConfig = BootstrapConfig()) -> Difference:
    """Mean F1 of runs `a` minus mean F1 of runs `b` (each run's per-headline counts on the same
    headlines, in the same order), with the interval of that difference over paired resamples."""
    resamples = Resamples(len(a[0]), config)
    value = float(np.mean([f1_of(c.sum(axis=0)) for c in a]) - np.mean([f1_of(c.sum(axis=0)) for c in b]))
    return Difference(value, interval(resamples.mean_f1(a) - resamples.mean_f1(b)))


@dataclass(frozen=True)
class SeedSpread:
    """One model trained with several seeds: each seed's F1, their mean and sample sd."""

    seeds: tuple[int, ...]
    f1s: tuple[float, ...]

    @property
    def mean(self) -> float:
        return float(np.mean(self.f1s))

    @property
    def sd(self) -> float:
        return float(np.std(self.f1s, ddof=1)) if len(self.f1s) > 1 else 0.0
