"""The built-in labeller: the company names and tickers of a company listing found in a headline.

It labels without an LLM (the built-in endpoint `finner.listing_server` behind
`jobs.label --test-endpoint`, the demo on a fresh clone, test and benchmark feeds), so it answers
in the LLM's shape: `label(title) -> (result, normalized_result)`, the strings exactly as the
headline writes them, plus a canonical name for each. A listing makes it a gazetteer, hence the
class name `Gazetteer`.

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

What a listing cannot know, it reads off the headline the way the gold guideline
(`finner/data/gold/GUIDELINE.md`) asks a person to:

* a name is written with the legal form the headline attaches (`Aaron's, Inc.`, `Abengoa SA`) and a
  leading `The` that belongs to it; abbreviations of a listed name count (`Expeditors Int.`,
  `Altisource Asset Mgmt`), and so does its first word alone when that word is no English word
  (`Toyota`, `Uber`, `Agilent`);
* the row's own ticker (the feed's `Stock_symbol`, sent after the headline) lends its company's name
  in any spacing (`Amerisource Bergen` for AmerisourceBergen) and its first word (`Amazon`);
* every ticker-shaped item of a parenthesised ticker list is a ticker, listed or not (delisted
  companies), unless the listing says it is a fund;
* a capitalised phrase ending in a legal form (`Avalanche Biotechnologies, Inc.`), or opening the
  headline before a corporate verb (`AnchorBank Announces ...`), is a company;
* a broker acting on another company's stock (`Goldman Sachs Downgrades ...`) is not returned: the
  gold counts subject companies.
"""

from __future__ import annotations

import csv
import functools
import re
from dataclasses import dataclass
from pathlib import Path

from finner.embedded import gazetteer_entries
from finner.roles import NOT_SUBJECTS, RATING_VERBS, is_broker
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
    JPY CNY CAD NA ATM PE PEG DOJ FTC FCC EPA IRS CDC WHO NHTSA FAA FBI DOE ROI ROE EBIT EBITDA GAAP NAV IV CEOS
    ABL FFO EBITDAR NII NOI OTCQB OTCQX NYSEMKT ARCA BATS PM""".split()
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
    when why will with world year yield you your rev perfect bullish bearish repay common com analyst blog
    option options alert alerts movers mover points""".split()
)

