"""A free, label-free health signal on the whole scored feed: does the model find the row's company?

Every FNSPID row carries the ticker it was filed under (`symbol`). Through a symbol -> company name
list (`symbol,name` CSV; `../shared/data/company_listings.csv` style, or the user's own via
`--listings`), a row *agrees* when one of its predicted companies is that company: the ticker itself
(`AAPL`), or a name that fuzzy-matches the listed name or one of the company's aliases after dropping
legal and share-class words (`Apple` ~ `Apple Inc. Common Stock`, rapidfuzz `token_set_ratio` of
`finner.metrics.company_key` >= `min_similarity`).

A listing knows one name per ticker, and headlines use others: GOOG is listed as "Alphabet Inc."
while its headlines say "Google". The labelled feed (the curated `spans` table) says which names go
with which symbol: a name the labels put on many of a symbol's rows (`alias_min_rows`,
`alias_min_share`) and far more often than on other rows (`alias_min_lift`) is that symbol's alias,
unless the listing already matches it or it is another listed company's name or ticker (in a feed
of few symbols, Intel is named mostly on Nvidia's rows). Each alias keeps the counts that justify
it, in the store (`ticker_aliases`) and in the report; `--aliases FILE` adds a user's own.

Not every headline names its ticker's company (market wraps, sector pieces), so the rate is not a
recall; what matters is its level across model versions and where it is worst: the per-symbol table
and the rows the model was most confident about while naming someone else (a headline repeated
on other days is listed once, with its count).
"""

from __future__ import annotations

import csv
import dataclasses
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from rapidfuzz import fuzz

from finner import artifacts
from finner.config import Config, help_text
from finner.embedded import GAZETTEER
from finner.errors import FinnerError
from finner.ids import read_spilled, spill_pair_by_id_range
from finner.metrics import company_key
from finner.store import Store

LEARNED = "labels"  # Alias.source of an alias learned from the labelled feed
PYTHON_ROWS = 2_000  # rows turned into Python objects at once (a scored row is a few KB of them)
DISAGREEMENTS_KEPT = 1_000  # the most confident disagreeing headlines kept while the check runs; it lists `worst` of them


@dataclass(frozen=True)
class TickerCheckConfig(Config):
    listings: str = field(
        default="",
        metadata=help_text("CSV with columns symbol,name: the company behind each ticker; empty: the embedded demo feed's companies"),
    )
    aliases: str = field(
        default="",
        metadata=help_text("CSV with columns symbol,name: more names of a ticker's company (brands, former names), added to those learned from the labelled feed"),
    )
    min_similarity: float = field(default=90.0, metadata=help_text("rapidfuzz token_set_ratio (0-100) for a predicted name to match the listed one", at_least=0, at_most=100))
    alias_min_rows: int = field(default=10, metadata=help_text("a learned alias is named on at least this many of its symbol's rows", at_least=1))
    alias_min_share: float = field(
        default=0.1,
        metadata=help_text("a learned alias is named on at least this share of its symbol's rows (a company's other name is common there; a rival's is not)", at_least=0, at_most=1),
    )
    alias_min_lift: float = field(
        default=10.0,
        metadata=help_text("a learned alias is named on its symbol's rows at least this many times as often as on other rows (a name spread over many symbols is nobody's)", at_least=1),
    )
    worst: int = field(default=10, metadata=help_text("how many worst symbols, disagreeing rows and aliases to list", at_least=0))
    min_symbol_rows: int = field(default=20, metadata=help_text("symbols with fewer scored rows are left out of the worst-symbol list", at_least=0))
    check_batch_rows: int = field(
        default=100_000, metadata=help_text("scored headlines in memory at once: the check reads the feed one id range of about this many at a time", at_least=1)
    )


def _symbol_names(path: str, flag: str) -> list[tuple[str, str]]:
    """(SYMBOL, name) rows of a CSV with `symbol` and `name` columns."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"symbol", "name"} <= set(reader.fieldnames):
                raise FinnerError(f"{path}: needs columns symbol,name (found {reader.fieldnames})")
            pairs = []
            for line, row in enumerate(reader, start=2):
                symbol, name = (row["symbol"] or "").strip().upper(), (row["name"] or "").strip()
                if not symbol or not name:
                    raise FinnerError(f"{path}, line {line}: empty symbol or name")
                pairs.append((symbol, name))
    except FileNotFoundError:
        raise FinnerError(f"{flag} file not found: {path} (pass {flag} PATH, a CSV with columns symbol,name)") from None
    return pairs


def load_listings(path: str) -> dict[str, str]:
    """symbol -> name from a CSV with `symbol` and `name` columns (first row wins per symbol);
    no path: the embedded demo feed's gazetteer, so the demo needs no file."""
    if not path:
        return {company.ticker: company.normalized for company in GAZETTEER}
    listings: dict[str, str] = {}
    for symbol, name in _symbol_names(path, "--listings"):
        listings.setdefault(symbol, name)
    return listings


