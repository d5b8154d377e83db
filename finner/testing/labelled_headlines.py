"""Real Benzinga headlines labelled by the gazetteer labeler (`finner.listing_labeller`, standing in
for the LLM) and turned into spans by `finner.spans`: training rows for the fine-tuning tests and
the fine-tuned checkpoint the scoring benchmark measures."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow.parquet as pq

from finner.ids import stable_hash
from finner.spans import find_spans
from finner.listing_labeller import Gazetteer


def labelled_rows(headlines: Path | str, listings: Path | str, rows: int, seed: int = 0) -> list[dict]:
    """`rows` distinct headlines, about three in four naming a listed company, in a seeded order."""
    gazetteer = Gazetteer.from_listings(listings)
    titles = sorted(set(pq.read_table(headlines, columns=["title"]).column("title").to_pylist()))
    random.Random(seed).shuffle(titles)
    with_company, without = [], []
    for title in titles:
        if len(with_company) >= rows * 3 // 4 and len(without) >= rows - rows * 3 // 4:
            break
        found = find_spans(title, *gazetteer.label(title))
        (with_company if found.spans else without).append((title, found))
    chosen = with_company[: rows * 3 // 4] + without[: rows - rows * 3 // 4]
    random.Random(seed + 1).shuffle(chosen)
    return [
        {"id": stable_hash(title, length=16), "title": title, "spans": found.spans, "tokens": found.tokens, "token_spans": found.token_spans}
        for title, found in chosen
    ]
