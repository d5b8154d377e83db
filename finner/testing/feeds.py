"""Feeds at scale from the real headlines: repeated with perturbed titles, so every row is new.

Used by the benchmarks and the 100k-row tests; the figures they print say the feed was scaled.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

PREFIXES = ("", "", "", "UPDATE: ", "BREAKING: ", "Earlier: ")
SUFFIXES = ("", "", "", " - Analyst Blog", " (Update)", "; Shares Up")


def perturb(title: str, round_: int, rng: random.Random) -> str:
    """A plausible variant of a headline (prefix, suffix, one number changed)."""
    words = title.split()
    numbers = [i for i, w in enumerate(words) if any(c.isdigit() for c in w)]
    if numbers and rng.random() < 0.5:
        i = rng.choice(numbers)
        words[i] = "".join(str(rng.randint(0, 9)) if c.isdigit() else c for c in words[i])
    return f"{rng.choice(PREFIXES)}{' '.join(words)}{rng.choice(SUFFIXES)}" + (f" #{round_}" if round_ else "")


def scaled_feed(source: Path | str, rows: int, seed: int = 0, base_rows: int | None = None) -> pa.Table:
    """`rows` rows in the source's columns: copy k of every headline is perturbed, dated k weeks later.
    `base_rows`: scale an evenly spaced subset of that many source rows (every symbol and year
    keeps its share), for quick runs."""
    base = pq.read_table(source).select(["title", "date", "symbol", "publisher"]).to_pylist()
    if base_rows and base_rows < len(base):
        base = base[:: len(base) // base_rows][:base_rows]
    rng = random.Random(seed)
    out = []
    for n in range(rows):
        round_, row = divmod(n, len(base))
        original = base[row]
        title = original["title"] if round_ == 0 else perturb(original["title"], round_, rng)
        date = original["date"]
        if round_:
            when = dt.datetime.fromisoformat(date) + dt.timedelta(weeks=round_)
            date = when.isoformat(sep=" ")
        out.append({**original, "title": title, "date": date})
    return pa.Table.from_pylist(out)


def write_scaled_feed(source: Path | str, rows: int, path: Path | str, seed: int = 0, base_rows: int | None = None) -> Path:
    pq.write_table(scaled_feed(source, rows, seed, base_rows), path, row_group_size=10_000)
    return Path(path)
