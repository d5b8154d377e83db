"""Which company spans the gold guideline (`finner/data/gold/GUIDELINE.md`) counts as subjects.

The guideline scores subject companies: a broker acting on another company's stock (`Goldman Sachs
Downgrades Acme`) has role `broker`, and regulators, governments, markets and calendar words are no
companies at all. The built-in labeller applies these rules to its listing matches; a compact model
trained on its labels learns most of them but not all (on the real gold's dev part, 7 of the
whole-feed model's 22 false spans were a broker, a regulator, a weekday or a lower-case word), so
the models' spans pass through `subject_companies` as well. The rules read the headline only, never
a listing: what they know is the guideline's vocabulary below.
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from finner.metrics import name_key
from finner.schemas import Span
from finner.tokens import word_tokens

# A bank, broker or research firm acting on a stock ("Goldman Sachs Downgrades Acme"): not a subject.
RATING_VERBS = frozenset(
    """Upgrades Downgrades Initiates Maintains Reiterates Assumes Resumes Reinstates Upgraded Downgraded Initiated
    Maintained Reiterated Resumed Reinstated Raises Lowers Cuts Boosts Sets Starts Adds Removes Updates Offers Sees
    Says Likes Comments Turns Jockeys Names Expects Predicts Recommends Trims Hikes Ups""".split()
)
CORE_RATING_VERBS = frozenset("""Upgrades Downgrades Initiates Maintains Reiterates Assumes Resumes Reinstates""".split())
BROKERS = frozenset(  # written as `finner.metrics.name_key` writes a name: Goldman Sachs -> goldmansachs
    """goldmansachs morganstanley jpmorgan jpmorganchase jpmorganchaseco citi citigroup citigroupglobalmarkets barclays ubs
    creditsuisse deutschebank bofa bankofamerica bofamerrilllynch merrilllynch jefferies cowen cowenco cowencompany
    piperjaffray piper piperjaffraycompanies raymondjames rbc rbccapital rbccapitalmarkets wellsfargo wellsfargosecurities
    stifel stifelnicolaus oppenheimer keybanc keybanccapitalmarkets needham needhamco needhamcompany wedbush
    canaccord canaccordgenuity cantor cantorfitzgerald evercore evercoreisi bernstein sanfordbernstein baird robertwbaird
    macquarie nomura mizuho suntrust suntrustrobinsonhumphrey bmo bmocapital bmocapitalmarkets leerink leerinkpartners
    janney janneymontgomeryscott sterneagee fbr fbrcapital brileyfbr briley roth rothcapital benchmark maxim maximgroup
    ladenburg ladenburgthalmann northland craighallum telsey telseyadvisory argus morningstar zacks susquehanna
    guggenheim buckingham jmp jmpsecurities williamblair brean breancapital btig dahlmanrose topeka wunderlich
    imperialcapital mkm mkmpartners axiom lazard rosenblatt loopcapital gabelli feltl sidoti avondale hsbc societegenerale
    bnpparibas scotiabank tdsecurities cibc nationalbank compasspoint stephens davidson dadavidson kbw keefebruyettewoods
    sandler sandleroneill drexelhamilton hcwainwright wainwright chardan alliancebernsteinresearch edwardjones rbcc
    pacificcrest firstanalysis summitresearch thinkequity kaufmanbros noblefinancial aegis dougherty rodmanrenshaw""".split()
)
BROKER_TAILS = frozenset("capital markets securities research equity global advisory partners & co co. company group".split())
# Regulators, governments, markets and headline words: never a company on their own.
NOT_SUBJECTS = frozenset(
    """fed fda sec doj ftc fcc epa irs cdc who opec imf ecb treasury congress senate house china us usa europe japan india
    russia market markets stocks stock analyst analysts report earnings investors traders wall street benzinga cnbc
    bloomberg reuters barrons cramer update breaking exclusive mid day midday options option how why what when where""".split()
)
CALENDAR_WORDS = frozenset(
    """monday tuesday wednesday thursday friday saturday sunday january february march april june july august
    september october november december""".split()  # not "May": a name too
)
TICKER_SHAPE = re.compile(r"^[A-Z]{1,5}(?:\.[A-Z]{1,2})?$")


def _rules_version() -> str:
    """A digest of this module's code without its comments and docstrings: it changes when a rule or
    a word list does, not when their explanation does (a new version re-scores the whole feed)."""
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
    return hashlib.sha256(ast.unparse(tree).encode()).hexdigest()[:12]


RULES_VERSION = _rules_version()  # part of a scored prediction's model version (`finner.score`) and of the learning curve's fingerprint


def is_broker(title: str, span: tuple[int, int], spans: Sequence[tuple[int, int]], is_ticker: Callable[[tuple[int, int]], bool]) -> bool:
    """Whether `span` (character offsets; `spans` all of the headline's, by start) is a firm acting on
    a stock: its name (and a tail like "Capital Markets") followed by a rating verb that acts on a
    company named later, or a known broker before a rating verb or after "At"/"By"/"From", or a
    ticker (`is_ticker`) in parentheses right after a broker's name."""
    start, end = span
    rest = word_tokens(title[end:])
    k = 0
    if rest and rest[0][0] == "(" and len(rest) > 2 and rest[2][0] == ")":
        k = 3  # "JP Morgan (JPM) Resumes"
    while k < len(rest) and rest[k][0].casefold() in BROKER_TAILS:
        k += 1
    verb = rest[k][0] if k < len(rest) else ""
    key = name_key(title[start:end])
    after_verb = end + (rest[k][2] if k < len(rest) else 0)
    rated_later = any(other_start >= after_verb for other_start, _ in spans)  # a rating acts on another company's stock
    if (verb in CORE_RATING_VERBS and rated_later) or (verb in RATING_VERBS | {"On", "'s"} and key in BROKERS):
        return True
    before = title[:start].rstrip()
    if key in BROKERS and before.endswith((" At", " By", " From", " at", " by", " from")):
        return True  # "Apple Price Target Raised At Wedbush"
    if before.endswith("(") and is_ticker(span):  # the ticker of a broker named just before it
        return any(e <= start and title[e:start].strip() == "(" and is_broker(title, (s, e), spans, is_ticker) for s, e in spans)
    return False


def never_a_company(text: str) -> bool:
    """A span no headline writes a company as: no capital letter (`itch`, `bars`; `eBay` has one), a
    weekday or month, or a regulator, government or market word on its own (`FTC`, `China`)."""
    folded = text.casefold()
    return not any(ch.isupper() for ch in text) or folded in CALENDAR_WORDS or name_key(text) in NOT_SUBJECTS


def subject_companies(title: str, spans: list[Span]) -> list[Span]:
    """`spans` (by start) without those the guideline does not count as subject companies: brokers
    acting on a stock and spans that are never a company."""
    companies = [s for s in spans if not never_a_company(s["text"])]
    offsets = [(s["start"], s["end"]) for s in companies]

    def ticker_shaped(span: tuple[int, int]) -> bool:
        return bool(TICKER_SHAPE.match(title[span[0] : span[1]]))

    return [s for s, at in zip(companies, offsets) if not is_broker(title, at, offsets, ticker_shaped)]
