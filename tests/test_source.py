import collections
import datetime as dt
import json

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from finner.embedded import INDICES, embedded_feed
from finner.ids import SeenIds, stable_hash
from finner.source import SourceConfig, SourceError, ingest, normalize_rows, parse_date
from tests.conftest import run_module


def test_parse_date_handles_feed_formats():
    assert parse_date("2020-06-10 17:02:00-04:00") == dt.datetime(2020, 6, 10, 21, 2, tzinfo=dt.timezone.utc)
    assert parse_date("2011-07-20 00:00:00") == dt.datetime(2011, 7, 20, tzinfo=dt.timezone.utc)
    assert parse_date("2019-01-02T03:04:05Z") == dt.datetime(2019, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    assert parse_date("20/13/2011") is None
    assert parse_date("") is None and parse_date(None) is None


def test_bad_rows_are_quarantined_with_reasons():
    rows = [
        {"title": "Apple Shares Rise", "date": "2015-01-01 10:00:00-04:00", "symbol": "aapl"},
        {"title": "  ", "date": "2015-01-01 10:00:00-04:00", "symbol": "AAPL"},
        {"title": None, "date": "2015-01-01 10:00:00-04:00", "symbol": "AAPL"},
        {"title": "Tesla Up", "date": "yesterday", "symbol": "TSLA"},
        {"title": "Hi", "date": "2015-01-01", "symbol": "X"},
        {"title": "x" * 1000, "date": "2015-01-01", "symbol": "X"},
    ]
    good, bad = normalize_rows(rows, "feed.csv", 10, SourceConfig())
    assert [g["title"] for g in good] == ["Apple Shares Rise"]
    assert good[0]["symbol"] == "AAPL"
    assert [(b["row"], b["reason"]) for b in bad] == [
        (11, "empty title"),
        (12, "empty title"),
        (13, "unparseable date 'yesterday'"),
        (14, "title shorter than 3 characters"),
        (15, "title longer than 400 characters (1000)"),
    ]
    assert all(b["source"] == "feed.csv" and json.loads(b["raw"]) for b in bad)


def test_ids_are_content_hashes_stable_across_runs_and_processes(tmp_path, store):
    rows = [{"title": "Apple  Shares\nRise", "date": "2015-01-01 10:00:00-04:00", "symbol": "AAPL"}]
    (first,), _ = normalize_rows(rows, "a", 0, SourceConfig())
    (again,), _ = normalize_rows(rows, "b", 99, SourceConfig())  # position and file do not matter
    assert first["id"] == again["id"] and first["title"] == "Apple Shares Rise"
    (other,), _ = normalize_rows([{**rows[0], "symbol": "MSFT"}], "a", 0, SourceConfig())
    assert other["id"] != first["id"]

    out = run_module("jobs.ingest", "--store", str(tmp_path / "other"), "--quiet")
    assert out.returncode == 0, out.stderr
    ingest(SourceConfig(), store, progress=False)
    from finner.store import Store

    assert Store(str(tmp_path / "other")).ids("headlines") == store.ids("headlines")


def test_real_feed_ingests_whole(real_headlines_path, store):
    summary = ingest(SourceConfig(path=str(real_headlines_path), batch_rows=4000), store, progress=False)
    assert (summary.read, summary.written, summary.rejected, summary.duplicates) == (16553, 16553, 0, 0)
    table = store.read("headlines")
    assert table.num_rows == 16553 and store.version("headlines") == 0  # five batches, one commit
    assert not any("\n" in t for t in table["title"].to_pylist()), "newlines inside titles are collapsed"
    years = collections.Counter(d.year for d in table["date"].to_pylist())
    assert min(years) == 2009 and max(years) == 2020
    assert len(set(table["symbol"].to_pylist())) == 41


def test_csv_and_jsonl_inputs_with_fnspid_columns(tmp_path, store):
    rows = [
        {"Article_title": "Dun & Bradstreet Acquires Avention For $150M", "Date": "2017-01-05 09:00:00-05:00", "Stock_symbol": "DNB", "Publisher": "Benzinga"},
        {"Article_title": "Fast Money Picks For April 27", "Date": "2016-04-27 17:00:00-04:00", "Stock_symbol": "A", "Publisher": None},
        {"Article_title": "", "Date": "2016-04-27", "Stock_symbol": "A", "Publisher": None},
    ]
    pacsv.write_csv(pa.Table.from_pylist(rows), tmp_path / "feed.csv")
    (tmp_path / "feed.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    for name in ("feed.csv", "feed.jsonl"):
        summary = ingest(SourceConfig(path=str(tmp_path / name)), store, progress=False)
        assert (summary.written, summary.rejected) == (2, 1)
        assert sorted(store.read("headlines")["title"].to_pylist())[0].startswith("Dun & Bradstreet")
        assert store.read("rejects")["reason"].to_pylist() == ["empty title"]


def test_missing_title_column_is_a_clear_error(tmp_path, store):
    pq.write_table(pa.table({"headline_text": ["a"], "Date": ["2015-01-01"]}), tmp_path / "x.parquet")
    with pytest.raises(SourceError, match=r"no \['title'\] column"):
        ingest(SourceConfig(path=str(tmp_path / "x.parquet")), store, progress=False)
    out = run_module("jobs.ingest", "--store", str(tmp_path / "s"), "--path", str(tmp_path / "x.parquet"), "--quiet")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("error: input has no ['title'] column")


def test_a_repeated_headline_is_kept_once_within_and_across_batches(real_headlines_path, tmp_path, store):
    """Every real row twice, the repeats in the same batch, the next one and batches far apart,
    plus one row three times: the table holds each headline once."""
    real = pq.read_table(real_headlines_path).slice(0, 300)
    order = list(range(300)) + [5, 6, 299] + list(range(300)) + [7]  # batches of 64: repeats land everywhere
    pq.write_table(real.take(order), tmp_path / "repeats.parquet")
    summary = ingest(SourceConfig(path=str(tmp_path / "repeats.parquet"), batch_rows=64), store, progress=False)
    assert (summary.read, summary.written, summary.duplicates) == (len(order), 300, len(order) - 300)
    once = store.read("headlines")
    assert sorted(once["title"].to_pylist()) == sorted(" ".join(t.split()) for t in real["title"].to_pylist())
    assert len(set(once["id"].to_pylist())) == 300


def test_seen_ids_tell_new_ids_from_repeats():
    seen = SeenIds()
    a, b, c = (stable_hash(x) for x in "abc")
    assert seen.add([a, b, a]).tolist() == [True, True, False]
    assert seen.add([c, b, "f" * 16, c]).tolist() == [True, False, True, False]
    assert seen.add([]).tolist() == [] and len(seen) == 4
    with pytest.raises(ValueError, match="not a headline id"):
        seen.add(["h0"])


def test_limit_stops_early(real_headlines_path, store):
    summary = ingest(SourceConfig(path=str(real_headlines_path), limit=1234, batch_rows=500), store, progress=False)
    assert summary.read == 1234 and store.read("headlines").num_rows == 1234


def test_embedded_feed_looks_like_the_real_one():
    feed = embedded_feed()
    years = {int(r["Date"][:4]) for r in feed if r["Date"][:4].isdigit()}
    assert years == set(range(2010, 2021))
    counts = collections.Counter(min(len(r["true_spans"]), 2) for r in feed if r["Article_title"].strip())
    assert counts[0] > 50 and counts[1] > 100 and counts[2] > 30
    titles = [r["Article_title"] for r in feed]
    assert any("(" in t and ")" in t for t in titles), "tickers in parentheses"
    with_index = [r for r in feed if any(i in r["Article_title"] for i in INDICES)]
    assert with_index and all(not any(s.text in INDICES for s in r["true_spans"]) for r in with_index)
    for row in feed:
        for span in row["true_spans"]:
            assert row["Article_title"][span.start : span.end] == span.text
    assert embedded_feed() == feed, "deterministic"


def test_ingest_help_exits_zero():
    out = run_module("jobs.ingest", "--help")
    assert out.returncode == 0 and "--path" in out.stdout and "--hub" in out.stdout


def corrupt_row_group(path, group: int) -> None:
    """Overwrite a row group's title column chunk with garbage: its pages can no longer be decoded."""
    chunk = pq.read_metadata(path).row_group(group).column(0)
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    data = bytearray(path.read_bytes())
    data[start : start + chunk.total_compressed_size] = b"\xff" * chunk.total_compressed_size
    path.write_bytes(bytes(data))


def test_corrupt_row_group_is_one_reject_and_every_other_row_is_kept(tmp_path, store):
    """A feed with one corrupt row group and 1% broken rows: a summary line, not a traceback."""
    rows = [
        {"Article_title": "" if i % 100 == 7 else f"Apple Shares Rise {i}", "Date": "2015-01-01 10:00:00-04:00", "Stock_symbol": "AAPL", "Publisher": None}
        for i in range(400)
    ]
    path = tmp_path / "feed.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=100, compression="none")
    corrupt_row_group(path, 2)

    done = run_module("jobs.ingest", "--store", store.root, "--path", str(path), "--quiet")
    assert done.returncode == 0 and "Traceback" not in done.stdout + done.stderr, done.stderr
    assert done.stdout.strip().splitlines()[-1] == (
        "source: read 300, written 297, rejected 4, duplicates dropped 0, 100 rows lost in 1 unreadable row groups (in rejects)"
    )
    titles = set(store.read("headlines")["title"].to_pylist())
    assert titles == {r["Article_title"] for i, r in enumerate(rows) if r["Article_title"] and not 200 <= i < 300}
    rejects = {r["row"]: r for r in store.read("rejects").to_pylist()}
    assert sorted(rejects) == [7, 107, 200, 307]
    assert rejects[200]["source"] == str(path) and rejects[200]["reason"].startswith("row group 2 unreadable (")
    assert json.loads(rejects[200]["raw"]) == {"rows": 100}
    assert rejects[107]["reason"] == "empty title"
