"""Training tables for the fine-tuning tests: real Benzinga headlines labelled by our pipeline's
gazetteer labeler (`finner.testing.gazetteer`) and turned into spans by `finner.spans`. (A whole
feed, ingested, labelled and curated: `finner.testing.labelled_feed`.)"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from finner import schemas
from finner.ids import stable_hash
from finner.spans import find_spans
from finner.store import Store
from finner.testing.gazetteer import Gazetteer


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


def write_sample(store: Store, headlines: Path | str, listings: Path | str, train: int, valid: int) -> pa.Table:
    """A `sample` table with `train` + `valid` LLM-labelled rows (the gazetteer standing in for the
    LLM), plus one failed label per split that training must leave out."""
    rows = labelled_rows(headlines, listings, train + valid)
    date = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    sample = []
    for i, row in enumerate(rows):
        split = "train" if i < train else "valid"
        sample.append({**row, "date": date, "symbol": None, "split": split, "cluster": None, "llm_status": schemas.LABEL_OK})
    for split in ("train", "valid"):
        sample.append({"id": f"failed-{split}", "title": "Apple Shares Rise", "date": date, "symbol": None, "split": split,
                       "cluster": None, "spans": None, "tokens": None, "token_spans": None, "llm_status": schemas.LABEL_FAILED})
    table = pa.Table.from_pylist(sample, schema=schemas.SAMPLE)
    store.write("sample", table)
    return table

