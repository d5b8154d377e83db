"""Feeds of any size shaped like the real one, rewritten from the real Benzinga headlines.

`write_scaled_feed(source, listings, rows, path)` writes an N-row feed in FNSPID's columns
(`Article_title`, `Date`, `Stock_symbol`, `Publisher`, all text, as `jobs.ingest --path` reads
them), streamed to parquet one row group at a time so a feed of any size never sits in memory. Every
row starts from a real headline (the templates are dealt in a seeded order, each once per round)
and is rewritten the way a bigger feed differs from a small one:

* **companies swapped**: the row files under a company drawn from the listing (`company_listings.csv`)
  by a Zipf law over a seeded ranking of its companies, so a few companies fill many rows and the
  distinct companies, tickers and name clusters keep growing with N, ever more slowly, as in a real
  feed. The row's own company (its `Stock_symbol`, and every name or ticker of it the built-in
  labeller finds in the title) becomes the drawn one; every other company the labeller finds gets a
  draw of its own. A name is written the ways headlines write one (the listed short name, the legal
  name, an abbreviation or possessive), so clusters hold several spellings. Headlines naming no
  company (market news) stay as written.
* **dates**: the day of the real headline (so the years keep the real feed's 2009-2020 mix, and a
  title that names its date stays true) at a random time, in the feed's own forms
  (`2019-03-04 10:15:00-05:00`; day-only rows stay `00:00:00`).
* **duplicates**: `exact_share` of rows repeat a recent row exactly (title, date and symbol: a
  re-post that ingest keeps once), `near_share` repeat a recent row's title with a small edit
  (`UPDATE: `, a suffix, one number changed) at another time of the same day: a new row, as in
  the real feed.
* **broken rows**: `broken_share` of rows are broken the ways feeds break (empty title, no title,
  an unparseable date, a title too long to be a headline): ingest sends them to `rejects`.

Deterministic for a seed. Used by the scale benchmark, the other benchmarks' scaled runs and the
tests; figures taken on such a feed should say it was scaled.
"""

from __future__ import annotations

import bisect
import csv
import itertools
import random
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from finner.listing_labeller import LEGAL_TAIL, NAME, TICKER, Gazetteer, clean_name, name_variants

PREFIXES = ("", "", "", "UPDATE: ", "BREAKING: ", "Earlier: ")
SUFFIXES = ("", "", "", " - Analyst Blog", " (Update)", "; Shares Up")
COLUMNS = ("Article_title", "Date", "Stock_symbol", "Publisher")
SCHEMA = pa.schema([(c, pa.string()) for c in COLUMNS])
_COMMON_TICKER = re.compile(r"^(?:[A-Z]{1,4}|[A-Z]{4}[A-VX-Z])$")  # not Nasdaq's fifth-letter warrants (W)
# Shells that rarely make a headline but fill the later listings: blank-check companies, their units and rights.
_SHELL = re.compile(r"\b(?:Acquisition|Units?|Rights?|Warrants?|Capital Corp)\b|\bSPAC\b", re.IGNORECASE)
_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})(.*)$")
RECENT_ROWS = 2_000  # duplicates copy one of the last rows written: re-posts follow their original closely


@dataclass(frozen=True)
class FeedShape:
    """How a scaled feed departs from clean rewritten headlines, and how popular its companies are."""

    exact_share: float = 0.03  # the real files repeated 509 of ~17k rows read exactly (../shared/data/README.md)
    near_share: float = 0.03  # re-filed titles with a small edit: a choice, their real share was not measured
    broken_share: float = 0.001
    # Company popularity (Zipf-Mandelbrot): rank r (from 1) is drawn with weight 1 / (r + offset)**exponent.
    # The top company files ~5% of rows; a 10k-row feed names ~1.4k companies, 100k ~5k, 900k ~10k.
    zipf_exponent: float = 1.5
    zipf_offset: float = 10
    row_group_rows: int = 50_000


@dataclass(frozen=True)
class Company:
    symbol: str
    surface: str  # as headlines write it ("Alcoa")
    normalized: str  # the listed legal name ("Alcoa Corporation")


