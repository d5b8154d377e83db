"""The shipped hand-labelled gold set: shape, spans that match their titles, and no twins across its parts."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from finner import schemas
from finner.errors import FinnerError
from finner.gold import DEV, DEV2, REAL_GOLD, TEST, draw_sample, load_gold, read_gold_file
from finner.ids import headline_id, title_key
from finner.store import Store


def test_real_gold_shape_and_spans():
    rows = read_gold_file(REAL_GOLD)
    assert len(rows) >= 500
    assert {r["split"] for r in rows} == {DEV, DEV2, TEST}
    first_draw = [r for r in rows if r["split"] != DEV2]
    assert abs(sum(r["split"] == DEV for r in first_draw) / len(first_draw) - 0.4) < 0.02
    assert {r["date"][:4] for r in rows if r["split"] == DEV2} == {"2017", "2018", "2019", "2020"}  # years (a) never trains on
    for row in rows:
        assert row["id"] == headline_id(row["title"], row["date"], row["symbol"])
        assert row["status"] == schemas.GOLD_SUBMITTED
        spans = row["spans"]
        assert [s["start"] for s in spans] == sorted(s["start"] for s in spans)
        for span in spans:
            assert 0 <= span["start"] < span["end"] <= len(row["title"])
            assert row["title"][span["start"] : span["end"]] == span["text"]
            assert span["role"] in schemas.ROLES
        ends = [(s["start"], s["end"]) for s in spans]
        assert all(a[1] <= b[0] for a, b in zip(ends, ends[1:])), row["title"]  # no overlapping spans
    assert len({r["id"] for r in rows}) == len(rows)


def test_parts_share_no_title_key():
    rows = read_gold_file(REAL_GOLD)
    dev, dev2, test = ({title_key(r["title"]) for r in rows if r["split"] == part} for part in (DEV, DEV2, TEST))
    assert dev and dev2 and test and not dev & test and not dev2 & (dev | test)


def test_real_gold_rows_are_real_feed_rows(real_headlines_path):
    """Ids join a store that ingested the shared feed: every gold row is one of its headlines."""
    from finner.source import SourceConfig, normalize_rows

    headlines, _ = normalize_rows(pq.read_table(real_headlines_path).to_pylist(), "feed", 0, SourceConfig())
    feed_ids = {h["id"] for h in headlines}
    assert {r["id"] for r in read_gold_file(REAL_GOLD)} <= feed_ids


def test_draw_is_seeded_and_stratified(real_headlines_path):
    a = draw_sample(str(real_headlines_path), 110, seed=3)
    assert a == draw_sample(str(real_headlines_path), 110, seed=3)
    assert a != draw_sample(str(real_headlines_path), 110, seed=4)
    years = [r["date"][:4] for r in a]
    assert {y: years.count(y) for y in set(years)} == {str(y): 10 for y in range(2010, 2021)}
    assert len({title_key(r["title"]) for r in a}) == len(a)


def test_a_later_draw_leaves_out_an_earlier_one(real_headlines_path):
    """`exclude` keeps a second part apart from the first: the way `dev2` was drawn beside dev and test."""
    path = str(real_headlines_path)
    first = draw_sample(path, 40, seed=3, years=range(2017, 2021))
    later = draw_sample(path, 40, seed=3, years=range(2017, 2021), dev_fraction=1.0, dev_split=DEV2, exclude=frozenset(title_key(r["title"]) for r in first))
    assert {r["split"] for r in later} == {DEV2} and len(later) == 40
    assert not {title_key(r["title"]) for r in first} & {title_key(r["title"]) for r in later}
    unexcluded = draw_sample(path, 40, seed=3, years=range(2017, 2021), dev_fraction=1.0, dev_split=DEV2)
    assert {title_key(r["title"]) for r in first} & {title_key(r["title"]) for r in unexcluded}  # without it the draws meet


def test_subjects_drop_brokers_and_a_user_file_is_checked(tmp_path):
    gold = load_gold(Store(str(tmp_path / "store")), "real")
    assert gold.has_brokers() and not gold.subjects().has_brokers()
    assert gold.subjects().table.num_rows == gold.table.num_rows
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "split": "test", "title": "Apple Rises", "spans": [{"start": 0, "end": 4, "text": "Apple"}]}) + "\n")
    with pytest.raises(FinnerError, match=r"bad.jsonl:1: row 'x': span 0..4 reads 'Appl', not 'Apple'"):
        load_gold(Store(str(tmp_path / "store")), str(bad))
