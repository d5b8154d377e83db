"""The embedded sample feed: a few hundred headlines generated offline, shaped like Benzinga's.

The demo runs on a fresh clone with no network and no `../shared`, so it needs a feed of its own.
Headlines are built from templates over a small gazetteer of real listed companies, so every
row knows its true company spans: the demo can evaluate models against real ground truth.
It covers what makes the task hard: zero, one and several companies, bare tickers, tickers in
parentheses, nicknames, `&` and apostrophes, unicode, and stock indices that are NOT companies.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class Company:
    name: str  # as a headline writes it
    ticker: str
    normalized: str  # the canonical name a labeler should return


GAZETTEER: tuple[Company, ...] = (
    Company("Apple", "AAPL", "Apple Inc."),
    Company("Tesla", "TSLA", "Tesla Inc."),
    Company("Microsoft", "MSFT", "Microsoft Corporation"),
    Company("Amazon", "AMZN", "Amazon.com Inc."),
    Company("Google", "GOOG", "Alphabet Inc."),
    Company("Nvidia", "NVDA", "NVIDIA Corporation"),
    Company("Netflix", "NFLX", "Netflix Inc."),
    Company("Intel", "INTC", "Intel Corporation"),
    Company("Boeing", "BA", "The Boeing Company"),
    Company("JPMorgan Chase", "JPM", "JPMorgan Chase & Co."),
    Company("Goldman Sachs", "GS", "The Goldman Sachs Group Inc."),
    Company("Exxon Mobil", "XOM", "Exxon Mobil Corporation"),
    Company("Walmart", "WMT", "Walmart Inc."),
    Company("Coca-Cola", "KO", "The Coca-Cola Company"),
    Company("Dun & Bradstreet", "DNB", "Dun & Bradstreet Holdings"),
    Company("Johnson & Johnson", "JNJ", "Johnson & Johnson"),
    Company("AT&T", "T", "AT&T Inc."),
    Company("Procter & Gamble", "PG", "The Procter & Gamble Company"),
    Company("Berkshire Hathaway", "BRK.B", "Berkshire Hathaway Inc."),
    Company("Ford", "F", "Ford Motor Company"),
    Company("General Motors", "GM", "General Motors Company"),
    Company("Pfizer", "PFE", "Pfizer Inc."),
    Company("AbbVie", "ABBV", "AbbVie Inc."),
    Company("Agilent Technologies", "A", "Agilent Technologies Inc."),
    Company("Advance Auto Parts", "AAP", "Advance Auto Parts Inc."),
    Company("AmerisourceBergen", "ABC", "AmerisourceBergen Corporation"),
    Company("ACADIA Pharmaceuticals", "ACAD", "ACADIA Pharmaceuticals Inc."),
    Company("Barrick Gold", "ABX", "Barrick Gold Corporation"),
    Company("Starbucks", "SBUX", "Starbucks Corporation"),
    Company("McDonald's", "MCD", "McDonald's Corporation"),
    Company("Lowe's", "LOW", "Lowe's Companies Inc."),
    Company("Nike", "NKE", "Nike Inc."),
    Company("Disney", "DIS", "The Walt Disney Company"),
    Company("Oracle", "ORCL", "Oracle Corporation"),
    Company("Qualcomm", "QCOM", "Qualcomm Inc."),
    Company("Caterpillar", "CAT", "Caterpillar Inc."),
    Company("Nestlé", "NSRGY", "Nestlé S.A."),
    Company("L'Oréal", "LRLCY", "L'Oréal S.A."),
    Company("Adidas", "ADDYY", "Adidas AG"),
)
NICKNAMES: tuple[tuple[str, Company], ...] = (
    ("Big Blue", Company("IBM", "IBM", "International Business Machines")),
    ("Mickey Mouse", Company("Disney", "DIS", "The Walt Disney Company")),
    ("Uncle Warren", Company("Berkshire Hathaway", "BRK.B", "Berkshire Hathaway Inc.")),
)
INDICES = ("Dow Jones", "S&P 500", "Nasdaq", "CAC40", "Russell 2000", "FTSE 100", "DAX", "Nikkei")

# Templates: {c0}/{c1}/{c2} are company names, {t0}.. their tickers, {i} an index; others are filler.
ZERO = (
    "Fast Money Picks For {month} {day}",
    "10 Biggest Price Target Changes For {weekday}",
    "{i} Falls {n} Points As Oil Slides",
    "{i} Hits Record High; {i2} Follows",
    "Mid-Day Market Update: Crude Oil Up {pct}%",
    "Earnings Scheduled For {month} {day}",
    "There's A New Trading Tool That Allows Traders To Trade Cannabis With Leverage",
    "Benzinga's Top Upgrades, Downgrades For {month} {day}",
    "Stocks Moving In {weekday}'s Pre-Market Session",
    "US Stock Futures Edge Lower; {i} Futures Down {pct}%",
)
ONE = (
    "{c0} Shares Rise After Earnings Beat",
    "{c0} Reports Q{q} EPS ${eps}, Beats Estimate",
    "{t0} Stock Falling After Tweet",
    "Analyst Upgrades {c0} To Buy, Raises PT To ${pt}",
    "{c0} ({t0}) Announces ${n}M Share Buyback",
    "Why {c0} Is Moving Higher Today",
    "{i} Gains As {c0} Surges {pct}%",
    "UPDATE: {c0} Cuts FY Guidance",
    "Options Traders Bet Big On {t0}",
    "'{nick}' Shines Again: Is It Time To Buy?",
)
MANY = (
    "{c0} Acquires {c1} For ${n}M",
    "{c0} vs. {c1}: Which Is The Better Buy?",
    "Stocks To Watch: {t0}, {t1}, {t2}",
    "{c0} ({t0}), {c1} ({t1}) Lead {i} Rally",
    "{c0} Partners With {c1} On Cloud Deal",
    "We Explain {t0}, {t1}, And {t2} Earnings",
    "{c0} And {c1} Fall As {i} Drops",
)
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class TrueSpan:
    start: int
    end: int
    text: str
    normalized: str


def _fill(template: str, companies: list[Company], nick: tuple[str, Company] | None, rng: random.Random) -> tuple[str, list[TrueSpan]]:
    """Substitute placeholders left to right, recording where each company string lands."""
    indices = rng.sample(INDICES, 2)
    filler = {
        "month": rng.choice(MONTHS),
        "day": str(rng.randint(1, 28)),
        "weekday": rng.choice(WEEKDAYS),
        "n": str(rng.choice([50, 120, 150, 200, 350, 500, 1200])),
        "pct": f"{rng.uniform(0.2, 9.5):.1f}",
        "q": str(rng.randint(1, 4)),
        "eps": f"{rng.uniform(0.05, 4.5):.2f}",
        "pt": str(rng.randint(8, 400)),
        "i": indices[0],
        "i2": indices[1],
    }
    out, spans, cursor = [], [], 0
    for match in PLACEHOLDER.finditer(template):
        out.append(template[cursor : match.start()])
        key = match.group(1)
        position = sum(len(piece) for piece in out)
        if key[0] in "ct" and key[1:].isdigit():
            company = companies[int(key[1:])]
            text = company.name if key[0] == "c" else company.ticker
            spans.append(TrueSpan(position, position + len(text), text, company.normalized))
        elif key == "nick":
            assert nick is not None
            text = nick[0]
            spans.append(TrueSpan(position, position + len(text), text, nick[1].normalized))
        else:
            text = filler[key]
        out.append(text)
        cursor = match.end()
    out.append(template[cursor:])
    return "".join(out), spans


@lru_cache(maxsize=4)
def embedded_feed(rows: int = 400, seed: int = 7) -> tuple[dict, ...]:
    """Rows in FNSPID's columns, plus `true_spans`, dates spread over 2010-2020.

    A handful of rows are broken the way real feeds are (empty title, unparseable date), so the
    demo shows quarantine at work. Deterministic for a given (rows, seed).
    """
    rng = random.Random(seed)
    start = dt.datetime(2010, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=-4)))
    span_days = (dt.datetime(2020, 12, 31, tzinfo=start.tzinfo) - start).days
    feed = []
    for index in range(rows):
        kind = rng.choices(("zero", "one", "many"), weights=(3, 5, 2))[0]
        template = rng.choice({"zero": ZERO, "one": ONE, "many": MANY}[kind])
        companies = rng.sample(GAZETTEER, 3)
        nick = rng.choice(NICKNAMES) if "{nick}" in template else None
        title, spans = _fill(template, companies, nick, rng)
        symbol = (nick[1] if nick else companies[0]).ticker if spans else rng.choice(GAZETTEER).ticker
        when = start + dt.timedelta(days=rng.randrange(span_days), minutes=rng.randrange(24 * 60))
        feed.append(
            {
                "Article_title": title,
                "Date": when.strftime("%Y-%m-%d %H:%M:%S%z")[:-2] + ":00",
                "Stock_symbol": symbol,
                "Publisher": rng.choice(("Benzinga Newsdesk", "Benzinga Insights", None)),
                "true_spans": tuple(spans),
            }
        )
    broken = (
        {"Article_title": "   ", "Date": "2014-03-02 09:30:00-04:00", "Stock_symbol": "AAPL", "Publisher": None, "true_spans": ()},
        {"Article_title": "Apple Shares Rise After Earnings Beat", "Date": "not a date", "Stock_symbol": "AAPL", "Publisher": None, "true_spans": ()},
        {"Article_title": "Tesla " + "Rally " * 100, "Date": "2019-05-01 10:00:00-04:00", "Stock_symbol": "TSLA", "Publisher": None, "true_spans": ()},
    )
    for offset, row in enumerate(broken):
        feed.insert(37 * (offset + 1), row)
    return tuple(feed)


def gazetteer_entries() -> list[tuple[str, str]]:
    """(surface string, normalized name) pairs the demo's labeling endpoint can recognise."""
    entries = []
    for company in GAZETTEER:
        entries += [(company.name, company.normalized), (company.ticker, company.normalized)]
    entries += [(nickname, company.normalized) for nickname, company in NICKNAMES]
    return entries
