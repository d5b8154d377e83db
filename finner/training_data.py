"""Which labelled rows a model is fine-tuned and validated on.

`--labels llm` takes the sample's rows the LLM labelled `ok`; `--labels gold` the reviewed rows.
A failed or invalid LLM label is not a "no company" label, so those rows are left out.
"""

from __future__ import annotations

from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from finner import schemas
from finner.errors import FinnerError
from finner.gold import review_gold
from finner.ids import title_key
from finner.store import Store

LLM_LABELS, GOLD_LABELS = "llm", "gold"  # where training labels come from
LabelSource = Literal["llm", "gold"]
TRAIN_SPLIT, VALID_SPLIT = "train", "valid"
TRAIN_YEARS = (2010, 2016)  # the curation stage's default train split, by UTC year
ROW_COLUMNS = ["id", "title", "spans"]


def llm_labelled(store: Store, split: str) -> pa.Table:
    """(id, title, spans) of the sample's `split` rows the LLM labelled successfully."""
    if not store.exists("sample"):
        raise FinnerError("no `sample` table in the store: run the curation stage (jobs.curate) first")
    sample = store.read("sample", columns=[*ROW_COLUMNS, "split", "llm_status"])
    keep = pc.and_(pc.equal(sample.column("split"), split), pc.equal(sample.column("llm_status"), schemas.LABEL_OK))
    return sample.filter(keep).select(ROW_COLUMNS)


def gold_labelled(store: Store, split: str) -> pa.Table:
    """(id, title, spans) of the reviewed (`submitted`) gold rows of `split`."""
    if not store.exists("gold"):
        raise FinnerError("no `gold` table in the store: review the sample first (jobs.review), or train with --labels llm")
    gold = review_gold(store)
    return gold.filter(pc.equal(gold.column("split"), split)).select(ROW_COLUMNS)


def labelled(store: Store, labels: LabelSource, split: str) -> pa.Table:
    if labels == LLM_LABELS:
        return llm_labelled(store, split)
    if labels == GOLD_LABELS:
        return gold_labelled(store, split)
    raise FinnerError(f"unknown label source {labels!r}; expected {LLM_LABELS} or {GOLD_LABELS}")


def feed_rows(store: Store, exclude_title_keys: set[str], years: tuple[int, int] = TRAIN_YEARS) -> pa.Table:
    """(id, title, spans) of every headline of `years` the LLM labelled ok (the curation stage's
    `spans` table), once per title key and never one of `exclude_title_keys` (gold, valid, test)."""
    if not store.exists("spans"):
        raise FinnerError("no `spans` table in the store: label and curate the feed first")
    spans = store.read("spans", columns=["id", "title", "date", "spans"])
    years_of = pc.year(spans.column("date"))
    spans = spans.filter(pc.and_(pc.greater_equal(years_of, years[0]), pc.less_equal(years_of, years[1])))
    keep, seen = [], set(exclude_title_keys)
    for i, title in enumerate(spans.column("title").to_pylist()):
        key = title_key(title)
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return spans.take(pa.array(keep, pa.int64())).select(ROW_COLUMNS)
