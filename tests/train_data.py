"""Training tables for the fine-tuning tests: real Benzinga headlines labelled by our pipeline's
gazetteer labeler (`finner.testing.gazetteer`) and turned into spans by `finner.spans` (a sample),
or ingested, labelled and curated whole (a feed)."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from finner import schemas
from finner.curate import curate
from finner.ids import stable_hash
from finner.source import SourceConfig, ingest
from finner.spans import find_spans
from finner.store import Store
from finner.testing.gazetteer import Gazetteer

LABELED_AT = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


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


def write_feed(store: Store, headlines: Path | str, listings: Path | str, failed_every: int = 50) -> None:
    """A feed as the pipeline leaves it before training: `headlines` ingested from `headlines`,
    `llm_labels` from the gazetteer (the LLM's stand-in; every `failed_every`-th label failed), and
    curation's `spans`, `sample` and record (default splits: train 2010-2016, valid 2017-2018, test 2019-2020)."""
    ingest(SourceConfig(path=str(headlines)), store, progress=False)
    gazetteer = Gazetteer.from_listings(listings)
    feed = store.read("headlines", columns=["id", "title"])
    rows = []
    for n, (headline_id, title) in enumerate(zip(feed.column("id").to_pylist(), feed.column("title").to_pylist())):
        if n % failed_every == 1:
            rows.append({"id": headline_id, "status": schemas.LABEL_FAILED, "labeled_at": LABELED_AT})
            continue
        result, normalized = gazetteer.label(title)
        rows.append({"id": headline_id, "status": schemas.LABEL_OK, "result": result, "normalized_result": normalized, "labeled_at": LABELED_AT})
    store.write("llm_labels", pa.Table.from_pylist(rows, schema=schemas.LLM_LABELS))
    curate(store, progress=False)
