"""Stratified seeded sampling and date splits."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from finner.config import config_from_dict
from finner.sample import Draw, SampleConfig, draw, stratum_of
from finner.schemas import NO_COMPANY_CLUSTER, UNLABELED_CLUSTER


def test_case_study_split_years():
    config = SampleConfig()
    assert [config.split_of(y) for y in range(2009, 2022)] == [None] + ["train"] * 7 + ["valid"] * 2 + ["test"] * 2 + [None]


def test_split_years_are_configurable_and_checked():
    config = config_from_dict(SampleConfig, {"train_years": (2012, 2015), "valid_years": (2016, 2016), "test_years": (2017, 2020)})
    assert (config.split_of(2011), config.split_of(2016), config.split_of(2017)) == (None, "valid", "test")
    with pytest.raises(ValueError, match="overlap"):
        SampleConfig(valid_years=(2016, 2018))
    with pytest.raises(ValueError, match="first <= last"):
        SampleConfig(test_years=(2020, 2019))
    with pytest.raises(ValueError, match="two years"):
        SampleConfig(test_years=(2019,))
    with pytest.raises(ValueError, match="fraction"):
        SampleConfig(fraction=0)


def test_a_headline_goes_to_its_rarest_cluster():
    sizes = Counter({"Apple Inc.": 500, "Avention": 3, "Dun & Bradstreet": 3})
    assert stratum_of(["Apple Inc.", "Avention"], sizes) == "Avention"
    assert stratum_of(["Dun & Bradstreet", "Avention"], sizes) == "Avention"  # tie: by name
    assert stratum_of([], sizes) == NO_COMPANY_CLUSTER
    assert stratum_of(None, sizes) == UNLABELED_CLUSTER


def strata(sizes: dict[str, int]) -> dict[str, str]:
    return {f"{stratum}-{i}": stratum for stratum, n in sizes.items() for i in range(n)}


def test_every_stratum_gets_its_fraction():
    chosen = draw(strata({"big": 2000, NO_COMPANY_CLUSTER: 1000, "mid": 60}), SampleConfig(fraction=0.05))
    per = Counter(chosen.values())
    assert per["big"] == 100 and per[NO_COMPANY_CLUSTER] == 50
    assert per["mid"] in (3, 4)  # 0.05 * 60 = 3 exactly
    assert all(i.startswith(s) for i, s in chosen.items())


def test_small_clusters_are_represented_in_expectation_not_rounded_away():
    many_small = strata({f"c{i}": 4 for i in range(2000)})  # 0.05 * 4 = 0.2 headlines each
    chosen = draw(many_small, SampleConfig(fraction=0.05))
    assert 320 <= len(chosen) <= 480  # 400 expected; rounding per cluster would give 0
    assert max(Counter(chosen.values()).values()) == 1


def test_the_draw_is_seeded_and_independent_of_row_order():
    ids = strata({"a": 300, "b": 120, NO_COMPANY_CLUSTER: 500})
    items = list(ids.items())
    random.Random(1).shuffle(items)
    config = SampleConfig(seed=7)
    assert draw(ids, config) == draw(dict(items), config)
    assert draw(ids, config) != draw(ids, SampleConfig(seed=8))


def test_the_streamed_draw_needs_only_upper_bounds_of_the_strata():
    """`Draw` fed one headline at a time, with loose bounds on the strata sizes (as curation knows
    them before its pass), keeps few candidates and picks what the draw over the whole dict picks."""
    ids = strata({"a": 3000, "b": 41, "c": 7, NO_COMPANY_CLUSTER: 900})
    items = list(ids.items())
    random.Random(2).shuffle(items)
    config = SampleConfig(seed=3)
    sampler = Draw(config, Counter({"a": 3500, "b": 41, "c": 60, NO_COMPANY_CLUSTER: 2000}))
    for headline_id, stratum in items:
        sampler.add(headline_id, stratum)
    assert sampler.chosen() == draw(ids, config)
    assert len(sampler.candidates["a"]) <= 2 * 0.05 * 3500 + 2  # not the 3000 headlines it was fed
    with pytest.raises(ValueError, match="more than its bound"):
        too_small = Draw(config, Counter({"a": 10}))
        for headline_id in strata({"a": 11}):
            too_small.add(headline_id, "a")
        too_small.chosen()
