"""Group company names that are spellings of one company, at feed scale, in bounded memory.

Two names are *similar* when rapidfuzz's Levenshtein-based `ratio` (normalized Indel
similarity, 0-100) of their processed forms is at least the threshold (85, as in the case study).
The default processing keeps only a name's distinctive words (`finner.metrics.company_key`): on full legal
names, ratio 85 chains "Sony Corporation", "FedEx Corporation"... into one cluster through their
shared suffix; and names shorter than `min_fuzzy_length` only join on equality (Visa/Vista).
Clusters are the connected components of the similarity relation (transitive), each named by
its most frequent member.

The case study runs `cdist` of all names against all names: an N x N score matrix in memory.
Here names with the same processed form are one node, and the pairs are scored in row chunks
(`chunk_rows` x window scores at a time, `score_cutoff`, `workers=-1`, uint8 scores), so memory
is bounded whatever N is:

* `method="length_window"` (default) sorts the names by length and scores each chunk only against
  the names after it whose length can still reach the threshold: `ratio >= t` needs
  `|l1 - l2| <= (1 - t/100)(l1 + l2)` (the Indel distance is at least the length difference), so
  a 20-character name never meets one of 28+. This is a theorem, not a heuristic: the similar
  pairs, hence the clusters, are exactly those of all-pairs scoring.
* `method="all_pairs"` scores the whole upper triangle: the reference the tests and the benchmark
  compare against.

No n-gram blocking: at ratio 85 two similar names may differ by 30% of their characters, so exact
q-gram bounds prune little, and blocking that does prune loses pairs and splits clusters; exact
clusters were chosen (the measurements are in docs/benchmarks.md). Variants collapse
into one processed key and the window skips most pairs, so the cost grows slower than N^2.
The edges feed `scipy.sparse.csgraph.connected_components` (union-find in C).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from rapidfuzz import fuzz, process, utils
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from finner.config import Config, help_text
from finner.metrics import company_key


@dataclass(frozen=True)
class ClusterConfig(Config):
    threshold: float = field(default=85.0, metadata=help_text("names with a similarity >= this (0-100) are linked", more_than=0, at_most=100))
    scorer: Literal["ratio", "token_sort_ratio"] = field(
        default="ratio", metadata=help_text("rapidfuzz scorer: ratio (Levenshtein-based), or the same on sorted words")
    )
    processor: Literal["company", "default", "none"] = field(
        default="company",
        metadata=help_text(
            "company: lower-case, drop punctuation, legal forms (Inc, Corp...) and generic words (Pharmaceuticals...); "
            "default: rapidfuzz default_process only; none: compare as written"
        ),
    )
    method: Literal["length_window", "all_pairs"] = field(
        default="length_window", metadata=help_text("length_window: score only pairs whose lengths allow the threshold; all_pairs: the reference")
    )
    min_fuzzy_length: int = field(
        default=5,
        metadata=help_text("processed names shorter than this link only when equal: at ratio 85, Visa/Vista and Snap/SAP would merge", at_least=0),
    )
    chunk_rows: int = field(default=1024, metadata=help_text("rows per cdist call: memory is at most chunk_rows x names bytes", at_least=1))
    workers: int = field(default=-1, metadata=help_text("rapidfuzz threads (-1: all cores)", at_least=-1))

    def __post_init__(self) -> None:
        super().__post_init__()


@dataclass(frozen=True)
class Clustering:
    """Every input name mapped to its cluster's representative, plus what the search cost."""

    representative: dict[str, str]
    n_keys: int  # distinct processed forms actually compared
    pairs_scored: int  # scores computed
    edges: int  # similar pairs found

    @property
    def n_clusters(self) -> int:
        return len(set(self.representative.values()))


def comparison_key(name: str, config: ClusterConfig) -> str:
    """The form a name is compared in; `ratio` on it equals the configured scorer on the processed names."""
    key = {"company": company_key, "default": utils.default_process, "none": str}[config.processor](name)
    if config.scorer == "token_sort_ratio":  # rapidfuzz's token_sort_ratio is ratio on sorted words
        key = " ".join(sorted(key.split()))
    return key


def cluster_names(counts: Mapping[str, int], config: ClusterConfig = ClusterConfig()) -> Clustering:
    """Cluster names (with how often each occurs) into groups named by their most frequent member.

    Names with the same comparison key (e.g. `Apple Inc.` / `APPLE INC`) are one node; ties on
    frequency go to the shorter, then alphabetically first name, so the output is deterministic.
    """
    names = sorted(counts)
    keys_of_names = [comparison_key(n, config) for n in names]
    keys = sorted(set(keys_of_names))
    key_index = {k: i for i, k in enumerate(keys)}
    if not keys:
        return Clustering(representative={}, n_keys=0, pairs_scored=0, edges=0)
    left, right, scored = similar_pairs(keys, config)
    graph = coo_matrix((np.ones(len(left), dtype=np.int8), (left, right)), shape=(len(keys), len(keys)))
    _, component = connected_components(graph, directed=False)
    best: dict[int, tuple[int, int, str]] = {}
    for name, key in zip(names, keys_of_names):
        c = int(component[key_index[key]])
        rank = (-counts[name], len(name), name)
        if c not in best or rank < best[c]:
            best[c] = rank
    representative = {name: best[int(component[key_index[key]])][2] for name, key in zip(names, keys_of_names)}
    return Clustering(representative=representative, n_keys=len(keys), pairs_scored=scored, edges=len(left))


# -- similar pairs -------------------------------------------------------------------------------


def max_partner_length(lengths: np.ndarray, threshold: float) -> np.ndarray:
    """For each length l, the longest l2 >= l with l2 - l <= (1 - t/100)(l + l2), i.e.
    l2 <= l (1 + c) / (1 - c) with c = 1 - t/100; a hair of slack so rounding never drops a pair."""
    c = (100.0 - threshold) / 100.0
    return np.floor(lengths * (1 + c) / (1 - c) + 1e-6).astype(np.int64)


def similar_pairs(keys: Sequence[str], config: ClusterConfig) -> tuple[np.ndarray, np.ndarray, int]:
    """Each pair of indices into `keys` scoring >= threshold (once, shorter key first), and how
    many scores were computed."""
    n = len(keys)
    order = np.array(sorted(range(n), key=lambda i: (len(keys[i]), i)), dtype=np.int64)
    sorted_keys = [keys[i] for i in order]
    lengths = np.fromiter((len(k) for k in sorted_keys), dtype=np.int64, count=n)
    if config.method == "length_window":
        window_end = np.searchsorted(lengths, max_partner_length(lengths, config.threshold), side="right")
    else:
        window_end = np.full(n, n, dtype=np.int64)
    left, right, scored = [], [], 0
    for start in range(0, n, config.chunk_rows):
        stop = min(n, start + config.chunk_rows)
        end = int(window_end[stop - 1])  # the longest row of the chunk reaches furthest
        scores = process.cdist(
            sorted_keys[start:stop], sorted_keys[start:end], scorer=fuzz.ratio, score_cutoff=config.threshold, dtype=np.uint8, workers=config.workers
        )
        scored += scores.size
        rows, cols = np.nonzero(scores)
        keep = (cols > rows) & (lengths[rows + start] >= config.min_fuzzy_length)  # upper triangle; rows are the shorter
        left.append(order[rows[keep] + start])
        right.append(order[cols[keep] + start])
    if not left:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), 0
    return np.concatenate(left), np.concatenate(right), scored
