"""Scaled feeds (`finner.testing.feeds`): rewritten from the real headlines, seeded, streamed, and
as messy as the real feed (duplicates, broken rows) in the shares they declare."""

from __future__ import annotations

import collections
import math

import pyarrow.parquet as pq
import pytest

from finner.source import SourceConfig, ingest, parse_date
from finner.testing.feeds import COLUMNS, PREFIXES, SUFFIXES, FeedShape, feed_rows, write_scaled_feed
from finner.listing_labeller import Gazetteer


def broken(row: dict) -> bool:
    title = row["Article_title"]
    return not title or len(title) > SourceConfig().max_title_chars or parse_date(row["Date"]) is None


@pytest.fixture(scope="module")
def big(real_headlines_path, company_listings_path) -> list[dict]:
    return list(feed_rows(real_headlines_path, company_listings_path, 12_000, seed=3))


def test_same_seed_same_feed_other_seed_other_feed(real_headlines_path, company_listings_path, tmp_path):
    shape = FeedShape(row_group_rows=700)
    first = write_scaled_feed(real_headlines_path, company_listings_path, 2_000, tmp_path / "a.parquet", seed=7, shape=shape)
    again = write_scaled_feed(real_headlines_path, company_listings_path, 2_000, tmp_path / "b.parquet", seed=7, shape=shape)
    other = write_scaled_feed(real_headlines_path, company_listings_path, 2_000, tmp_path / "c.parquet", seed=8, shape=shape)
    table = pq.read_table(first)
    assert table.column_names == list(COLUMNS) and table.num_rows == 2_000
    assert pq.read_metadata(first).num_row_groups == math.ceil(2_000 / 700), "streamed one row group at a time"
    assert table.equals(pq.read_table(again))
    assert not table.equals(pq.read_table(other))


def test_companies_names_and_clusters_grow_with_the_feed(big, company_listings_path):
    gazetteer = Gazetteer.from_listings(company_listings_path)
    small = big[:1_200]

    def companies(rows: list[dict]) -> tuple[set[str], set[str]]:
        written, normalized = set(), set()
        for row in rows:
            if row["Article_title"]:
                result, names = gazetteer.label(row["Article_title"], row["Stock_symbol"])
                written.update(result)
                normalized.update(names)
        return written, normalized

    symbols_small, symbols_big = ({r["Stock_symbol"] for r in rows} for rows in (small, big))
    (_, names_small), (written_big, names_big) = companies(small), companies(big)
    assert len(symbols_small) > 150, "a real feed's many tickers, not the 41 of the real slice"
    assert 2 < len(symbols_big) / len(symbols_small) < 10, "more companies with a longer feed, but fewer than rows"
    assert len(names_big) > 2 * len(names_small)
    # clusters: some companies are written several ways ("Alcoa", "Alcoa Corporation")
    assert len(written_big) > 1.1 * len(names_big)
    years = collections.Counter(int(r["Date"][:4]) for r in big if r["Date"][:4].isdigit())
    assert min(years) == 2009 and max(years) == 2020 and years[2020] > years[2010], "the real feed's years"


def test_duplicate_and_broken_shares(big):
    shape = FeedShape()
    keys = collections.Counter((r["Article_title"], r["Date"], r["Stock_symbol"]) for r in big)
    exact = sum(n - 1 for n in keys.values())
    assert 0.6 * shape.exact_share < exact / len(big) < 1.5 * shape.exact_share
    titles = {r["Article_title"] for r in big}
    edited = [
        r for r in big
        if r["Article_title"] and any(p and r["Article_title"].startswith(p) and r["Article_title"][len(p):] in titles for p in PREFIXES)
        or r["Article_title"] and any(s and r["Article_title"].endswith(s) and r["Article_title"][: -len(s)] in titles for s in SUFFIXES)
    ]
    assert len(edited) > 0.2 * shape.near_share * len(big), "re-filed titles with a small edit"
    assert 0 < sum(map(broken, big)) < 3 * shape.broken_share * len(big)


def test_ingest_rejects_exactly_the_broken_rows(real_headlines_path, company_listings_path, tmp_path, store):
    shape = FeedShape(broken_share=0.01)
    path = write_scaled_feed(real_headlines_path, company_listings_path, 3_000, tmp_path / "feed.parquet", seed=1, shape=shape)
    rows = pq.read_table(path).to_pylist()
    summary = ingest(SourceConfig(path=str(path)), store, progress=False)
    assert summary.rejected == sum(map(broken, rows)) > 10
    assert summary.read == 3_000 and summary.duplicates > 0
    assert store.read("headlines").num_rows == summary.written
