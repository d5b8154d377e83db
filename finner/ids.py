"""Stable ids: content hashes, never positions, so re-runs, resumes and re-exports agree."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def stable_hash(value: Any, length: int = 16) -> str:
    """Hex digest of a JSON-serialisable value, independent of dict order and process."""
    payload = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.blake2b(payload.encode("utf-8"), digest_size=length // 2).hexdigest()


def normalize_title(title: str) -> str:
    """Whitespace-collapsed title: the form that is hashed and stored (feeds carry stray newlines)."""
    return " ".join(title.split())


def headline_id(title: str, date_iso: str, symbol: str | None) -> str:
    """Id of a feed row: the same headline about another ticker, or on another day, is another row."""
    return stable_hash([normalize_title(title), date_iso, symbol or ""])


def title_key(title: str) -> str:
    """Case- and punctuation-blind form of a title: the feed repeats a headline on other days and
    under other symbols with small edits, and such twins must never sit on both sides of a split."""
    return " ".join("".join(ch if ch.isalnum() else " " for ch in title.lower()).split())
