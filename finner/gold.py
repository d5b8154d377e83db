"""Gold sets: the hand-labelled real headlines shipped with finner, and how they were drawn.

A gold file is JSONL, one headline a line, in the shape `jobs.review pull` writes gold:
`id` (finner.ids.headline_id, so it joins the store), `split`, `title`, `date`, `symbol`, `status`,
`spans` (character offsets into the title, with `role`: subject or broker), `annotator`.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq

from finner.ids import title_key
from finner.source import SourceConfig, normalize_rows

GOLD_DIR = Path(__file__).parent / "data" / "gold"
REAL_GOLD = GOLD_DIR / "benzinga_real.jsonl"
GUIDELINE = GOLD_DIR / "GUIDELINE.md"
DEV, TEST = "dev", "test"
ROLE_SUBJECT, ROLE_BROKER = "subject", "broker"


def draw_sample(path: str, n: int, seed: int, years: range = range(2010, 2021), dev_fraction: float = 0.4) -> list[dict]:
    """Headlines to label by hand: the same number per UTC year, symbols taken round-robin within a
    year (so the feed's dominant tickers do not crowd the rest out), no two with the same title key;
    the first `dev_fraction` of each year's draw is `dev`, the rest `test`."""
    raw = pq.read_table(path).to_pylist()
    headlines, _ = normalize_rows(raw, path, 0, SourceConfig())
    rng = random.Random(seed)
    rng.shuffle(headlines)
    by_year_symbol: dict[int, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    seen: set[str] = set()
    for row in headlines:
        key = title_key(row["title"])
        if row["date"].year not in years or key in seen:
            continue
        seen.add(key)
        by_year_symbol[row["date"].year][row["symbol"] or ""].append(row)
    per_year = -(-n // len(years))
    drawn = []
    for year in years:
        symbols = sorted(by_year_symbol[year])
        rng.shuffle(symbols)
        queues = {s: by_year_symbol[year][s] for s in symbols}
        taken: list[dict] = []
        while len(taken) < per_year and any(queues.values()):
            for symbol in symbols:
                if queues[symbol] and len(taken) < per_year:
                    taken.append(queues[symbol].pop())
        n_dev = round(len(taken) * dev_fraction)
        for i, row in enumerate(taken):
            drawn.append({"id": row["id"], "split": DEV if i < n_dev else TEST, "title": row["title"],
                          "date": row["date"].isoformat(), "symbol": row["symbol"]})
    return drawn
