"""A free, label-free health signal on the whole scored feed: does the model find the row's company?

Every FNSPID row carries the ticker it was filed under (`symbol`). Through a symbol -> company name
list (`symbol,name` CSV; `../shared/data/company_listings.csv` style, or the user's own via
`--listings`), a row *agrees* when one of its predicted companies is that company: the ticker itself
(`AAPL`), or a name that fuzzy-matches the listed name after dropping legal and share-class words
(`Apple` ~ `Apple Inc. Common Stock`, rapidfuzz `token_set_ratio` >= `min_similarity`).

Not every headline names its ticker's company (market wraps, sector pieces), so the rate is not a
recall; what matters is its level across model versions and where it is worst: the per-symbol table
and the rows the model was most confident about while naming someone else (a headline repeated
on other days is listed once, with its count).
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from rapidfuzz import fuzz, utils

from finner import artifacts
from finner.config import Config, help_text
from finner.embedded import GAZETTEER
from finner.errors import FinnerError
from finner.store import Store


# Words of listing names that say nothing about which company it is.
NOISE_WORDS = re.compile(
    r"\b(inc|incorporated|corp|corporation|co|company|ltd|limited|plc|llc|lp|l p|sa|s a|nv|ag|se|group|holdings?|"
    r"the|common|stock|shares?|ordinary|class [a-z]|american depositary|ads|adr|each representing.*|"
    r"warrants?|units?|preferred|depositary|series [a-z0-9]+|new)\b"
)


@dataclass(frozen=True)
class TickerCheckConfig(Config):
    listings: str = field(
        default="",
        metadata=help_text("CSV with columns symbol,name: the company behind each ticker; empty: the embedded demo feed's companies"),
    )
    min_similarity: float = field(default=90.0, metadata=help_text("rapidfuzz token_set_ratio (0-100) for a predicted name to match the listed one", at_least=0, at_most=100))
    worst: int = field(default=10, metadata=help_text("how many worst symbols and disagreeing rows to list", at_least=0))
    min_symbol_rows: int = field(default=20, metadata=help_text("symbols with fewer scored rows are left out of the worst-symbol list", at_least=0))


def load_listings(path: str) -> dict[str, str]:
    """symbol -> name from a CSV with `symbol` and `name` columns (first row wins per symbol);
    no path: the embedded demo feed's gazetteer, so the demo needs no file."""
    if not path:
        return {company.ticker: company.normalized for company in GAZETTEER}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"symbol", "name"} <= set(reader.fieldnames):
                raise FinnerError(f"{path}: needs columns symbol,name (found {reader.fieldnames})")
            listings: dict[str, str] = {}
            for line, row in enumerate(reader, start=2):
                symbol, name = (row["symbol"] or "").strip().upper(), (row["name"] or "").strip()
                if not symbol or not name:
                    raise FinnerError(f"{path}, line {line}: empty symbol or name")
                listings.setdefault(symbol, name)
    except FileNotFoundError:
        raise FinnerError(f"listings file not found: {path} (pass --listings PATH, a CSV with columns symbol,name)") from None
    return listings


def core_name(name: str) -> str:
    """`Apple Inc. Common Stock` -> `apple`: lower case, no punctuation, no legal/share-class words."""
    cleaned = NOISE_WORDS.sub(" ", utils.default_process(name))
    return " ".join(cleaned.split()) or utils.default_process(name)


def agrees(companies: list[str], symbol: str, listed_name: str, min_similarity: float) -> bool:
    """Whether one predicted company is the ticker itself or fuzzy-matches the listed name."""
    target = core_name(listed_name)
    for company in companies:
        if company.strip().upper().lstrip("$") == symbol:
            return True
        if fuzz.token_set_ratio(core_name(company), target) >= min_similarity:
            return True
    return False


