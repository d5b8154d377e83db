"""The ticker check on the real headlines and the real symbol -> name listings, and the aliases it
learns from the labelled feed."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter, defaultdict

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from finner import artifacts, schemas
from finner.errors import FinnerError
from finner.metrics import company_key
from finner.score import prediction_rows
from finner.spans import find_spans
from finner.listing_labeller import Gazetteer
from finner.ticker_check import TickerCheckConfig, agrees, check_table, learn_aliases, load_aliases, load_listings, ticker_check


def span(title: str, text: str, score: float = 0.9) -> dict:
    start = title.index(text)
    return {"start": start, "end": start + len(text), "text": text, "label": schemas.COMPANY, "normalized": None, "score": score}


def test_names_match_listings(company_listings_path):
    listings = load_listings(str(company_listings_path))
    assert listings["AAPL"].startswith("Apple")
    assert company_key(listings["GOOG"]) == "alphabet"  # "Alphabet Inc. (Class C)"
    assert agrees(["Agilent"], "A", [listings["A"]], 90)
    assert agrees(["Apple Inc."], "AAPL", [listings["AAPL"]], 90)
    assert agrees(["$NVDA"], "NVDA", [listings["NVDA"]], 90)  # the ticker itself
    assert not agrees(["Tesla"], "AAPL", [listings["AAPL"]], 90)
    assert not agrees([], "AAPL", [listings["AAPL"]], 90)
    assert agrees(["Google"], "GOOG", [listings["GOOG"], "Google"], 90) and not agrees(["Google"], "GOOG", [listings["GOOG"]], 90)


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


# -- aliases -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def labelled(real_headlines_path, company_listings_path) -> pa.Table:
    """Every real headline with its symbol and company spans, labelled without Ray by the listing
    gazetteer (`find_spans` places the strings), plus the brands an LLM also knows and no listing
    holds: the embedded gazetteer's names (Google for Alphabet)."""
    listing, brands = Gazetteer.from_listings(company_listings_path), Gazetteer.embedded()
    rows = []
    for row in pq.read_table(real_headlines_path, columns=["title", "symbol"]).to_pylist():
        result, normalized = listing.label(row["title"])
        for text, name in zip(*brands.label(row["title"])):
            if text not in result:
                result.append(text)
                normalized.append(name)
        rows.append({**row, "spans": find_spans(row["title"], result, normalized).spans})
    return pa.Table.from_pylist(rows, schema=pa.schema([("title", pa.string()), ("symbol", pa.string()), ("spans", schemas.SPANS)]))


def names_by_symbol(labelled: pa.Table) -> dict[str, Counter]:
    """company_key of a labelled name -> rows naming it per symbol."""
    found: dict[str, Counter] = defaultdict(Counter)
    for symbol, spans in zip(labelled["symbol"].to_pylist(), labelled["spans"].to_pylist()):
        for key in {company_key(s["text"]) for s in spans or ()}:
            found[key][symbol] += 1
    return found


def test_goog_rows_naming_google_agree_through_a_learned_alias(labelled, company_listings_path):
    listings, config = load_listings(str(company_listings_path)), TickerCheckConfig(min_symbol_rows=1)
    aliases = learn_aliases(labelled, listings, config)
    (google,) = [a for a in aliases if a.name == "Google"]
    goog_rows = labelled["symbol"].to_pylist().count("GOOG")
    named = names_by_symbol(labelled)["google"]
    assert (google.symbol, google.rows, google.symbol_rows, google.other_rows) == ("GOOG", named["GOOG"], goog_rows, sum(named.values()) - named["GOOG"])
    assert google.rows > 100 and google.other_rows < google.rows / 5  # the counts that justify it

    # The model names Google on the GOOG rows that do.
    rows = [r for r in labelled.to_pylist() if r["symbol"] == "GOOG" and any(s["text"] == "Google" for s in r["spans"])]
    scored = pa.table(
        {
            "id": [f"g{i}" for i in range(len(rows))],
            "title": [r["title"] for r in rows],
            "symbol": ["GOOG"] * len(rows),
            "companies": [["Google"]] * len(rows),
            "spans": [[{**s, "score": 0.9} for s in r["spans"] if s["text"] == "Google"] for r in rows],
        }
    )
    check = check_table(scored, listings, config, aliases=aliases)
    assert check.checked == len(rows) == google.rows and check.agreeing == check.through_alias == len(rows)
    assert check_table(scored, listings, config).agreeing == 0  # "Alphabet Inc. (Class C)" alone knows no Google
    assert any(line.strip().startswith("GOOG  Google  (on ") for line in check.text().splitlines())


