"""A labelled sample of the embedded demo feed for evaluation and learning-curve tests.

Builds, without Ray or an endpoint, the tables those stages read: `headlines` (the embedded
feed, ingested), `spans` (the "LLM" spans of every headline, as curation writes them) and `sample`
(every headline, split by date as the curation stage does). The stand-in LLM is the feed's ground truth minus every bare-ticker span, a
labeller with a known, systematic blind spot, so its labels differ from the gold (the embedded
truth) in a way a test can count.
"""

from __future__ import annotations

import pyarrow as pa

from finner import schemas
from finner.embedded import GAZETTEER, NICKNAMES
from finner.gold import embedded_truth
from finner.source import SourceConfig, ingest
from finner.store import Store

TICKERS = frozenset(c.ticker for c in GAZETTEER) | frozenset(c.ticker for _, c in NICKNAMES)


def split_of(year: int) -> str:
    """The curation stage's default date split: train to 2016, valid 2017-2018, test from 2019."""
    return "train" if year <= 2016 else "valid" if year <= 2018 else "test"


def llm_stand_in(spans: list[dict]) -> list[dict]:
    """The truth without bare tickers: what a labeller that only knows names would return."""
    return [s for s in spans if s["text"] not in TICKERS]


def write_labelled_demo(store: Store, per_split: int | None = None) -> pa.Table:
    """Ingest the embedded feed and write a `sample` of all of it, or of the first `per_split`
    headlines of each split (small tests); returns the sample."""
    ingest(SourceConfig(), store, progress=False)
    truth = embedded_truth()
    rows = [
        {
            "id": h["id"], "title": h["title"], "date": h["date"], "symbol": h["symbol"], "split": split_of(h["date"].year),
            "cluster": None, "spans": llm_stand_in(truth[h["id"]]), "tokens": None, "token_spans": None, "llm_status": schemas.LABEL_OK,
        }
        for h in store.read("headlines").to_pylist()
    ]  # fmt: skip
    if per_split is not None:
        rows = [row for split in schemas.SPLITS for row in [r for r in rows if r["split"] == split][:per_split]]
    sample = pa.Table.from_pylist(rows, schema=schemas.SAMPLE)
    spans = sample.select(["id", "title", "date", "symbol", "spans", "tokens", "token_spans"])
    store.write("spans", spans.append_column("not_found", pa.nulls(spans.num_rows, schemas.STRINGS)).append_column("clusters", pa.nulls(spans.num_rows, schemas.STRINGS)))
    store.write("sample", sample)
    return sample
