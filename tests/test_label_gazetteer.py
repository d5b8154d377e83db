"""The gazetteer labeler behind the test endpoint, on the case-study examples and real headlines."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from finner.embedded import embedded_feed
from finner.listing_labeller import Gazetteer, clean_name


@pytest.fixture(scope="module")
def listings(company_listings_path) -> Gazetteer:
    return Gazetteer.from_listings(company_listings_path)


@pytest.mark.parametrize(
    ("raw", "surface", "normalized"),
    [
        ("Alcoa Corporation Common Stock", "Alcoa", "Alcoa Corporation"),
        ("Ares Acquisition Corporation Class A Ordinary Shares", "Ares Acquisition", "Ares Acquisition Corporation"),
        ("Coca-Cola Company (The)", "Coca-Cola", "The Coca-Cola Company"),
        ("Atlas Air Worldwide Holdings NEW Common Stock", "Atlas Air Worldwide", "Atlas Air Worldwide Holdings"),
        ("JPMorgan Chase & Co.", "JPMorgan Chase", "JPMorgan Chase & Co."),
    ],
)
def test_clean_name_drops_share_class_and_legal_suffixes(raw, surface, normalized):
    assert clean_name(raw) == (surface, normalized)


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Dun & Bradstreet Acquires Avention For $150M", ["Dun & Bradstreet"]),
        ("Fast Money Picks For April 27", []),
        ("Black Diamond Stock Falling After Tweet", ["Black Diamond"]),
        ("Stocks To Watch For August 16 (URBN, LOW, SYY, A)", ["URBN", "LOW", "SYY", "A"]),
        ("Agilent Technologies (A) Reports 23% Profit Rise", ["Agilent Technologies", "A"]),
        ("Wedbush Upgrades Advance Auto Parts Inc to Outperform, Raises PT to $120.00", ["Advance Auto Parts Inc"]),
        ("KeyBanc Upgrades Aaron's To Buy", ["Aaron's"]),
        ("Option Alert: NVDA Jun16 45.5 Puts Sweep", ["NVDA"]),
        ("Alcoa Shares Fall As Dow Jones Drops 200 Points; S&P 500, Nasdaq Follow", ["Alcoa"]),
        ("Apple Price Target Raised At Wedbush", ["Apple"]),
        ("A Look At The Relationship Between Price And Analyst Sentiment In 5 Stocks", []),
        ("US, EU Reach Trade Deal; CEO Says Outlook Is Strong", []),
    ],
)
def test_listing_gazetteer_on_headlines(listings, title, expected):
    result, normalized = listings.label(title)
    assert result == expected
    assert len(normalized) == len(result) and all(normalized)
    assert all(company in title for company in result)


@pytest.mark.parametrize(
    ("title", "symbol", "expected"),
    [
        # the legal form the headline attaches belongs to the name; a leading "The" of the listed name too
        ("Alcoa Corp. Posts Loss", None, ["Alcoa Corp."]),
        ("The Coca-Cola Company Raises Dividend", None, ["The Coca-Cola Company"]),
        # a broker acting on another company's stock is not a subject; the same firm about itself is
        ("Morgan Stanley Downgrades Alcoa To Underweight", None, ["Alcoa"]),
        ("Morgan Stanley Reports Q2 Profit", None, ["Morgan Stanley"]),
        # every ticker of a parenthesised list, listed or not; funds are not companies
        ("Stocks Moving Premarket (XQZW, AAPL)", None, ["XQZW", "AAPL"]),
        ("Emerging Markets Funds Slide (EEM, VWO)", None, []),
        # unlisted companies read off the headline's shape
        ("Quintrex Biologics, Inc. Prices IPO", None, ["Quintrex Biologics, Inc."]),
        ("Zorbatek Announces Layoffs", None, ["Zorbatek"]),
        ("Fed Announces Rate Decision", None, []),
        # the row's own company: its first word, and its name in any spacing
        ("Amazon Opens New Warehouse", "AMZN", ["Amazon"]),
        ("Puts Purchased On Amerisource Bergen", "ABC", ["Amerisource Bergen"]),
    ],
)
def test_headline_shapes_the_listing_cannot_know(listings, title, symbol, expected):
    assert listings.label(title, symbol)[0] == expected


def test_normalized_names_come_from_the_listing(listings):
    assert listings.label("Alcoa Shares Fall")[1] == ["Alcoa Corporation"]
    assert listings.label("We Explain AAPL, TSLA, and MSFT Earnings")[0] == ["AAPL", "TSLA", "MSFT"]


def test_embedded_gazetteer_recovers_most_true_spans():
    gazetteer = Gazetteer.embedded()
    rows = [r for r in embedded_feed() if r["Article_title"].strip()]
    exact = sum(sorted(gazetteer.label(r["Article_title"])[0]) == sorted(s.text for s in r["true_spans"]) for r in rows)
    # Misses are bare 1-2 letter tickers ("F Stock Falling"), which the rules refuse on purpose.
    assert exact / len(rows) > 0.9


def test_real_headlines_consistent(listings, real_headlines_path):
    """Its speed is benchmarks/bench_label.py's `gazetteer_headlines_per_s`."""
    titles = pq.read_table(real_headlines_path, columns=["title"]).column("title").to_pylist()
    labels = [listings.label(t) for t in titles]
    for title, (result, normalized) in zip(titles, labels):
        assert len(result) == len(normalized) == len(set(result))
        assert all(company in title for company in result)
    labelled = sum(bool(result) for result, _ in labels)
    assert 0.4 < labelled / len(titles) < 0.95  # real feeds mix company and market headlines
    assert listings.label(titles[0]) == labels[0]  # deterministic