def listed_companies(listings: Path | str, gazetteer: Gazetteer) -> tuple[list[Company], dict[str, str]]:
    """(companies a rewrite may name, symbol -> normalized name of every listing). A company
    qualifies when it is common stock and the labeller finds its short name written alone, so
    the labels of a scaled feed see the companies it was written with."""
    companies, normalized_of = [], {}
    with open(listings, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            symbol, name = (row.get("symbol") or "").strip(), (row.get("name") or "").strip()
            if not _COMMON_TICKER.match(symbol) or not name:
                continue
            surface, normalized = clean_name(name)
            normalized_of[symbol] = normalized
            if _SHELL.search(name) or len(symbol) == 5 and symbol[-1] in "UR":
                continue
            found = gazetteer.matches(surface)
            if len(found) == 1 and found[0][1] == surface and found[0][0].normalized == normalized:
                companies.append(Company(symbol, surface, normalized))
    return companies, normalized_of


def perturb(title: str, rng: random.Random) -> str:
    """A re-filed variant of a headline: a prefix or suffix, or one number changed."""
    words = title.split()
    numbers = [i for i, w in enumerate(words) if any(c.isdigit() for c in w)]
    if numbers and rng.random() < 0.5:
        i = rng.choice(numbers)
        words[i] = "".join(str(rng.randint(0, 9)) if c.isdigit() else c for c in words[i])
        return " ".join(words)
    prefix, suffix = ("", "")
    while not prefix and not suffix:
        prefix, suffix = rng.choice(PREFIXES), rng.choice(SUFFIXES)
    return f"{prefix}{title}{suffix}"


class _Rewriter:
    """Rewrites real headlines with other listed companies (see the module's docstring)."""

    def __init__(self, templates: list[dict], listings: Path | str, shape: FeedShape, rng: random.Random):
        self.templates, self.rng = templates, rng
        self.gazetteer = Gazetteer.from_listings(listings)
        self.companies, self.normalized_of = listed_companies(listings, self.gazetteer)
        random.Random(rng.random()).shuffle(self.companies)  # the popularity ranking
        weights = itertools.accumulate(1 / (rank + 1 + shape.zipf_offset) ** shape.zipf_exponent for rank in range(len(self.companies)))
        self.cumulative = list(weights)
        self._mentions: dict[int, list[tuple[str, str, str]]] = {}

    def draw(self, taken: set[str] = frozenset()) -> Company:
        """A company by popularity, other than those `taken` (symbols) when a few tries allow."""
        for _ in range(20):
            at = bisect.bisect_left(self.cumulative, self.rng.random() * self.cumulative[-1])
            company = self.companies[min(at, len(self.companies) - 1)]
            if company.symbol not in taken:
                break
        return company

    def mentions(self, index: int) -> list[tuple[str, str, str]]:
        """(kind, normalized, text) of the companies the labeller finds in template `index`, in order."""
        if index not in self._mentions:
            row = self.templates[index]
            found = self.gazetteer.matches(row["title"], row["symbol"])
            self._mentions[index] = [(entry.kind, entry.normalized, text) for entry, text in found if entry.kind in (NAME, TICKER)]
        return self._mentions[index]

    def spelling(self, company: Company, written: str) -> str:
        """How this mention writes the new company: the legal form the headline attached is kept."""
        tail = LEGAL_TAIL.search(written)
        if tail and tail.end() == len(written):
            return company.surface + tail.group()
        pick = self.rng.random()
        if pick < 0.15 and company.normalized != company.surface:
            return company.normalized
        variants = [v for v in name_variants(company.surface)[1:] if not v.endswith("'s")]  # no invented possessives
        if pick < 0.3 and variants:
            return self.rng.choice(variants)
        return company.surface

    def rewrite(self, index: int) -> tuple[str, str]:
        """(title, symbol) of template `index` about newly drawn companies."""
        row = self.templates[index]
        title, own_symbol = row["title"], row["symbol"]
        own = self.normalized_of.get(own_symbol or "")
        new_own = self.draw()
        swaps: dict[str, Company] = {}
        edits: list[tuple[int, int, str]] = []
        position = 0
        for kind, normalized, text in self.mentions(index):
            is_own = normalized == own or (kind == TICKER and text == own_symbol)
            if not is_own and normalized not in swaps:  # another company of the headline: another draw
                swaps[normalized] = self.draw({new_own.symbol, *(c.symbol for c in swaps.values())})
            company = new_own if is_own else swaps[normalized]
            new = company.symbol if kind == TICKER else self.spelling(company, text)
            pattern = re.compile(rf"(?<![\w&]){re.escape(text)}(?![\w&])")
            occurrences = list(pattern.finditer(title, position))
            for match in occurrences if len(text) > 2 else occurrences[:1]:  # "A" the ticker, not "A" the word
                if all(match.end() <= s or match.start() >= e for s, e, _ in edits):
                    edits.append((match.start(), match.end(), new))
            if occurrences:
                position = occurrences[0].end()
        for start, end, new in sorted(edits, reverse=True):
            title = title[:start] + new + title[end:]
        return title, new_own.symbol


def _random_time(date: str, rng: random.Random) -> str:
    """The same day at a random minute, in the same form (day-only dates stay day-only)."""
    match = _DATE.match(date)
    if not match or match.group(2) == "00:00:00" and not match.group(3):
        return date
    day, _, offset = match.groups()
    return f"{day} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00{offset}"


def _broken(row: dict, rng: random.Random) -> dict:
    kind = rng.randrange(4)
    if kind == 0:
        return {**row, "Article_title": ""}
    if kind == 1:
        return {**row, "Article_title": None}
    if kind == 2:
        return {**row, "Date": rng.choice(("not a date", "2019-13-45 10:00:00", "yesterday"))}
    return {**row, "Article_title": " ".join([row["Article_title"] or "Headline"] * 60)}


def feed_rows(source: Path | str, listings: Path | str, rows: int, seed: int = 0, base_rows: int | None = None, shape: FeedShape = FeedShape()) -> Iterator[dict]:
    """The rows of a scaled feed, one at a time (see the module's docstring). `base_rows`: rewrite
    an evenly spaced subset of that many source rows (every symbol and year keeps its share)."""
    templates = pq.read_table(source, columns=["title", "date", "symbol", "publisher"]).to_pylist()
    if base_rows and base_rows < len(templates):
        templates = templates[:: len(templates) // base_rows][:base_rows]
    rng = random.Random(seed)
    rewriter = _Rewriter(templates, listings, shape, rng)
    recent: deque[dict] = deque(maxlen=RECENT_ROWS)
    order: list[int] = []
    for _ in range(rows):
        pick = rng.random()
        if recent and pick < shape.exact_share:
            row = dict(rng.choice(recent))
        elif recent and pick < shape.exact_share + shape.near_share:
            original = rng.choice(recent)
            row = {**original, "Article_title": perturb(original["Article_title"], rng), "Date": _random_time(original["Date"], rng)}
        else:
            if not order:
                order = list(range(len(templates)))
                rng.shuffle(order)
            index = order.pop()
            title, symbol = rewriter.rewrite(index)
            template = templates[index]
            row = {"Article_title": title, "Date": _random_time(template["date"], rng), "Stock_symbol": symbol, "Publisher": template["publisher"]}
        recent.append(row)
        yield _broken(row, rng) if rng.random() < shape.broken_share else row


def write_scaled_feed(
    source: Path | str, listings: Path | str, rows: int, path: Path | str, seed: int = 0, base_rows: int | None = None, shape: FeedShape = FeedShape()
) -> Path:
    """Write `feed_rows(...)` to the parquet file `path`, one row group of `shape.row_group_rows`
    at a time (memory stays flat at any N); returns `path`."""
    stream = feed_rows(source, listings, rows, seed, base_rows, shape)
    with pq.ParquetWriter(path, SCHEMA, compression="zstd") as writer:
        while chunk := list(itertools.islice(stream, shape.row_group_rows)):
            writer.write_table(pa.Table.from_pylist(chunk, schema=SCHEMA), row_group_size=shape.row_group_rows)
    return Path(path)
