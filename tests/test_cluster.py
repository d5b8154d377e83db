"""Company-name clustering: known cases, exact agreement with all-pairs on real names, bounds."""

from __future__ import annotations

import csv
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz import fuzz, utils

from finner.cluster import ClusterConfig, cluster_names, comparison_key, max_partner_length, similar_pairs
from finner.metrics import company_key


def test_spellings_of_one_company_form_one_cluster_named_by_the_most_frequent():
    counts = Counter({"Apple Inc.": 40, "APPLE INC": 3, "Apple": 12, "Appple Inc": 1, "Microsoft Corporation": 9, "Microsoft": 30})
    result = cluster_names(counts)
    assert {n: result.representative[n] for n in ("Apple Inc.", "APPLE INC", "Apple", "Appple Inc")} == dict.fromkeys(
        ("Apple Inc.", "APPLE INC", "Apple", "Appple Inc"), "Apple Inc."
    )
    assert result.representative["Microsoft Corporation"] == "Microsoft"
    assert result.n_clusters == 2


def test_typos_link_but_different_companies_do_not():
    counts = Counter(
        {
            "Berkshire Hathaway": 5,
            "Berkshire Hathway Inc.": 1,
            "Sony Corporation": 2,
            "FedEx Corporation": 2,
            "Acadia Pharmaceuticals Inc.": 2,
            "Arena Pharmaceuticals Inc.": 2,
            "Micron Technology": 2,
            "Microchip Technology": 2,
            "Visa Inc.": 2,
            "Vista": 1,
            "Snap Inc.": 2,
            "SAP SE": 2,
        }
    )
    rep = cluster_names(counts).representative
    assert rep["Berkshire Hathway Inc."] == "Berkshire Hathaway"
    for a, b in [("Sony Corporation", "FedEx Corporation"), ("Acadia Pharmaceuticals Inc.", "Arena Pharmaceuticals Inc."),
                 ("Micron Technology", "Microchip Technology"), ("Visa Inc.", "Vista"), ("Snap Inc.", "SAP SE")]:
        assert rep[a] != rep[b], (a, b)
    # the case study's raw-name processing merges what a person would keep apart
    raw = cluster_names(counts, ClusterConfig(processor="default", min_fuzzy_length=0)).representative
    assert raw["Acadia Pharmaceuticals Inc."] == raw["Arena Pharmaceuticals Inc."]


def test_company_key():
    assert company_key("ACADIA Pharmaceuticals, Inc.") == "acadia"
    assert company_key("The Goldman Sachs Group Inc.") == "goldman sachs"
    assert company_key("Dun & Bradstreet Holdings") == "dun bradstreet"
    assert company_key("Technology Inc") == "technology inc"  # nothing distinctive: keep every word


def test_ties_are_broken_deterministically_and_input_order_does_not_matter():
    names = ["Tesla Motors", "Tesla Motor", "Tesla Motors Inc", "Ford Motor Co", "Ford Motor Company"]
    counts = dict.fromkeys(names, 1)
    shuffled = dict(random.Random(3).sample(list(counts.items()), len(counts)))
    a, b = cluster_names(counts), cluster_names(shuffled)
    assert a.representative == b.representative
    assert a.representative["Tesla Motors Inc"] == "Tesla Motor"  # equal counts: the shortest, then alphabetical
    assert a.representative["Ford Motor Company"] == "Ford Motor Co"


def real_names_with_variants(path, size: int, seed: int = 0) -> Counter:
    """Real listing names plus typo/suffix/case variants, as a feed would spell them."""
    with open(path, newline="", encoding="utf-8") as f:
        names = [row["name"] for row in csv.DictReader(f)]
    rng = random.Random(seed)
    out = Counter()
    for name in rng.sample(names, size // 2):
        out[name] += rng.randint(1, 20)
        i = rng.randrange(len(name))
        variant = rng.choice([name[:i] + name[i + 1 :], name[:i] + "x" + name[i:], name.upper(), name + " Inc", name.split(" ")[0]])
        out[variant] += 1
    return out


@pytest.mark.parametrize(
    "config",
    [
        ClusterConfig(),
        ClusterConfig(processor="default", min_fuzzy_length=0),
        ClusterConfig(scorer="token_sort_ratio", threshold=90),
        ClusterConfig(processor="none", threshold=70, chunk_rows=97),
    ],
    ids=["default", "case-study-processing", "token-sort-90", "raw-70-small-chunks"],
)
def test_length_window_gives_exactly_the_all_pairs_clusters(company_listings_path, config):
    counts = real_names_with_variants(company_listings_path, 3000)
    windowed = cluster_names(counts, config)
    exact = cluster_names(counts, ClusterConfig(**{**config.__dict__, "method": "all_pairs"}))
    assert windowed.representative == exact.representative
    assert windowed.edges == exact.edges > 0
    assert windowed.pairs_scored < exact.pairs_scored  # and it did less work
    assert windowed.n_clusters < len(counts)  # variants did merge


def test_similar_pairs_are_the_pairs_scoring_over_the_threshold(company_listings_path):
    counts = real_names_with_variants(company_listings_path, 400, seed=5)
    config = ClusterConfig(processor="default", min_fuzzy_length=0, chunk_rows=13)
    keys = sorted({comparison_key(n, config) for n in counts})
    left, right, _ = similar_pairs(keys, config)
    found = {tuple(sorted((keys[a], keys[b]))) for a, b in zip(left.tolist(), right.tolist())}
    brute = {(a, b) for i, a in enumerate(keys) for b in keys[i + 1 :] if fuzz.ratio(a, b) >= 85}
    assert found == {tuple(sorted(p)) for p in brute} and brute


def test_token_sort_key_reproduces_rapidfuzz_token_sort_ratio():
    config = ClusterConfig(scorer="token_sort_ratio", processor="default")
    pairs = [("Bradstreet Dun & Co", "Dun & Bradstreet Co"), ("Motors General", "General Motors Corp"), ("A B C", "C A B")]
    for a, b in pairs:
        expected = fuzz.token_sort_ratio(a, b, processor=utils.default_process)
        assert fuzz.ratio(comparison_key(a, config), comparison_key(b, config)) == pytest.approx(expected)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(a=st.text(alphabet="abcde ", max_size=30), b=st.text(alphabet="abcde ", max_size=30), threshold=st.floats(50, 100))
def test_the_length_bound_never_excludes_a_similar_pair(a, b, threshold):
    short, long_ = sorted((a, b), key=len)
    if fuzz.ratio(short, long_) >= threshold and short:
        assert len(long_) <= max_partner_length(len(short), threshold)


def test_empty_input():
    result = cluster_names({})
    assert result.representative == {} and result.n_clusters == 0


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="threshold"):
        ClusterConfig(threshold=0)
    with pytest.raises(ValueError, match="--chunk-rows"):
        ClusterConfig(chunk_rows=0)