_SHARE_TAIL = re.compile(
    r"""[\s,]+(?:-\s+)?(?:Class\s+[A-Z]\b|Common\s+Stock|Common\s+Shares|Ordinary\s+Shares|Ordinary\s+Share|
    American\s+Depositary|American\s+Depository|Depositary|Depository|Sponsored\s+ADR|ADR\b|ADS\b|
    Series\s+[A-Z0-9]+\b|Capital\s+Stock|Subordinate|Subordinated|Voting|Non-Voting|Units?\b|Warrants?\b|
    Rights?\b|Preferred|Shares\s+of\s+Beneficial|Shares\b|Com\b|(?i:New)\s*$|\$|\d+(?:\.\d+)?%).*$""",
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
# A legal form the headline attaches to a name ("Aaron's, Inc.", "AllianceBernstein Holding LP").
LEGAL_TAIL = re.compile(
    r"(?:,?\s+(?:Inc\.?|Incorporated|Corporation|Corp\.?|Co\.(?!\w)|Company|Ltd\.?|LTD|Limited|plc|PLC|Plc|LLC|L\.P\.|LP|"
    r"N\.V\.|NV|S\.A\.|SA|AG|SE|ASA|Group|Holdings?|Hldgs\.?|Holding\s+LP|&\s+Co\.|&\s+Company))+(?![\w&])"
)
# The legal forms that mark an unlisted capitalised phrase as a company ("Avalanche Biotechnologies, Inc."):
# not "Co."/"Company", which headlines also use for "the company".
UNLISTED_TAIL = re.compile(r",?\s+(?:Inc\.?|Incorporated|Corporation|Corp\.?|Ltd\.?|LTD|Limited|plc|PLC|LLC|L\.P\.|N\.V\.|S\.A\.|AG|SE)(?![\w&])")
# Trailing words of listed names that headlines often leave off ("Atlas Air Worldwide" -> "Atlas Air").
DESCRIPTORS = frozenset("worldwide international global enterprise enterprises holdings holding group incorporated".split())
# Roles and words that end a headline-opening company name ("Fidelity Investments President Announces").
NAME_STOPS = frozenset(
    "President CEO CFO Chairman Director Directors Exec Execs Executive Senior Chief Unit Shares Stock Board Founder Insider Insiders".split()
)
# Title-case function words and verbs that cannot begin a company name ("Is EnCana Corporation ...", "To Acquire X Corp.").
LEADING_WORDS = frozenset(
    """A An The Is Are Was Were To For Of In On At By With And Or As From Why How What When Who Will Can Could Should Would
    Does Do Did Has Have Had After Before Over Under Into Than Acquire Acquires Buy Buys Sell Sells Merge Bid Beat""".split()
)
# Abbreviated words that continue a name ("Expeditors Int.", "Altisource Asset Mgmt").
NAME_ABBREVIATIONS = re.compile(r"\s+(?:Int\.|Intl\.?|Int'l|Mgmt\.?|Hldgs\.?|Svcs\.?|Techs\.?|Inds\.?)(?![\w])")
# Companies no US listing holds (foreign, private, or a listed parent's best-known brand), as headlines name them.
WELL_KNOWN = (
    ("Google", "Alphabet Inc."), ("YouTube", "Alphabet Inc."), ("Waymo", "Alphabet Inc."), ("Instagram", "Facebook, Inc."),
    ("WhatsApp", "Facebook, Inc."), ("Huawei", "Huawei Technologies"), ("Samsung", "Samsung Electronics"), ("SpaceX", "SpaceX"),
    ("Xiaomi", "Xiaomi"), ("Foxconn", "Hon Hai Precision Industry"), ("Tencent", "Tencent Holdings"), ("ByteDance", "ByteDance"),
    ("TikTok", "ByteDance"), ("Siemens", "Siemens AG"), ("Bosch", "Robert Bosch GmbH"), ("Volkswagen", "Volkswagen AG"),
    ("Daimler", "Daimler AG"), ("Airbus", "Airbus SE"), ("Nestle", "Nestle S.A."), ("Aramco", "Saudi Aramco"), ("Ikea", "IKEA"),
    ("Monsanto", "Monsanto Company"), ("Renault", "Renault"), ("Porsche", "Porsche AG"), ("Hewlett Packard", "HP Inc."),
    ("Hewlett-Packard", "HP Inc."), ("Alphabet", "Alphabet Inc."), ("Mylan", "Mylan N.V."),
)
# Abbreviations headlines use for words of listed names.
ABBREVIATIONS = {
    "international": ("Int.", "Intl", "Intl.", "Int'l"), "management": ("Mgmt", "Mgmt."), "technologies": ("Tech", "Techs"),
    "technology": ("Tech",), "pharmaceuticals": ("Pharma", "Pharm."), "holdings": ("Hldgs",), "financial": ("Finl",),
    "services": ("Svcs",), "communications": ("Comms",), "industries": ("Inds",), "corporation": ("Corp", "Corp."),
    "brothers": ("Bros", "Bros."), "laboratories": ("Labs",), "systems": ("Sys",),
}
# Verbs of a company's own news: a capitalised phrase opening the headline before one is its subject.
CORPORATE_VERBS = frozenset(
    """Announces Announce Reports Report Receives Agrees Acquires Completes Closes Prices Files Launches Names
    Appoints Signs Wins Declares Posts Issues Unveils Introduces Enters Expands Confirms Settles Partners Halted
    Guides Beats Misses Plans Prepares Opens Begins Secures Obtains Sells Buys Withdraws Terminates Delays Recalls
    Spins Merges Rejects Accepts Extends Amends Invests Submits Presents Lands Delivers Ships Shares""".split()
)
_UNKNOWN_TICKER = re.compile(r"^[A-Z]{2,5}(?:\.[A-Z]{1,2})?$")
_CAPITALISED = re.compile(r"^(?:[A-Z0-9][\w&'.-]*|&)$")


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
    if all(token in HEADLINE_WORDS or not any(c.isalnum() for c in token) for token in key):
        return False  # "Target", "First Trust", "Energy & Mining" are headline vocabulary
    return surface[0].isalnum()  # matched only where the headline capitalises it


class Gazetteer:
    """Company names and tickers, looked up by word-token n-grams. Build with a `from_*` method."""

    def __init__(self, entries: list[Entry], by_symbol: dict[str, Entry] | None = None, funds: frozenset[str] = frozenset()):
        self._names: dict[tuple[str, ...], Entry] = {}
        self._tickers: dict[str, Entry] = {}
        self._by_symbol = by_symbol or {}  # ticker -> its company's listed name: the row's own company
        self._funds = funds  # tickers the listing says are funds/ETFs: never companies, even in a ticker list
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
        by_symbol: dict[str, Entry] = {}
        funds: set[str] = set()
        first_words: dict[str, list[Entry]] = {}
        for row in rows:
            symbol, raw_name = row["symbol"].strip(), row["name"].strip()
            if not _TICKER_SHAPE.match(symbol):
                continue
            if _NOT_A_COMPANY.search(raw_name):
                funds.add(symbol)
                continue
            surface, normalized = clean_name(raw_name)
            name = Entry(surface, normalized, NAME)
            by_symbol.setdefault(symbol, name)
            if _name_is_usable(surface):
                entries += [Entry(variant, normalized, NAME) for variant in name_variants(surface)]
                if normalized != surface and _name_is_usable(normalized):
                    entries.append(Entry(normalized, normalized, NAME))  # "Advance Auto Parts Inc" as written
                first_words.setdefault(_first_word(surface), []).append(name)
            entries.append(Entry(symbol, normalized or symbol, TICKER))
        # A multi-word name's first word alone ("Toyota", "Uber") when no other listing starts with
        # it and it is no English word.
        entries += [Entry(word, names[0].normalized, NAME) for word, names in first_words.items() if len(names) == 1 and _distinctive(word)]
        entries += [Entry(surface, normalized, NAME) for surface, normalized in WELL_KNOWN]
        return cls(entries, by_symbol, frozenset(funds - set(by_symbol)))

    @classmethod
    def from_pairs(cls, pairs: list[tuple[str, str]]) -> Gazetteer:
        """From (surface, normalized) pairs; all-capital surfaces such as "AAPL" are tickers."""
        return cls([Entry(s, n, TICKER if _TICKER_SHAPE.match(s) else NAME) for s, n in pairs])

    @classmethod
    def embedded(cls) -> Gazetteer:
        """The embedded demo gazetteer (`finner.embedded`): works on a fresh clone with no data."""
        return cls.from_pairs(gazetteer_entries())

    # -- labeling ------------------------------------------------------------------------------

    def label(self, title: str, symbol: str | None = None) -> tuple[list[str], list[str]]:
        """(result, normalized_result): companies as written in `title`, in order, and their names.
        `symbol`: the ticker the feed filed the headline under, when known."""
        result, normalized = [], []
        for entry, text in self.matches(title, symbol):
            result.append(text)
            normalized.append(entry.normalized)
        return result, normalized

    def matches(self, title: str, symbol: str | None = None) -> list[tuple[Entry, str]]:
        """Non-overlapping (entry, text as written) pairs, longest name match first, left to right,
        brokers left out."""
        tokens = word_tokens(title)
        folded = [t.casefold() for t, _, _ in tokens]
        listed = _ticker_context(title, tokens, self._tickers, self._funds)
        own = self._own_names(symbol)
        found: list[tuple[Entry, int, int]] = []  # (entry, start, end) in characters
        indices: list[tuple[Entry, int, int]] = []  # stock indices: never part of a company
        i = 0
        while i < len(tokens):
            hit = self._longest_name(folded, i, own)
            if hit is not None:
                entry, length = hit
                start, end = tokens[i][1], tokens[i + length - 1][2]
                if entry.kind == INDEX:
                    indices.append((entry, start, end))
                    i += length
                    continue
                if title[start].isupper() or title[start].isdigit():
                    end = _with_legal_tail(title, end)
                    start = _with_the(title, start, end, entry)
                    found.append((entry, start, end))
                    while i < len(tokens) and tokens[i][1] < end:
                        i += 1
                    continue
            token = tokens[i][0]
            ticker = self._tickers.get(token)
            if ticker is not None and (i in listed or _bare_ticker_ok(token)):
                found.append((ticker, tokens[i][1], tokens[i][2]))
            elif ticker is None and i in listed:
                found.append((Entry(token, token, TICKER), tokens[i][1], tokens[i][2]))  # a delisted ticker in a list
            i += 1
        for unlisted in _unlisted_companies(title, tokens):
            if any(_overlaps(unlisted, index) for index in indices):
                continue
            if not LEGAL_TAIL.search(title[unlisted[1] : unlisted[2]]) and any(_overlaps(unlisted, f) for f in found):
                continue  # an opening phrase never swallows a known company ("NVIDIA Soars After Q4 Reports")
            overlapping = [f for f in found if _overlaps(unlisted, f)]
            if all(f[1] >= unlisted[1] and f[2] <= unlisted[2] and f[2] - f[1] < unlisted[2] - unlisted[1] for f in overlapping):
                found = [f for f in found if f not in overlapping] + [unlisted]  # the longer, written name wins
        found.sort(key=lambda m: m[1])
        offsets = [(start, end) for _, start, end in found]
        tickers = {(start, end) for entry, start, end in found if entry.kind == TICKER}
        subjects = [m for m, at in zip(found, offsets) if not is_broker(title, at, offsets, tickers.__contains__)]
        return _dedupe([(entry, title[start:end]) for entry, start, end in subjects])

    def _own_names(self, symbol: str | None) -> dict[tuple[str, ...], Entry]:
        """Extra names of the row's own company: its first word and its name written in one piece."""
        entry = self._by_symbol.get(symbol or "")
        if entry is None:
            return {}
        names = {_key(variant): entry for variant in name_variants(entry.surface)}
        first = _first_word(entry.surface)
        if len(first) >= 4 and first.casefold() not in HEADLINE_WORDS:
            names.setdefault(_key(first), entry)
        return names

    def _longest_name(self, folded: list[str], i: int, own: dict[tuple[str, ...], Entry]) -> tuple[Entry, int] | None:
        longest = max(self._max_len.get(folded[i], 0), max((len(k) for k in own if k[0] == folded[i]), default=0), 2 if own else 0)
        for length in range(min(longest, len(folded) - i), 0, -1):
            window = tuple(folded[i : i + length])
            joined = own.get(_joined(window)) if length > 1 and all(t.isalnum() for t in window) else None
            entry = self._names.get(window) or own.get(window) or joined
            if entry is not None:
                return entry, length
        return None


def name_variants(surface: str) -> list[str]:
    """A listed name and the forms headlines write it in: "Aaron's" for "Aarons", abbreviations."""
    variants = [surface]
    if surface.endswith("s") and not surface.endswith("ss") and "'" not in surface:
        variants.append(surface[:-1] + "'s")  # "Aarons" written "Aaron's"
    if surface.endswith("'"):
        variants.append(surface[:-1])  # "Bojangles'" written "Bojangles"
    if surface.casefold().endswith(".com"):
        variants.append(surface[:-4])  # "Amazon.com" written "Amazon"
    words = surface.split()
    if " of " in surface and " " in surface.split(" of ")[0]:
        variants.append(surface.split(" of ")[0])  # "Expeditors International of Washington"
    if len(words) > 2 and words[-1].casefold() in DESCRIPTORS:
        variants.append(" ".join(words[:-1]))  # "Atlas Air Worldwide" written "Atlas Air"
    for base in list(variants):
        base_words = base.split()
        for k, word in enumerate(base_words):
            for short in ABBREVIATIONS.get(word.casefold(), ()):
                variants.append(" ".join([*base_words[:k], short, *base_words[k + 1 :]]))
    return list(dict.fromkeys(variants))


def _first_word(surface: str) -> str:
    return surface.split()[0].rstrip("'") if " " in surface else ""


@functools.cache
def _english_words() -> frozenset[str]:
    from english_words import get_english_words_set

    return frozenset(get_english_words_set(["web2"], lower=True))


INFLECTIONS = (("ies", "y"), ("es", ""), ("s", ""), ("ed", ""), ("ed", "e"), ("ing", ""), ("ing", "e"))


def _english(folded: str) -> bool:
    """A dictionary word, or an inflection of one ("emerging", "markets")."""
    words = _english_words()
    return folded in words or any(
        folded.endswith(suffix) and len(folded) - len(suffix) >= 3 and folded[: -len(suffix)] + stem in words for suffix, stem in INFLECTIONS
    )


def _distinctive(word: str) -> bool:
    """A first word that stands for its company alone: long, and no English word."""
    return len(word) >= 4 and word.isalpha() and word.casefold() not in HEADLINE_WORDS and not _english(word.casefold())


def _joined(window: tuple[str, ...]) -> tuple[str, ...]:
    """A folded n-gram as one token: "amerisource bergen" looks up "amerisourcebergen"."""
    return ("".join(ch for token in window for ch in token if ch.isalnum()),)


def _with_legal_tail(title: str, end: int) -> int:
    """Take in an abbreviated word, the legal form written after a name, and the dot of an
    abbreviated one ("Expeditors Int.", "Aaron's, Inc.", "Ltd.")."""
    while abbreviation := NAME_ABBREVIATIONS.match(title, end):
        end = abbreviation.end()
    tail = LEGAL_TAIL.match(title, end)
    end = tail.end() if tail else end
    if title[end : end + 1] == "." and re.search(r"(?:Inc|Corp|Co|Ltd|Bros|Int|Mgmt)$", title[:end]):
        end += 1
    return end


def _with_the(title: str, start: int, end: int, entry: Entry) -> int:
    """Take in a leading "The" that belongs to the name: the listed name has it, or the headline
    writes the full legal name ("The Coca-Cola Company")."""
    if title[max(0, start - 4) : start] == "The " and (entry.normalized.startswith("The ") or LEGAL_TAIL.search(title[start:end])):
        return start - 4
    return start


def _overlaps(a: tuple[Entry, int, int], b: tuple[Entry, int, int]) -> bool:
    return a[1] < b[2] and b[1] < a[2]


def _unlisted_companies(title: str, tokens: list[tuple[str, int, int]]) -> list[tuple[Entry, int, int]]:
    """Companies no listing knows, read off the headline's shape: a capitalised phrase ending in a
    legal form, or opening the headline right before a corporate verb."""
    found = []
    for tail in UNLISTED_TAIL.finditer(title):
        words = [t for t in tokens if t[2] <= tail.start()]
        k = len(words)
        while k and _CAPITALISED.match(words[k - 1][0]) and words[k - 1][0] not in RATING_VERBS | CORPORATE_VERBS | NAME_STOPS and len(words) - k < 5:
            k -= 1
        phrase = _strip_leading(words[k:])
        if phrase and _plausible(phrase):
            found.append((Entry(title[phrase[0][1] : tail.end()], title[phrase[0][1] : tail.end()], NAME), phrase[0][1], tail.end()))
    first = 2 if len(tokens) > 2 and tokens[0][0].isupper() and tokens[1][0] == ":" else 0  # "UPDATE: ..."
    k = first
    while k < len(tokens) and k - first < 4 and _CAPITALISED.match(tokens[k][0]) and tokens[k][0] not in CORPORATE_VERBS | RATING_VERBS | NAME_STOPS | LEADING_WORDS:
        k += 1
    following = tokens[k][0] if k < len(tokens) else ""
    if k > first and (following in CORPORATE_VERBS or following in NAME_STOPS):
        part: list[tuple[str, int, int]] = []
        for token in [*_strip_leading(tokens[first:k]), ("And", 0, 0)]:  # "MC10 And AbbVie Announce": two companies
            if token[0] not in ("And", ","):
                part.append(token)
            elif part and _plausible(part):
                text = title[part[0][1] : part[-1][2]]
                found.append((Entry(text, text, NAME), part[0][1], part[-1][2]))
                part = []
            else:
                part = []
    return found


def _strip_leading(phrase: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    k = 0
    while k < len(phrase) and phrase[k][0] in LEADING_WORDS:
        k += 1
    return phrase[k:]


def _plausible(phrase: list[tuple[str, int, int]]) -> bool:
    """Not headline vocabulary, an institution or a market word."""
    words = [t[0].casefold() for t in phrase if t[0] != "&"]
    if not words or phrase[0][0] in ACRONYMS or not phrase[0][0][0].isalpha() or (len(words) == 1 and words[0] in NOT_SUBJECTS):
        return False
    return not all(w in HEADLINE_WORDS or w in NOT_SUBJECTS or not w.isalnum() for w in words)


def _bare_ticker_ok(token: str) -> bool:
    return len(token) > SHORT_TICKER and token not in ACRONYMS


def _ticker_context(title: str, tokens: list[tuple[str, int, int]], tickers: dict[str, Entry], funds: frozenset[str] = frozenset()) -> set[int]:
    """Token indices that sit in a ticker context: "(A)", "(URBN, LOW, SYY, A)", "(NYSE: T)", "AAPL, TSLA, T".
    In a parenthesised list of two or more ticker-shaped items every item counts, listed or not
    (delisted companies), except funds."""
    index_at = {start: i for i, (_, start, _) in enumerate(tokens)}
    context: set[int] = set()
    for group in _PARENS.finditer(title):
        items = [item.strip() for item in group.group(1).split(",")]
        items = [_EXCHANGE_PREFIX.sub("", item) for item in items]
        if items and all(_TICKER_SHAPE.match(item) for item in items):
            for token_match in re.finditer(r"[A-Z.]+", group.group(1)):
                i = index_at.get(group.start(1) + token_match.start())
                token = token_match.group()
                if i is None or token in funds:
                    continue
                if token in tickers or (len(items) >= 2 and _UNKNOWN_TICKER.match(token) and token not in ACRONYMS):
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
