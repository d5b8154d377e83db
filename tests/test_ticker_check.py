"""The ticker check on the real headlines and the real symbol -> name listings."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from finner import schemas
from finner.errors import FinnerError
from finner.score import prediction_rows
from finner.ticker_check import TickerCheckConfig, agrees, check_table, core_name, load_listings, ticker_check


def span(title: str, text: str, score: float = 0.9) -> dict:
    start = title.index(text)
    return {"start": start, "end": start + len(text), "text": text, "label": schemas.COMPANY, "normalized": None, "score": score}


def test_names_match_listings(company_listings_path):
    listings = load_listings(str(company_listings_path))
    assert listings["AAPL"].startswith("Apple")
    assert core_name("Agilent Technologies Inc") == "agilent technologies"
    assert agrees(["Agilent"], "A", listings["A"], 90)
    assert agrees(["Apple Inc."], "AAPL", listings["AAPL"], 90)
    assert agrees(["$NVDA"], "NVDA", listings["NVDA"], 90)  # the ticker itself
    assert not agrees(["Tesla"], "AAPL", listings["AAPL"], 90)
    assert not agrees([], "AAPL", listings["AAPL"], 90)


def test_check_over_a_scored_feed(store, real_headlines_path, company_listings_path):
    feed = pq.read_table(real_headlines_path).to_pylist()
    picked = [r for r in feed if r["symbol"] == "NVDA" and "Nvidia" in r["title"]][:3]
    picked += [r for r in feed if r["symbol"] == "TSLA" and "Tesla" in r["title"]][:2]
    picked += [r for r in feed if r["symbol"] == "AAPL" and "Apple" in r["title"]][:2]
    headlines = pa.table(
        {
            "id": [f"h{i}" for i in range(len(picked))] + ["unlisted"],
            "title": [r["title"] for r in picked] + ["Acme Widgets Rally"],
            "date": pa.array([0] * (len(picked) + 1), pa.int64()).cast(schemas.TIMESTAMP),
            "symbol": [r["symbol"] for r in picked] + ["ZZZZZ9"],
            "publisher": [None] * (len(picked) + 1),
        }
    )
    store.write("headlines", headlines)
    # The model finds Nvidia and Tesla, names the wrong company on one Apple row, misses the other.
    spans = [[span(r["title"], "Nvidia")] for r in picked[:3]] + [[span(r["title"], "Tesla")] for r in picked[3:5]]
    spans += [[span(picked[5]["title"], picked[5]["title"].split()[-1], 0.97)], [], []]
    store.write("predictions", prediction_rows(headlines["id"].to_pylist(), spans, "v1"))
    store.append("predictions", prediction_rows(["h0"], [[]], "v0"))  # another model version: ignored

    result = ticker_check(store, "v1", TickerCheckConfig(listings=str(company_listings_path), min_symbol_rows=1, worst=3))
    assert (result.rows, result.checked, result.agreeing, result.no_prediction) == (8, 7, 5, 1)
    assert result.rate == pytest.approx(5 / 7)
    assert result.worst_symbols[0]["symbol"] == "AAPL" and result.worst_symbols[0]["rate"] == 0.0
    assert [r["id"] for r in result.worst_rows] == ["h5"]
    assert store.get_json("ticker_check")["agreeing"] == 5
    assert "5/7 rows" in result.text()


def test_user_listings_are_checked(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("ticker,company\nAAPL,Apple\n")
    with pytest.raises(FinnerError, match="needs columns symbol,name"):
        load_listings(str(bad))
    with pytest.raises(FinnerError, match="not found"):
        load_listings(str(tmp_path / "missing.csv"))
    mine = tmp_path / "mine.csv"
    mine.write_text("symbol,name\nabc,Alpha Beta Corp\n,Nameless\n")
    with pytest.raises(FinnerError, match="line 3"):
        load_listings(str(mine))


def test_no_listings_file_means_the_embedded_feed_companies():
    listings = load_listings("")
    assert listings["AAPL"] == "Apple Inc." and listings["BRK.B"] == "Berkshire Hathaway Inc."


def test_a_repeated_disagreement_is_listed_once_with_its_count():
    title = "'Mickey Mouse' Shines Again: Is It Time To Buy?"
    mickey = {"start": 1, "end": 13, "text": "Mickey Mouse", "label": "company", "normalized": None, "score": 0.8}
    scored = pa.table(
        {
            "id": ["d3", "d1", "d2", "o1"],
            "title": [title, title, title, "Disney Rallies"],
            "symbol": ["DIS", "DIS", "DIS", "DIS"],
            "companies": [["Mickey Mouse"]] * 3 + [["Disney"]],
            "spans": [[mickey], [{**mickey, "score": 0.9}], [mickey], [{**mickey, "start": 0, "end": 6, "text": "Disney"}]],
        }
    )
    result = check_table(scored, {"DIS": "The Walt Disney Company"}, TickerCheckConfig(min_symbol_rows=1))
    assert (result.checked, result.agreeing) == (4, 1)
    assert result.worst_rows == [{"score": 0.9, "id": "d1", "symbol": "DIS", "companies": ["Mickey Mouse"], "title": title, "rows": 3}]
    assert [line for line in result.text().splitlines() if "Mickey" in line] == [f"    0.900    DIS ['Mickey Mouse'] | {title}  (x3)"]
