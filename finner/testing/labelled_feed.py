"""A feed as the pipeline leaves it for training, without an endpoint: any headlines file (the real
Benzinga headlines, or a feed scaled from them by `finner.testing.feeds`) ingested, labelled by the
gazetteer (the LLM's stand-in) and curated. For the training tests and benchmarks, and any stage
that reads the feed's labelled train rows (`finner.training_data.feed_train_rows`).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa

from finner import schemas
from finner.curate import curate
from finner.sample import SampleConfig
from finner.source import SourceConfig, ingest
from finner.store import Store
from finner.listing_labeller import Gazetteer

LABELED_AT = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def write_labelled_feed(
    store: Store, headlines: Path | str, listings: Path | str, failed_every: int = 50, sample: SampleConfig = SampleConfig()
) -> None:
    """`headlines` ingested from the file `headlines`, `llm_labels` from the gazetteer built from
    `listings` (every `failed_every`-th label failed), and curation's `spans`, `sample` and record
    (default splits: train 2010-2016, valid 2017-2018, test 2019-2020)."""
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
    curate(store, sample_config=sample, progress=False)
