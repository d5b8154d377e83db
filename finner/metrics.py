"""Entity-level precision, recall and F1 over character spans, micro-averaged over headlines.

The same code scores every model, zero-shot or fine-tuned, and the LLM's own labels. A predicted
span counts as found under three matches (`MATCHES`):

* `exact`: same (start, end) as a gold span.
* `overlap` (lenient): shares at least one character with a gold span. Matching is one-to-one
  (a maximum matching), so one long prediction covering two gold companies finds only one.
* `company`: per headline, the set of distinct company names, each name keyed by `name_key`
  (case, punctuation and spacing ignored). Where and how often a company is mentioned does
  not matter. Names come from the span text: compact models return no `normalized` name, so
  comparing `normalized` names would score the LLM and the models on different grounds.

Duplicate spans count once under every match. A headline with neither gold nor predicted spans
adds nothing to the counts. A precision, recall or F1 whose denominator is zero is reported as
0.0; the tp/fp/fn counts stored beside it show when that happened.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from rapidfuzz import utils

from finner.schemas import Span


@dataclass(frozen=True)
class PRF:
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def __add__(self, other: PRF) -> PRF:
        return PRF(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)


def check_rows(gold: Sequence, predicted: Sequence) -> None:
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold rows but {len(predicted)} predicted rows")


def _exact(spans: Iterable[Span] | None) -> set[tuple[int, int]]:
    return {(int(s["start"]), int(s["end"])) for s in spans or ()}


def _set_prf(gold: Sequence[Sequence[Span]], predicted: Sequence[Sequence[Span]], keys: Callable[[Iterable[Span] | None], set]) -> PRF:
    """Micro P/R/F1 comparing, headline by headline, the sets of keys of gold and predicted spans."""
    check_rows(gold, predicted)
    tp = fp = fn = 0
    for g, p in zip(gold, predicted):
        gs, ps = keys(g), keys(p)
        tp += len(gs & ps)
        fp += len(ps - gs)
        fn += len(gs - ps)
    return PRF(tp, fp, fn)


def exact_prf(gold: Sequence[Sequence[Span]], predicted: Sequence[Sequence[Span]]) -> PRF:
    """Micro P/R/F1 with exact (start, end) matches; duplicate spans count once."""
    return _set_prf(gold, predicted, _exact)


def _max_overlap_matching(gold: list[tuple[int, int]], predicted: list[tuple[int, int]]) -> int:
    """Size of a maximum one-to-one matching between overlapping spans (augmenting paths;
    a headline has a handful of spans, so the simple algorithm is plenty)."""
    partner: dict[int, int] = {}  # gold index -> predicted index

    def augment(p: int, seen: set[int]) -> bool:
        ps, pe = predicted[p]
        for g, (gs, ge) in enumerate(gold):
            if g in seen or not (ps < ge and gs < pe):
                continue
            seen.add(g)
            if g not in partner or augment(partner[g], seen):
                partner[g] = p
                return True
        return False

    return sum(augment(p, set()) for p in range(len(predicted)))


def overlap_prf(gold: Sequence[Sequence[Span]], predicted: Sequence[Sequence[Span]]) -> PRF:
    """Micro P/R/F1 where a prediction overlapping a gold span by one character or more finds it."""
    check_rows(gold, predicted)
    tp = fp = fn = 0
    for g, p in zip(gold, predicted):
        gs, ps = sorted(_exact(g)), sorted(_exact(p))
        matched = _max_overlap_matching(gs, ps)
        tp += matched
        fp += len(ps) - matched
        fn += len(gs) - matched
    return PRF(tp, fp, fn)


def name_key(name: str) -> str:
    """A company name compared case-, accent-form-, punctuation- and spacing-insensitively:
    `AT&T` == `at&t` == `AT T`, `Coca-Cola` == `Coca Cola`, `McDonald's` == `McDonalds`."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", name).casefold() if ch.isalnum())


# Words that say what kind of company it is, not which. On full names "Arena Pharmaceuticals Inc"
# and "Acadia Pharmaceuticals Inc" score 86, and chains of such near neighbours put Sony, FedEx,
# Dover... into one "X Corporation" cluster (measured on gazetteer labels of the real headlines).
LEGAL_FORMS = frozenset(
    "inc incorporated corp corporation co company companies ltd limited llc lp llp plc sa ag nv se ab asa spa bv "
    "gmbh holdings holding group the cos".split()
)
DESCRIPTORS = frozenset(
    "pharmaceuticals pharmaceutical pharma biopharma biotechnology biotech therapeutics biosciences bioscience biotherapeutics "
    "technologies technology "
    "financial international industries capital energy resources gold mining semiconductor semiconductors systems "
    "solutions software networks communications entertainment enterprises partners brands common stock shares "
    "ordinary adr ads depositary acquisition".split()
)
# Share classes of listing names: "Alphabet Inc. (Class C)", "... ADS (Each representing 1 Common Share)".
SHARE_CLASS = re.compile(r"\b(?:class|series) [a-z0-9]\b|\beach representing\b.*$")


def company_key(name: str) -> str:
    """The distinctive words of a company name, lower-case, punctuation, share class and legal form
    dropped: `Apple Inc.` -> `apple`, `ACADIA Pharmaceuticals, Inc.` -> `acadia`, `Alphabet Inc.
    (Class C)` -> `alphabet`. A name made only of such words (`Technology Inc`) keeps them all.
    What fuzzy matching compares: clustering the labels' names, and the ticker check's names
    against a listing's (`name_key` is exact identity, for scoring)."""
    words = SHARE_CLASS.sub(" ", utils.default_process(name)).split() or utils.default_process(name).split()
    distinctive = [w for w in words if w not in LEGAL_FORMS and w not in DESCRIPTORS]
    return " ".join(distinctive or words)


def _names(spans: Iterable[Span] | None) -> set[str]:
    return {key for s in spans or () if (key := name_key(s.get("text") or ""))}


def company_prf(gold: Sequence[Sequence[Span]], predicted: Sequence[Sequence[Span]]) -> PRF:
    """Micro P/R/F1 over the distinct company names of each headline (see `name_key`)."""
    return _set_prf(gold, predicted, _names)


EXACT, OVERLAP, COMPANY = "exact", "overlap", "company"
MATCHES: dict[str, Callable[[Sequence[Sequence[Span]], Sequence[Sequence[Span]]], PRF]] = {
    EXACT: exact_prf,
    OVERLAP: overlap_prf,
    COMPANY: company_prf,
}


def score(gold: Sequence[Sequence[Span]], predicted: Sequence[Sequence[Span]]) -> dict[str, PRF]:
    """Every match of `MATCHES` on the same rows."""
    return {match: prf(gold, predicted) for match, prf in MATCHES.items()}