def test_a_name_spread_over_many_symbols_is_no_alias(labelled, company_listings_path):
    """Even when the listings know only the feed's own companies, so that only the counts can refuse it."""
    listings = load_listings(str(company_listings_path))
    feed_companies = {s: listings[s] for s in set(labelled["symbol"].to_pylist()) if s in listings}
    aliases = learn_aliases(labelled, feed_companies, TickerCheckConfig())
    spread = {key for key, rows in names_by_symbol(labelled).items() if len(rows) >= 8 and max(rows.values()) < sum(rows.values()) / 2}
    assert {"goldman sachs", "microsoft", "disney"} <= spread
    assert not spread & {company_key(a.name) for a in aliases}
    assert ("GOOG", "Google") in [(a.symbol, a.name) for a in aliases]


def spans_rows(rows: list[dict]) -> pa.Table:
    """A `spans` table (what curation writes) for (id, title, symbol, result) rows."""
    date = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    out = []
    for row in rows:
        found = find_spans(row["title"], row["result"])
        out.append({"id": row["id"], "title": row["title"], "date": date, "symbol": row["symbol"], "spans": found.spans, "tokens": found.tokens,
                    "token_spans": found.token_spans, "not_found": found.not_found, "clusters": None})
    return pa.Table.from_pylist(out, schema=schemas.SPANS_TABLE)


def test_the_check_stores_and_reports_its_aliases_and_takes_the_users(store, tmp_path):
    feed = [{"id": f"g{i}", "title": f"Google Unveils Gadget No. {i}", "symbol": "GOOG", "result": ["Google"]} for i in range(12)]
    feed += [{"id": f"a{i}", "title": f"Cupertino Giant Reports Quarter {i}", "symbol": "AAPL", "result": []} for i in range(3)]
    headlines = pa.Table.from_pylist([{"id": r["id"], "title": r["title"], "date": dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc), "symbol": r["symbol"], "publisher": None} for r in feed], schema=schemas.HEADLINES)
    store.write("headlines", headlines)
    store.write("spans", spans_rows(feed))
    predicted = [[span(r["title"], "Google")] for r in feed[:12]] + [[span(r["title"], "Cupertino Giant")] for r in feed[12:]]
    store.write("predictions", prediction_rows([r["id"] for r in feed], predicted, "v1"))
    mine = tmp_path / "aliases.csv"
    mine.write_text("symbol,name\naapl,Cupertino Giant\n")

    result = ticker_check(store, "v1", TickerCheckConfig(aliases=str(mine), min_symbol_rows=1))
    assert (result.checked, result.agreeing, result.through_alias) == (15, 15, 15)  # the embedded listing says Alphabet Inc., Apple Inc.
    assert store.get_json(artifacts.ALIASES_KEY) == [
        {"symbol": "GOOG", "name": "Google", "source": "labels", "rows": 12, "symbol_rows": 12, "other_rows": 0},
        {"symbol": "AAPL", "name": "Cupertino Giant", "source": str(mine), "rows": 0, "symbol_rows": 0, "other_rows": 0},
    ]
    assert f"AAPL  Cupertino Giant  ({mine})" in [line.strip() for line in result.text().splitlines()]
    assert load_aliases("") == []
    with pytest.raises(FinnerError, match="--aliases file not found"):
        load_aliases(str(tmp_path / "missing.csv"))


def test_the_check_reads_the_feed_by_id_range_and_keeps_only_the_most_confident_disagreements(store, real_headlines_path, company_listings_path, monkeypatch):
    """The scored feed joined one id range at a time gives the whole feed's check; the bounded list
    of disagreements keeps the most confident ones with their full row counts."""
    from finner import ticker_check as module
    from finner.ids import headline_id

    feed = pq.read_table(real_headlines_path).slice(0, 300).to_pylist()
    rows = list({(r := {**row, "id": headline_id(row["title"], str(row["date"]), row["symbol"])})["id"]: r for row in feed}.values())
    day = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    store.write("headlines", pa.Table.from_pylist([{"id": r["id"], "title": r["title"], "date": day, "symbol": r["symbol"], "publisher": None} for r in rows], schema=schemas.HEADLINES))
    # every headline "names" its last word, with a score that grows along the feed; a repeated key counts its rows
    predicted = [[span(r["title"], r["title"].split()[-1], 0.5 + i / 1000)] for i, r in enumerate(rows)]
    store.write("predictions", prediction_rows([r["id"] for r in rows], predicted, "v1"))
    config = TickerCheckConfig(listings=str(company_listings_path), min_symbol_rows=1, worst=5)

    whole = ticker_check(store, "v1", config).to_json()
    in_ranges = ticker_check(store, "v1", dataclasses.replace(config, check_batch_rows=40)).to_json()
    assert whole == in_ranges and whole["rows"] == len(rows) and whole["checked"] > 0
    monkeypatch.setattr(module, "DISAGREEMENTS_KEPT", 5)  # as few kept as are listed: the same list
    assert ticker_check(store, "v1", dataclasses.replace(config, check_batch_rows=40)).to_json() == whole
