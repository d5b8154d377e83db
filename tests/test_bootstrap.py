"""The paired bootstrap behind every interval: reproducible from its seed, paired across systems
scored on the same headlines, averaged draw by draw over training seeds, and stored in `metrics`."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from finner import schemas
from finner.bootstrap import BootstrapConfig, Resamples, difference, f1_interval, f1_of, headline_counts
from finner.errors import FinnerError
from finner.evaluate import FINE_TUNED, ZERO_SHOT, comparisons, evaluate, labeller_model, markdown_comparisons, markdown_table, metrics_table, over_seeds
from finner.metrics import EXACT, MATCHES, exact_prf


def span(start: int, end: int) -> dict:
    return {"start": start, "end": end, "text": "x" * (end - start), "label": schemas.COMPANY, "normalized": None, "score": None}


def headlines(n: int, right: int) -> tuple[list, list]:
    """n headlines of one gold span each; the first `right` predicted exactly, the rest missed."""
    gold = [[span(0, 5)] for _ in range(n)]
    return gold, [[span(0, 5)] if i < right else [span(1, 5)] for i in range(n)]


def test_counts_sum_to_the_micro_scores_and_f1_matches():
    gold, predicted = headlines(50, 40)
    predicted[3] = [span(0, 5), span(6, 9)]  # a false positive beside a hit
    for match, prf in MATCHES.items():
        counts = headline_counts(gold, predicted, match)
        assert counts.shape == (50, 3)
        total = prf(gold, predicted)
        assert tuple(counts.sum(axis=0)) == (total.tp, total.fp, total.fn)
        assert f1_of(counts.sum(axis=0)) == pytest.approx(total.f1)


def test_an_interval_is_seeded_and_holds_its_f1():
    gold, predicted = headlines(300, 240)
    counts = headline_counts(gold, predicted, EXACT)
    f1 = exact_prf(gold, predicted).f1
    first = f1_interval(counts)
    assert first == f1_interval(counts)  # the same seed, the same draws
    assert first.low < f1 < first.high and first.high - first.low < 0.1
    other = f1_interval(counts, BootstrapConfig(bootstrap_seed=1))
    assert other != first and abs(other.low - first.low) < 0.02


def test_a_difference_is_paired_over_the_same_headlines():
    gold, a = headlines(200, 150)
    _, b = headlines(200, 150)
    b[0], b[199] = b[199], b[0]  # b gets one headline a misses and misses one a gets: same F1, 2 headlines differ
    ca, cb = headline_counts(gold, a, EXACT), headline_counts(gold, b, EXACT)
    paired = difference([ca], [cb])
    assert paired.value == 0
    assert -0.02 < paired.interval.low <= 0 <= paired.interval.high < 0.02  # unpaired, the interval would span ~±0.08
    same = difference([ca], [ca])
    assert (same.value, same.interval.low, same.interval.high) == (0, 0, 0)
    with pytest.raises(ValueError, match="counts of 10 headlines resampled as 200"):
        Resamples(200).f1(ca[:10])


def test_seeds_average_draw_by_draw_and_compare_to_the_labeller():
    gold, labeller = headlines(120, 90)
    split = pa.table({"split": ["test"] * 120, "spans": pa.array(gold, schemas.SPANS)})
    by_seed = {}
    for seed, right in ((0, 100), (1, 104), (2, 96)):
        (by_seed[seed],) = evaluate("gliner", FINE_TUNED, split, headlines(120, right)[1])
    (base,) = evaluate("llm (labeller)", ZERO_SHOT, split, labeller)
    mean = over_seeds(by_seed)
    assert mean.f1(EXACT) == pytest.approx(np.mean([r.scores[EXACT].f1 for r in by_seed.values()]))
    assert mean.spreads[EXACT].seeds == (0, 1, 2) and mean.spreads[EXACT].sd > 0
    assert mean.intervals[EXACT].low < mean.f1(EXACT) < mean.intervals[EXACT].high
    assert mean.scores[EXACT].tp == 300  # counts pooled over the seeds
    assert labeller_model([mean, base]) == "llm (labeller)"
    (row,) = [c for c in comparisons([mean, base], "llm (labeller)") if c.match == EXACT]
    assert row.difference.value == pytest.approx(mean.f1(EXACT) - base.scores[EXACT].f1)
    assert 0 < row.difference.interval.low < row.difference.value < row.difference.interval.high
    assert "| gliner | fine-tuned | test | +" in markdown_comparisons([row])
    assert "± " in markdown_table([mean, base]) and "seed 1: " in markdown_table([mean, base])

    table = metrics_table([mean, base], created_at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
    assert table.schema == schemas.METRICS
    stored = {r["model"]: r for r in table.to_pylist() if r["match"] == EXACT}
    assert stored["gliner"]["seeds"] == [0, 1, 2] and stored["gliner"]["f1_sd"] == pytest.approx(mean.spreads[EXACT].sd)
    assert stored["gliner"]["f1_ci_low"] == mean.intervals[EXACT].low and stored["gliner"]["f1"] == mean.f1(EXACT)
    assert stored["llm (labeller)"]["seeds"] is None and stored["llm (labeller)"]["f1_ci_high"] == base.intervals[EXACT].high


def test_bootstrap_flags_declare_their_bounds():
    with pytest.raises(FinnerError, match="--resamples: must be at least 100"):
        BootstrapConfig(resamples=10)
