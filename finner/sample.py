"""A review-sized, stratified, seeded sample of the feed, split by date.

As in the case study: the same fraction (5%) of every company cluster's headlines, and of the
headlines with no company; then train 2010-2016, validation 2017-2018, test 2019-2020 by date.

* **Strata.** A headline naming several companies belongs to its *rarest* cluster (fewest
  headlines; ties by name), so rare companies get their share and each headline is in exactly one
  stratum. Headlines whose LLM label is `invalid_output` or `failed` form one more stratum
  (`UNLABELED_CLUSTER`, sampled at the same fraction, no suggested spans): leaving them out would
  bias the gold set toward headlines the LLM finds easy. `--no-sample-unlabeled` drops them.
* **Counts.** A stratum of n headlines gives floor(f n) headlines plus one more with probability
  f n - floor(f n), so small clusters are represented in expectation instead of rounded away.
* **Which headlines.** The k with the smallest seeded hash of their id: a pure function of
  (ids, seed), independent of row order, so re-running gives the same sample. `Draw` takes the
  headlines one at a time and keeps only those still in the running, for feeds of any size.
* **Splits.** By the UTC calendar year of the date. Headlines outside every split range (e.g.
  2009) are not sampled, and the summary says how many.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from finner.config import Config, ConfigError, help_text
from finner.schemas import NO_COMPANY_CLUSTER, SPLITS, UNLABELED_CLUSTER


@dataclass(frozen=True)
class SampleConfig(Config):
    fraction: float = field(default=0.05, metadata=help_text("share of every stratum (cluster, no company, unlabeled) to sample", more_than=0, at_most=1))
    seed: int = field(default=0, metadata=help_text("seed of the draw: same seed and inputs, same sample", at_least=0))
    train_years: tuple[int, ...] = field(default=(2010, 2016), metadata=help_text("first and last year (inclusive) of train", at_least=1900, at_most=2100))
    valid_years: tuple[int, ...] = field(default=(2017, 2018), metadata=help_text("first and last year (inclusive) of valid", at_least=1900, at_most=2100))
    test_years: tuple[int, ...] = field(default=(2019, 2020), metadata=help_text("first and last year (inclusive) of test", at_least=1900, at_most=2100))
    sample_unlabeled: bool = field(default=True, metadata=help_text("also sample headlines whose LLM label is invalid or failed"))

    def __post_init__(self) -> None:
        super().__post_init__()
        ranges = self.year_ranges()
        for split, years in ranges.items():
            if len(years) != 2 or years[0] > years[1]:
                raise ConfigError(f"{split}_years", f"must be two years, first <= last; got {list(years)}")
        spans = sorted(ranges.items(), key=lambda item: item[1])
        for (_, (_, last)), (split, (first, _)) in zip(spans, spans[1:]):
            if first <= last:
                raise ConfigError(f"{split}_years", f"split year ranges overlap: {dict(ranges)}")

    def year_ranges(self) -> dict[str, tuple[int, ...]]:
        return dict(zip(SPLITS, (self.train_years, self.valid_years, self.test_years)))

    def split_of(self, year: int) -> str | None:
        """The split a headline of this year goes to, or None when no range covers it."""
        for split, (first, last) in self.year_ranges().items():
            if first <= year <= last:
                return split
        return None


def unit_hash(seed: int, key: str) -> float:
    """A uniform number in [0, 1) from (seed, key): stable across processes and platforms."""
    digest = hashlib.blake2b(f"{seed}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def stratum_of(clusters: Iterable[str] | None, cluster_sizes: Mapping[str, int]) -> str:
    """The stratum of a headline: its rarest cluster, NO_COMPANY_CLUSTER, or UNLABELED_CLUSTER (None)."""
    if clusters is None:
        return UNLABELED_CLUSTER
    clusters = list(clusters)
    if not clusters:
        return NO_COMPANY_CLUSTER
    return min(clusters, key=lambda c: (cluster_sizes[c], c))


def quota(stratum: str, size: int, config: SampleConfig) -> int:
    """How many of a stratum's `size` headlines are sampled: floor(f n), plus one with probability
    f n - floor(f n) (a seeded coin per stratum)."""
    expected = config.fraction * size
    return math.floor(expected) + (unit_hash(config.seed, f"stratum\x1f{stratum}") < expected - math.floor(expected))


class Draw:
    """The draw fed one eligible headline at a time, in any order, holding per stratum only the
    headlines that can still be among its `quota` smallest hashes: a feed of any size is sampled in
    memory that grows with the sample and the number of strata, not with the feed.

    `bounds` gives, before the first `add`, an upper bound on each stratum's final size (for a
    company cluster, its eligible headlines); the final size is only known at the end, but its
    quota is at most that of the bound (`quota` grows with the size), so that many candidates per
    stratum are enough."""

    def __init__(self, config: SampleConfig, bounds: Mapping[str, int]):
        self.config = config
        self.bounds = bounds
        self.sizes: Counter = Counter()
        self.candidates: dict[str, list[tuple[float, str]]] = {}
        self.most: dict[str, int] = {}  # stratum -> quota of its bound

    def add(self, headline_id: str, stratum: str) -> None:
        self.sizes[stratum] += 1
        kept = self.candidates.setdefault(stratum, [])
        kept.append((unit_hash(self.config.seed, headline_id), headline_id))
        if stratum not in self.most:
            self.most[stratum] = quota(stratum, self.bounds[stratum], self.config)
        most = self.most[stratum]
        if len(kept) > 2 * most:  # a sort every `most` additions: O(log most) per headline
            kept.sort()
            del kept[most:]

    def chosen(self) -> dict[str, str]:
        """Headline id -> stratum for the sampled headlines."""
        out = {}
        for stratum, kept in self.candidates.items():
            if self.sizes[stratum] > self.bounds[stratum]:
                raise ValueError(f"stratum {stratum!r}: {self.sizes[stratum]} headlines, more than its bound {self.bounds[stratum]}")
            for _, headline_id in sorted(kept)[: quota(stratum, self.sizes[stratum], self.config)]:
                out[headline_id] = stratum
        return out


def draw(strata: Mapping[str, str], config: SampleConfig) -> dict[str, str]:
    """Headline id -> stratum for the sampled headlines, given every eligible id's stratum."""
    sampler = Draw(config, Counter(strata.values()))
    for headline_id, stratum in strata.items():
        sampler.add(headline_id, stratum)
    return sampler.chosen()


@dataclass
class SampleSummary:
    eligible: Counter = field(default_factory=Counter)  # split -> headlines in that split's years
    sampled: Counter = field(default_factory=Counter)  # split -> sampled headlines
    strata: Counter = field(default_factory=Counter)  # kind of stratum -> sampled headlines
    out_of_range: Counter = field(default_factory=Counter)  # year -> headlines no split covers
    eligible_years: Counter = field(default_factory=Counter)  # year -> eligible headlines
    sampled_years: Counter = field(default_factory=Counter)  # year -> sampled headlines

    def lines(self) -> list[str]:
        total = sum(self.sampled.values())
        out = [f"sample: {total} headlines: " + ", ".join(f"{s} {self.sampled[s]}" for s in SPLITS)]
        out.append("eligible (label + date in a split range): " + ", ".join(f"{s} {self.eligible[s]}" for s in SPLITS))
        out.append("sampled from: " + ", ".join(f"{k} {v}" for k, v in sorted(self.strata.items())))
        if self.out_of_range:
            years = ", ".join(f"{y}: {n}" for y, n in sorted(self.out_of_range.items()))
            out.append(f"not sampled, outside every split range: {sum(self.out_of_range.values())} headlines ({years})")
        return out