@dataclass(frozen=True)
class Alias:
    """Another name of a symbol's company, and why: learned from the labels (with its counts) or given."""

    symbol: str
    name: str  # as the labels most often write it
    source: str = LEARNED  # or the --aliases file
    rows: int = 0  # the symbol's rows the labels name it on
    symbol_rows: int = 0  # labelled rows filed under the symbol
    other_rows: int = 0  # other labelled rows naming it

    def line(self) -> str:
        why = f"on {self.rows} of its {self.symbol_rows} rows, {self.other_rows} other rows" if self.source == LEARNED else self.source
        return f"    {self.symbol:>8}  {self.name}  ({why})"


def load_aliases(path: str) -> list[Alias]:
    """The user's aliases (`--aliases`): every row counts, several names per symbol."""
    return [Alias(symbol, name, source=path) for symbol, name in _symbol_names(path, "--aliases")] if path else []


def agrees(companies: list[str], symbol: str, names: Sequence[str], min_similarity: float) -> bool:
    """Whether one predicted company is the ticker itself or fuzzy-matches one of the company's names."""
    targets = [company_key(name) for name in names]
    for company in companies:
        if company.strip().upper().lstrip("$") == symbol:
            return True
        key = company_key(company)
        if any(fuzz.token_set_ratio(key, target) >= min_similarity for target in targets):
            return True
    return False


def learn_aliases(labelled: pa.Table | Iterable[pa.Table | pa.RecordBatch], listings: dict[str, str], config: TickerCheckConfig) -> list[Alias]:
    """Aliases from a labelled feed with `symbol` and `spans` columns (the curated `spans` table,
    whole or as a stream of batches): each name (spellings grouped by `company_key`) goes to the
    listed symbol on whose rows it is most over-represented, when it is named there often enough
    (`alias_min_rows`, `alias_min_share`) and far more often than elsewhere (`alias_min_lift`), and
    is neither the symbol's listed name nor another listed company's name or ticker. What it keeps
    grows with names and symbols, not with rows."""
    symbol_rows: Counter = Counter()
    naming: dict[str, Counter] = defaultdict(Counter)  # name key -> symbol -> rows naming it
    spellings: dict[str, Counter] = defaultdict(Counter)
    for batch in _chunks([labelled] if isinstance(labelled, pa.Table) else labelled):
        symbols = [(s or "").strip().upper() for s in batch["symbol"].to_pylist()]
        symbol_rows.update(symbols)
        for symbol, spans in zip(symbols, batch["spans"].to_pylist()):
            keys = set()
            for span in spans or ():
                if key := company_key(span["text"] or ""):
                    keys.add(key)
                    spellings[key][span["text"]] += 1
            for key in keys:
                naming[key][symbol] += 1
    owners: dict[str, set[str]] = defaultdict(set)  # name key -> listed symbols with that name
    for symbol, name in listings.items():
        owners[company_key(name)].add(symbol)
    total = sum(symbol_rows.values())
    aliases = []
    for key, rows_by_symbol in naming.items():
        named = sum(rows_by_symbol.values())
        lifts = {s: _lift(rows, named - rows, symbol_rows[s], total - symbol_rows[s]) for s, rows in rows_by_symbol.items()}
        candidates = [
            s
            for s, rows in rows_by_symbol.items()
            if s in listings and rows >= max(config.alias_min_rows, config.alias_min_share * symbol_rows[s]) and lifts[s] >= config.alias_min_lift
        ]
        if not candidates:
            continue
        symbol = max(candidates, key=lambda s: (lifts[s], rows_by_symbol[s], s))
        name = min(spellings[key], key=lambda text: (-spellings[key][text], len(text), text))
        if agrees([name], symbol, [listings[symbol]], config.min_similarity):
            continue  # the listing already knows it
        if owners[key] - {symbol} or (name.upper() in listings and name.upper() != symbol):
            continue  # another listed company's name or ticker
        aliases.append(Alias(symbol, name, rows=rows_by_symbol[symbol], symbol_rows=symbol_rows[symbol], other_rows=named - rows_by_symbol[symbol]))
    return sorted(aliases, key=lambda a: (-a.rows, a.symbol, a.name))


def _lift(rows: int, other_rows: int, symbol_rows: int, other_symbol_rows: int) -> float:
    """How many times as often a name is on a symbol's rows as on the other rows."""
    if other_rows == 0:
        return float("inf")
    return (rows / symbol_rows) / (other_rows / other_symbol_rows)


