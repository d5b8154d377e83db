"""A deterministic gazetteer labeler: the company names and tickers of a listing found in a headline.

It stands in for the LLM wherever a real endpoint is not wanted (the test endpoint, the demo on a
fresh clone), so it answers in the LLM's shape: `label(title) -> (result, normalized_result)`,
the strings exactly as the headline writes them, plus a canonical name for each.

Matching is a dictionary lookup over word-token n-grams (`finner.tokens.word_tokens`), longest
match first and never overlapping, so it labels thousands of headlines a second. The rules keep
it honest on real Benzinga headlines:

* listing names lose share-class and legal suffixes ("Alcoa Corporation Common Stock" -> "Alcoa");
  names that are everyday headline words ("Target", "Gold") or funds/ETFs/warrants are dropped;
* names match case-insensitively but must start with a capital or a digit in the headline;
* tickers match only as whole upper-case tokens; 1-2 letter tickers (A, T, F) and tickers that are
  also words or acronyms (LOW, CEO) count only inside parentheses or in a ticker list (`AAPL, T`);
* stock indices ("Dow Jones", "S&P 500", "Nasdaq") are matched to be *skipped*: they block the
  tokens they cover and are never returned.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from finner.embedded import gazetteer_entries
from finner.tokens import word_tokens

NAME, TICKER, INDEX = "name", "ticker", "index"

INDICES = (
    "Dow", "Dow Jones", "Dow Jones Industrial Average", "DJIA", "S&P", "S&P 500", "S&P500", "SPX", "Nasdaq",
    "NASDAQ", "Nasdaq 100", "Nasdaq Composite", "NYSE", "NYSE Composite", "Russell 2000", "Russell 1000",
    "Russell", "CAC40", "CAC 40", "FTSE", "FTSE 100", "DAX", "Nikkei", "Nikkei 225", "Hang Seng", "Stoxx",
    "Euro Stoxx 50", "TSX", "VIX", "Wall Street",
)

# Upper-case tokens of headlines that are not tickers on their own (several are listed symbols).
ACRONYMS = frozenset(
    """UPDATE BREAKING EXCLUSIVE ALERT HEARING RUMOR CEO CFO COO CTO CIO EPS IPO FDA SEC ETF ETFS ETN USA US UK EU
    GDP CPI EST REV NOTE DRAM YOY QOQ FY YTD ADR ADS OTC NYSE AMEX TSX PT OI ASK BID AI EV EVS COVID IT OK TV CNBC FOMC FED
    IMF OPEC ECB ESG NFL NBA API LLC INC CO ON ALL ARE BIG NOW NEW ONE TWO HIGH BUY SELL HOLD TOP WIN FOR THE
    AND OR NOT NO YES UP GO BE SO AN AT BY IN OF TO VS PM AM FUN CASH GOLD OIL GAS CAR HOME GOOD BEST FAST
    REAL TRUE LIVE LOVE PLAY SAVE WELL KEY MAN JOB JOBS LIFE SEE ANY OUT OUTLOOK Q1 Q2 Q3 Q4 H1 H2 USD EUR GBP
    JPY CNY CAD NA ATM PE PEG DOJ FTC FCC EPA IRS CDC WHO NHTSA FAA FBI DOE ROI ROE EBIT EBITDA GAAP NAV IV CEOS""".split()
)

# Title-case words of headlines that are also (cleaned) listing names: never a company on their own.
HEADLINE_WORDS = frozenset(
    """about above across action active advance after again against alert all alpha america american analyst
    analysts and announces annual any approval april are around asia ask august back ball bank banks bear
    beat beats before best better beyond big biggest bio block blue board bond bonds boost break bright build
    bull business but buy call calls can capital care cash central change charter check china city clean
    close cloud coast commerce community companies company connect consumer control core corporate could
    credit crude daily data day days december deal debt deep delta digital direct dividend dividends does
    down downgrade downgrades drop early earnings east edge education electric energy equity estimate eps
    euro europe even exchange express fall falls fast february federal financial first five flow focus for
    four free friday from fund future futures gain gains general global go gold good great green group
    growth guidance health healthcare here high higher hold home hot how i ii iii ideal income industrial
    industries insight insights intelligent international investors invest investment investor is it
    january july june just key land large last lead leader leading lending life like live long low lower
    main march market markets may media medical merger mid middle mobile monday money more most motors move
    moves moving national net new news next north november now october of off oil on one online open
    option options or our out over pacific partners pay peak pending people pick picks plus point power
    premier price prime pro q1 q2 q3 q4 quarter quarterly rally range rate rates ratings real record
    regional report reports research resources retail revenue rise rises rising risk road rock safe sales
    saturday say says science sector security see select sell september service services session seven
    share shares short should six smart so social solar south square standard star stock stocks strategic
    street strong summit sunday sun superior surge system systems target targets tech technology ten than
    that the these this three thursday time today top total trade trading travel trend trust tuesday two
    under unit united universal up update upgrade upgrades us value vs watch wednesday week weekly west what
    when why will with world year yield you your""".split()
)

_SHARE_TAIL = re.compile(
    r"""[\s,]+(?:-\s+)?(?:Class\s+[A-Z]\b|Common\s+Stock|Common\s+Shares|Ordinary\s+Shares|Ordinary\s+Share|
    American\s+Depositary|American\s+Depository|Depositary|Depository|Sponsored\s+ADR|ADR\b|ADS\b|
    Series\s+[A-Z0-9]+\b|Capital\s+Stock|Subordinate|Subordinated|Voting|Non-Voting|Units?\b|Warrants?\b|
    Rights?\b|Preferred|Shares\s+of\s+Beneficial|Shares\b|(?i:New)\s*$|\$|\d+(?:\.\d+)?%).*$""",
    re.VERBOSE,
)
_LEGAL = re.compile(
    r"""[\s,]+(?:Inc\.?|Incorporated|Corporation|Corp\.?|Co\.?|Company|Companies|Ltd\.?|Limited|plc|PLC|
    L\.?P\.?|LLC|N\.?V\.?|S\.?A\.?|AG|SE|SA|ASA|AB|Oyj|Holdings?|Group|Trust|\(The\)|&\s*Co\.?)$""",
    re.VERBOSE,
)
_NOT_A_COMPANY = re.compile(
    r"\b(?:ETF|ETN|ETFs|Fund|Funds|Index|Notes?|Debentures?|Portfolio|Strategy|Shares\s+Trust|Treasury|Bond|Bonds|Municipal|Leveraged|Inverse|Daily|Buffer|iShares|ProShares|SPDR|Invesco|Direxion)\b"
)
_TICKER_SHAPE = re.compile(r"^[A-Z]{1,5}(?:\.[A-Z])?$")
_PARENS = re.compile(r"\(([^()]*)\)")
_EXCHANGE_PREFIX = re.compile(r"^(?:NYSE|NASDAQ|Nasdaq|AMEX|OTC|TSX|NYSEARCA|NYSEMKT)\s*:\s*")
SHORT_TICKER = 2  # tickers this short only count inside parentheses or a ticker list
LIST_JOINERS = frozenset({",", "And", "and", "&"})


def clean_name(name: str) -> tuple[str, str]:
    """(surface, normalized) of a listing name: the form headlines use, and the canonical company name.

    "Alcoa Corporation Common Stock" -> ("Alcoa", "Alcoa Corporation"); "Coca-Cola Company (The)"
    -> ("Coca-Cola", "The Coca-Cola Company").
    """
    name = " ".join(name.split())
    if name.endswith("(The)"):
        name = "The " + name[: -len("(The)")].strip()
    normalized = _strip_repeatedly(_SHARE_TAIL, name)
    surface = _strip_repeatedly(_LEGAL, normalized)
    if surface.startswith("The "):
        surface = surface[4:]
    return surface, normalized


def _strip_repeatedly(tail: re.Pattern[str], text: str) -> str:
    while True:
        stripped = tail.sub("", text).strip(" ,-")
        if stripped == text:
            return text
        text = stripped


def _key(text: str) -> tuple[str, ...]:
    return tuple(token.casefold() for token, _, _ in word_tokens(text))


@dataclass(frozen=True, slots=True)
class Entry:
    surface: str
    normalized: str
    kind: str  # NAME, TICKER or INDEX


def _name_is_usable(surface: str) -> bool:
    key = _key(surface)
    if not key or len(surface) < 3 or not any(c.isalpha() for c in surface):
        return False
    if all(token in HEADLINE_WORDS or not token.isalnum() for token in key):
        return False  # "Target", "First Trust", "Energy & Mining" are headline vocabulary
    return surface[0].isupper() or surface[0].isdigit()


class Gazetteer:
    """Company names and tickers, looked up by word-token n-grams. Build with a `from_*` method."""

    def __init__(self, entries: list[Entry]):
        self._names: dict[tuple[str, ...], Entry] = {}
        self._tickers: dict[str, Entry] = {}
        for entry in entries:  # first entry for a surface wins: callers order them by priority
            if entry.kind == TICKER:
                self._tickers.setdefault(entry.surface, entry)
            else:
                self._names.setdefault(_key(entry.surface), entry)
        for index in INDICES:  # indices block their tokens even where a listing has the same name
            self._names[_key(index)] = Entry(index, index, INDEX)
        self._max_len: dict[str, int] = {}
        for key in self._names:
            self._max_len[key[0]] = max(self._max_len.get(key[0], 0), len(key))

    def __len__(self) -> int:
        return len(self._names) + len(self._tickers)

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def from_listings(cls, csv_path: str | Path) -> Gazetteer:
        """From a `symbol,name,source` listing such as ../shared/data/company_listings.csv.

        Common-stock tickers only (no preferreds, units, warrants); names of funds and ETFs are
        skipped. A surface shared by several listings keeps the S&P 500 one, else the first.
        """
        with open(csv_path, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.DictReader(f) if r.get("symbol") and r.get("name")]
        rows.sort(key=lambda r: (0 if "s-and-p-500" in (r.get("source") or "") else 1, len(r["symbol"])))
        entries: list[Entry] = []
        for row in rows:
            symbol, raw_name = row["symbol"].strip(), row["name"].strip()
            if not _TICKER_SHAPE.match(symbol) or _NOT_A_COMPANY.search(raw_name):
                continue
            surface, normalized = clean_name(raw_name)
            if _name_is_usable(surface):
                entries.append(Entry(surface, normalized, NAME))
                if surface.endswith("s") and not surface.endswith("ss") and "'" not in surface:
                    entries.append(Entry(surface[:-1] + "'s", normalized, NAME))  # "Aarons" written "Aaron's"
                if normalized != surface and _name_is_usable(normalized):
                    entries.append(Entry(normalized, normalized, NAME))  # "Advance Auto Parts Inc" as written
            entries.append(Entry(symbol, normalized or symbol, TICKER))
        return cls(entries)

    @classmethod
    def from_pairs(cls, pairs: list[tuple[str, str]]) -> Gazetteer:
        """From (surface, normalized) pairs; all-capital surfaces such as "AAPL" are tickers."""
        return cls([Entry(s, n, TICKER if _TICKER_SHAPE.match(s) else NAME) for s, n in pairs])

    @classmethod
    def embedded(cls) -> Gazetteer:
        """The embedded demo gazetteer (`finner.embedded`): works on a fresh clone with no data."""
        return cls.from_pairs(gazetteer_entries())

    # -- labeling ------------------------------------------------------------------------------

    def label(self, title: str) -> tuple[list[str], list[str]]:
        """(result, normalized_result): companies as written in `title`, in order, and their names."""
        result, normalized = [], []
        for entry, text in self.matches(title):
            result.append(text)
            normalized.append(entry.normalized)
        return result, normalized

    def matches(self, title: str) -> list[tuple[Entry, str]]:
        """Non-overlapping (entry, text as written) pairs, longest name match first, left to right."""
        tokens = word_tokens(title)
        folded = [t.casefold() for t, _, _ in tokens]
        listed = _ticker_context(title, tokens, self._tickers)
        out: list[tuple[Entry, str]] = []
        i = 0
        while i < len(tokens):
            found = self._longest_name(folded, i)
            if found is not None:
                entry, length = found
                start, end = tokens[i][1], tokens[i + length - 1][2]
                text = title[start:end]
                if entry.kind == NAME and (text[0].isupper() or text[0].isdigit()):
                    out.append((entry, text))
                    i += length
                    continue
                if entry.kind == INDEX:
                    i += length
                    continue
            token = tokens[i][0]
            ticker = self._tickers.get(token)
            if ticker is not None and (i in listed or _bare_ticker_ok(token)):
                out.append((ticker, token))
            i += 1
        return _dedupe(out)

    def _longest_name(self, folded: list[str], i: int) -> tuple[Entry, int] | None:
        longest = self._max_len.get(folded[i], 0)
        for length in range(min(longest, len(folded) - i), 0, -1):
            entry = self._names.get(tuple(folded[i : i + length]))
            if entry is not None:
                return entry, length
        return None


def _bare_ticker_ok(token: str) -> bool:
    return len(token) > SHORT_TICKER and token not in ACRONYMS


def _ticker_context(title: str, tokens: list[tuple[str, int, int]], tickers: dict[str, Entry]) -> set[int]:
    """Token indices that sit in a ticker context: "(A)", "(URBN, LOW, SYY, A)", "(NYSE: T)", "AAPL, TSLA, T"."""
    index_at = {start: i for i, (_, start, _) in enumerate(tokens)}
    context: set[int] = set()
    for group in _PARENS.finditer(title):
        items = [item.strip() for item in group.group(1).split(",")]
        items = [_EXCHANGE_PREFIX.sub("", item) for item in items]
        if items and all(_TICKER_SHAPE.match(item) for item in items):
            for token_match in re.finditer(r"[A-Z.]+", group.group(1)):
                i = index_at.get(group.start(1) + token_match.start())
                if i is not None and token_match.group() in tickers:
                    context.add(i)
    # A comma-joined run of known tickers with at least one unmistakable one ("Watch: AAPL, TSLA, T").
    run: list[int] = []
    for i, (token, _, _) in enumerate(tokens + [("", 0, 0)]):
        if token in tickers:
            run.append(i)
        elif token in LIST_JOINERS and run:
            continue
        else:
            if len(run) >= 2 and any(_bare_ticker_ok(tokens[j][0]) for j in run):
                context.update(run)
            run = []
    return context


def _dedupe(matches: list[tuple[Entry, str]]) -> list[tuple[Entry, str]]:
    """One mention per written string: "Apple ... Apple" is one company."""
    seen, out = set(), []
    for entry, text in matches:
        if text not in seen:
            seen.add(text)
            out.append((entry, text))
    return out
