"""Word tokens with character offsets: the one tokenisation every model-facing table uses.

Joins what headlines write as one word (`AT&T`, `S&P`, `BRK.B`, `AGPDY.PK`, `Coca-Cola`) but
splits apostrophes and trailing dots, so `Apple's` and `Inc.` still align with company spans.
"""

from __future__ import annotations

import re

TOKEN = re.compile(r"\w+(?:[-_.&]\w+)*|\S")


def word_tokens(text: str) -> list[tuple[str, int, int]]:
    """(token, start, end) for every token; `text[start:end] == token`."""
    return [(m.group(), m.start(), m.end()) for m in TOKEN.finditer(text)]


def char_to_token_span(tokens: list[tuple[str, int, int]], start: int, end: int) -> tuple[int, int] | None:
    """Inclusive token indices covering chars [start, end); None when no token overlaps."""
    covered = [i for i, (_, s, e) in enumerate(tokens) if s < end and e > start]
    return (covered[0], covered[-1]) if covered else None


def token_to_char_span(tokens: list[tuple[str, int, int]], first: int, last: int) -> tuple[int, int]:
    """Character span [start, end) of inclusive token indices."""
    return tokens[first][1], tokens[last][2]