def labelled_feed(store: Store) -> Iterator[pa.RecordBatch]:
    """The curated labels (`spans`: symbol and company spans of every labelled headline), streamed
    `PYTHON_ROWS` at a time; nothing before curation."""
    if store.exists("spans"):
        yield from store.dataset("spans").to_batches(columns=["symbol", "spans"], batch_size=PYTHON_ROWS)


@dataclass
class TickerCheck:
    """Agreement of predicted companies with the rows' tickers, overall and where it is worst."""

    model_version: str
    rows: int  # scored rows
    checked: int  # of them, rows whose symbol is in the listings
    agreeing: int
    no_prediction: int  # checked rows where the model found no company at all
    through_alias: int = 0  # agreeing rows that name the company by an alias only
    worst_symbols: list[dict[str, Any]] = field(default_factory=list)
    worst_rows: list[dict[str, Any]] = field(default_factory=list)
    aliases: list[Alias] = field(default_factory=list)  # of the checked symbols
    worst: int = 10  # how many aliases the report lists

    @property
    def rate(self) -> float:
        return self.agreeing / self.checked if self.checked else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version,
            "rows": self.rows,
            "checked": self.checked,
            "agreeing": self.agreeing,
            "agreement_rate": round(self.rate, 4),
            "no_prediction": self.no_prediction,
            "through_alias": self.through_alias,
            "worst_symbols": self.worst_symbols,
            "worst_rows": self.worst_rows,
        }

    def text(self) -> str:
        lines = [
            f"ticker check ({self.model_version}): {self.agreeing}/{self.checked} rows ({self.rate:.1%}) name the company "
            f"behind their symbol ({self.through_alias} by an alias); {self.no_prediction} rows with no company found; "
            f"{self.rows - self.checked} of {self.rows} scored rows have a symbol missing from the listings"
        ]
        if self.worst_symbols:
            lines.append("  worst symbols:  symbol  rows  agree  listed name")
            lines += [f"    {s['symbol']:>8} {s['rows']:>6} {s['rate']:>6.1%}  {s['name']}" for s in self.worst_symbols]
        if self.worst_rows:
            lines.append("  most confident disagreements (score, symbol, predicted companies | title):")
            lines += [f"    {r['score']:.3f} {r['symbol']:>6} {r['companies']} | {r['title']}{_times(r['rows'])}" for r in self.worst_rows]
        if self.aliases:
            more = len(self.aliases) - self.worst
            lines.append(f"  aliases of the checked symbols ({len(self.aliases)}; {artifacts.ALIASES_KEY} in the store):")
            lines += [alias.line() for alias in self.aliases[: self.worst]] + ([f"    ... and {more} more"] if more > 0 else [])
        return "\n".join(lines)


def _times(rows: int) -> str:
    return f"  (x{rows})" if rows > 1 else ""


