"""Training tables for the fine-tuning tests: real Benzinga headlines labelled by our pipeline's
gazetteer labeler (`finner.testing.labelled_headlines`). (A whole feed, ingested, labelled and
curated: `finner.testing.labelled_feed`.)"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa

from finner import schemas
from finner.store import Store
from finner.testing.labelled_headlines import labelled_rows


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