@dataclass
class TickerCheck:
    """Agreement of predicted companies with the rows' tickers, overall and where it is worst."""

    model_version: str
    rows: int  # scored rows
    checked: int  # of them, rows whose symbol is in the listings
    agreeing: int
    no_prediction: int  # checked rows where the model found no company at all
    worst_symbols: list[dict[str, Any]] = field(default_factory=list)
    worst_rows: list[dict[str, Any]] = field(default_factory=list)

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
            "worst_symbols": self.worst_symbols,
            "worst_rows": self.worst_rows,
        }

    def text(self) -> str:
        lines = [
            f"ticker check ({self.model_version}): {self.agreeing}/{self.checked} rows ({self.rate:.1%}) name the company "
            f"behind their symbol; {self.no_prediction} rows with no company found; "
            f"{self.rows - self.checked} of {self.rows} scored rows have a symbol missing from the listings"
        ]
        if self.worst_symbols:
            lines.append("  worst symbols:  symbol  rows  agree  listed name")
            lines += [f"    {s['symbol']:>8} {s['rows']:>6} {s['rate']:>6.1%}  {s['name']}" for s in self.worst_symbols]
        if self.worst_rows:
            lines.append("  most confident disagreements (score, symbol, predicted companies | title):")
            lines += [f"    {r['score']:.3f} {r['symbol']:>6} {r['companies']} | {r['title']}{_times(r['rows'])}" for r in self.worst_rows]
        return "\n".join(lines)


def _times(rows: int) -> str:
    return f"  (x{rows})" if rows > 1 else ""


def check_table(scored: pa.Table, listings: dict[str, str], config: TickerCheckConfig, model_version: str = "") -> TickerCheck:
    """The check over a table with `id, title, symbol, companies, spans` (one row per scored headline)."""
    per_symbol: Counter = Counter()
    per_symbol_ok: Counter = Counter()
    checked = agreeing = empty = 0
    # One entry per (symbol, title, companies): feeds repeat a headline on other days (other ids).
    disagreements: dict[tuple, dict[str, Any]] = {}
    columns = [scored[c].to_pylist() for c in ("id", "title", "symbol", "companies", "spans")]
    for row_id, title, symbol, companies, spans in zip(*columns):
        symbol = (symbol or "").strip().upper()
        if symbol not in listings:
            continue
        checked += 1
        per_symbol[symbol] += 1
        companies = companies or []
        if not companies:
            empty += 1
        elif agrees(companies, symbol, listings[symbol], config.min_similarity):
            agreeing += 1
            per_symbol_ok[symbol] += 1
            continue
        if companies:
            score = max(float(s["score"] or 0.0) for s in spans)
            seen = disagreements.setdefault((symbol, title, tuple(companies)), {"score": 0.0, "id": row_id, "symbol": symbol, "companies": companies, "title": title, "rows": 0})
            seen["rows"] += 1
            seen["score"] = max(seen["score"], round(score, 4))
            seen["id"] = min(seen["id"], row_id)
    eligible = [s for s in per_symbol if per_symbol[s] >= config.min_symbol_rows]
    worst = sorted(eligible, key=lambda s: (per_symbol_ok[s] / per_symbol[s], -per_symbol[s], s))[: config.worst]
    return TickerCheck(
        model_version=model_version,
        rows=scored.num_rows,
        checked=checked,
        agreeing=agreeing,
        no_prediction=empty,
        worst_symbols=[
            {"symbol": s, "name": listings[s], "rows": per_symbol[s], "rate": round(per_symbol_ok[s] / per_symbol[s], 4)} for s in worst
        ],
        worst_rows=sorted(disagreements.values(), key=lambda r: (-r["score"], r["id"]))[: config.worst],
    )


def scored_feed(store: Store, model_version: str) -> pa.Table:
    """Headlines joined with this model version's predictions."""
    predictions = store.read("predictions", columns=["id", "spans", "companies"], filter=pc.field("model_version") == model_version)
    headlines = store.read("headlines", columns=["id", "title", "symbol"])
    rows = pc.index_in(predictions["id"], value_set=headlines["id"])  # pyarrow joins cannot carry list<struct>
    found = pc.is_valid(rows)
    matched = headlines.take(rows.filter(found))
    predictions = predictions.filter(found)
    return predictions.append_column("title", matched["title"]).append_column("symbol", matched["symbol"])


def ticker_check(store: Store, model_version: str, config: TickerCheckConfig = TickerCheckConfig()) -> TickerCheck:
    """Run the check over the scored feed and store it as `ticker_check`."""
    result = check_table(scored_feed(store, model_version), load_listings(config.listings), config, model_version)
    store.put_json(artifacts.TICKER_CHECK_KEY, result.to_json())
    return result