class _Tally:
    """The check's counts over scored rows added range by range. Of the disagreeing rows only the
    most confident `DISAGREEMENTS_KEPT` (symbol, title, companies) keys are kept: a key's rows share
    one title and so one score (up to a batch's numerics), so a key dropped for a lower score does
    not come back, and the kept keys' row counts are those of the whole feed."""

    def __init__(self, listings: dict[str, str], config: TickerCheckConfig, aliases: Sequence[Alias]):
        self.listings, self.config, self.aliases = listings, config, aliases
        self.alias_names: dict[str, list[str]] = defaultdict(list)
        for alias in aliases:
            self.alias_names[alias.symbol].append(alias.name)
        self.per_symbol: Counter = Counter()
        self.per_symbol_ok: Counter = Counter()
        self.rows = self.checked = self.agreeing = self.empty = self.by_alias = 0
        # One entry per (symbol, title, companies): feeds repeat a headline on other days (other ids).
        self.disagreements: dict[tuple, dict[str, Any]] = {}

    def add(self, scored: pa.Table) -> None:
        self.rows += scored.num_rows
        for chunk in _chunks([scored]):
            self._add_rows(chunk)
        keep = max(DISAGREEMENTS_KEPT, self.config.worst)
        if len(self.disagreements) > keep:
            self.disagreements = dict(sorted(self.disagreements.items(), key=lambda item: (-item[1]["score"], item[1]["id"]))[:keep])

    def _add_rows(self, scored: pa.RecordBatch) -> None:
        listings, config = self.listings, self.config
        columns = [scored[c].to_pylist() for c in ("id", "title", "symbol", "companies", "spans")]
        for row_id, title, symbol, companies, spans in zip(*columns):
            symbol = (symbol or "").strip().upper()
            if symbol not in listings:
                continue
            self.checked += 1
            self.per_symbol[symbol] += 1
            companies = companies or []
            if not companies:
                self.empty += 1
            elif agrees(companies, symbol, [listings[symbol], *self.alias_names[symbol]], config.min_similarity):
                self.agreeing += 1
                self.by_alias += not agrees(companies, symbol, [listings[symbol]], config.min_similarity)
                self.per_symbol_ok[symbol] += 1
                continue
            if companies:
                score = max(float(s["score"] or 0.0) for s in spans)
                seen = self.disagreements.setdefault(
                    (symbol, title, tuple(companies)), {"score": 0.0, "id": row_id, "symbol": symbol, "companies": companies, "title": title, "rows": 0}
                )
                seen["rows"] += 1
                seen["score"] = max(seen["score"], round(score, 4))
                seen["id"] = min(seen["id"], row_id)

    def result(self, model_version: str) -> TickerCheck:
        config, per_symbol, per_symbol_ok = self.config, self.per_symbol, self.per_symbol_ok
        eligible = [s for s in per_symbol if per_symbol[s] >= config.min_symbol_rows]
        worst = sorted(eligible, key=lambda s: (per_symbol_ok[s] / per_symbol[s], -per_symbol[s], s))[: config.worst]
        return TickerCheck(
            model_version=model_version,
            rows=self.rows,
            checked=self.checked,
            agreeing=self.agreeing,
            no_prediction=self.empty,
            through_alias=self.by_alias,
            worst_symbols=[
                {"symbol": s, "name": self.listings[s], "rows": per_symbol[s], "rate": round(per_symbol_ok[s] / per_symbol[s], 4)} for s in worst
            ],
            worst_rows=sorted(self.disagreements.values(), key=lambda r: (-r["score"], r["id"]))[: config.worst],
            aliases=[alias for alias in self.aliases if alias.symbol in per_symbol],
            worst=config.worst,
        )


def check_table(
    scored: pa.Table, listings: dict[str, str], config: TickerCheckConfig, model_version: str = "", aliases: Sequence[Alias] = ()
) -> TickerCheck:
    """The check over a table with `id, title, symbol, companies, spans` (one row per scored headline)."""
    tally = _Tally(listings, config, aliases)
    tally.add(scored)
    return tally.result(model_version)


def scored_feed(store: Store, model_version: str, batch_rows: int) -> Iterator[pa.Table]:
    """Headlines joined with this model version's predictions, one id range of about `batch_rows`
    headlines at a time: one streamed read of each table spills their ranges to a temporary folder
    (`spill_pair_by_id_range`), so each table is read once and only one range is ever in memory."""
    headlines, predictions = store.dataset("headlines"), store.dataset("predictions")
    version = pc.field("model_version") == model_version
    with tempfile.TemporaryDirectory(prefix="finner-ticker-check-") as folder:
        paths = spill_pair_by_id_range(headlines, ("id", "title", "symbol"), predictions, ("id", "spans", "companies"), batch_rows, folder, version)
        for headlines_path, predictions_path in paths:
            part = read_spilled(predictions_path)
            if part.num_rows == 0:
                continue
            feed = read_spilled(headlines_path)
            rows = pc.index_in(part["id"], value_set=feed["id"])  # pyarrow joins cannot carry list<struct>
            found = pc.is_valid(rows)
            matched = feed.take(rows.filter(found))
            yield part.filter(found).append_column("title", matched["title"]).append_column("symbol", matched["symbol"])


def _chunks(tables: Iterable[pa.Table | pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The rows of `tables`, `PYTHON_ROWS` at a time."""
    for table in tables:
        yield from (table if isinstance(table, pa.Table) else pa.Table.from_batches([table])).to_batches(max_chunksize=PYTHON_ROWS)


def ticker_check(store: Store, model_version: str, config: TickerCheckConfig = TickerCheckConfig()) -> TickerCheck:
    """Learn the aliases from the labelled feed (plus `--aliases`), run the check over the scored
    feed, and store both (`ticker_aliases`, `ticker_check`)."""
    listings = load_listings(config.listings)
    aliases = learn_aliases(labelled_feed(store), listings, config) + load_aliases(config.aliases)
    store.put_json(artifacts.ALIASES_KEY, [dataclasses.asdict(alias) for alias in aliases])
    tally = _Tally(listings, config, aliases)
    for scored in scored_feed(store, model_version, config.check_batch_rows):
        tally.add(scored)
    result = tally.result(model_version)
    store.put_json(artifacts.TICKER_CHECK_KEY, result.to_json())
    return result
