"""The LLM's company strings -> character spans in the headline, and word-token spans for models.

The labeler answers with strings (`result`) and their normalized names (`normalized_result`),
not offsets. Every occurrence of each string becomes a span, with these rules:

* an occurrence may not cut through a word: `A` (Agilent's ticker) is not found inside `Apple`,
  but `Apple` is found in `Apple's` and `Apple-Samsung` (tickers such as `BRK.B`, `AGPDY.PK`, and
  names with `&` or apostrophes are matched as written);
* the exact spelling is searched first; only a string with no exact occurrence falls back to a
  case-insensitive search (an LLM writing `Nvidia` for `NVIDIA`), and typographic apostrophes
  match straight ones (`McDonald's` / `McDonald’s`), unicode in either composed or decomposed form;
* where occurrences overlap, the longest wins (`Black Diamond` over `Diamond`), then the leftmost;
* strings with no occurrence at all are returned in `not_found`, never dropped silently.
Offsets are Python string indices, end exclusive (`title[start:end] == text`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from finner.schemas import COMPANY
from finner.tokens import char_to_token_span, word_tokens

APOSTROPHES = "'’‘`ʼ"
APOSTROPHE_CLASS = "[" + re.escape(APOSTROPHES) + "]"


@dataclass(frozen=True)
class HeadlineSpans:
    """Where a headline's company strings are, in characters and in word tokens."""

    spans: list[dict[str, Any]]  # SPAN structs, sorted by start
    not_found: list[str]
    tokens: list[str]
    token_spans: list[dict[str, int]]  # inclusive word-token range of spans[i]
    misaligned: int  # spans that cut a token (`Apple` in `Apple-Samsung`): token_spans[i] covers it whole


def _pattern(surface: str) -> str:
    parts = []
    for ch in surface:
        if ch in APOSTROPHES:
            parts.append(APOSTROPHE_CLASS)
        elif ch.isspace():
            parts.append(r"\s+")
        else:
            parts.append(re.escape(ch))
    return re.sub(r"(\\s\+)+", r"\\s+", "".join(parts))


@lru_cache(maxsize=65_536)  # a feed names the same companies over and over
def _regex(surface: str, flags: int) -> re.Pattern[str]:
    return re.compile(f"(?=({_pattern(surface)}))", flags)


def _cuts_word(title: str, start: int, end: int) -> bool:
    before = start > 0 and title[start - 1].isalnum() and title[start].isalnum()
    after = end < len(title) and title[end].isalnum() and title[end - 1].isalnum()
    return before or after


def occurrences(title: str, surface: str) -> list[tuple[int, int]]:
    """Every (start, end) of `surface` in `title` that does not cut a word: exact first, then
    case-insensitive; overlapping occurrences included (the caller resolves overlaps)."""
    forms = dict.fromkeys([surface, unicodedata.normalize("NFC", surface), unicodedata.normalize("NFD", surface)])
    for flags in (0, re.IGNORECASE):
        found = []
        for form in forms:
            regex = _regex(form, flags)
            found += [(m.start(1), m.end(1)) for m in regex.finditer(title) if not _cuts_word(title, m.start(1), m.end(1))]
        if found:
            return sorted(set(found))
    return []


def find_spans(title: str, result: Sequence[str] | None, normalized: Sequence[str | None] | None = None) -> HeadlineSpans:
    """Spans of the LLM's strings in `title`; `normalized[i]` is the name `result[i]` maps to."""
    normalized = list(normalized or [])
    names: dict[str, str | None] = {}
    for i, raw in enumerate(result or []):
        surface = (raw or "").strip()
        names.setdefault(surface, normalized[i].strip() if i < len(normalized) and normalized[i] else None)
    candidates, not_found = [], []
    for order, (surface, name) in enumerate(names.items()):
        found = occurrences(title, surface) if surface else []
        if not found:
            not_found.append(surface)
        candidates += [(start, end, order, surface, name) for start, end in found]
    taken: list[tuple[int, int, str | None]] = []
    for start, end, _, _, name in sorted(candidates, key=lambda c: (c[0] - c[1], c[0], c[2])):
        if all(end <= s or start >= e for s, e, _ in taken):
            taken.append((start, end, name))
    taken.sort()
    tokens = word_tokens(title)
    spans, token_spans, misaligned = [], [], 0
    for start, end, name in taken:
        spans.append({"start": start, "end": end, "text": title[start:end], "label": COMPANY, "normalized": name, "score": None})
        first, last = char_to_token_span(tokens, start, end)  # a span always covers a character of some token
        token_spans.append({"start": first, "end": last})
        misaligned += (tokens[first][1], tokens[last][2]) != (start, end)
    return HeadlineSpans(spans, not_found, [t for t, _, _ in tokens], token_spans, misaligned)


def company_names(result: Sequence[str] | None, normalized: Sequence[str | None] | None) -> list[str]:
    """The distinct company names a label gives, in order: each normalized name, or the string as
    written where the normalized one is missing or blank. These are what gets clustered."""
    normalized = list(normalized or [])
    out = []
    for i, raw in enumerate(result or []):
        name = normalized[i] if i < len(normalized) and normalized[i] and normalized[i].strip() else raw
        name = " ".join((name or "").split())
        if name and name not in out:
            out.append(name)
    return out
