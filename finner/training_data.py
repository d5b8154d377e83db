"""Which labelled rows a model is fine-tuned and validated on, read from the store without holding them.

* `--labels llm --rows sample` (the default): the sample's rows of the split the LLM labelled `ok`,
  its train split less the title twins of held-out headlines (the sample's valid/test rows and the
  shipped real gold), as on the feed;
* `--labels llm --rows feed`: every headline of the train years the LLM labelled `ok` (the `spans`
  table curation writes), except any whose normalised title (`finner.ids.title_key`) also occurs
  among the held-out headlines: every headline of the validation and test years, the sample's
  valid/test rows, the store's `gold` table and the shipped real gold. The feed repeats a headline
  on other days and under other symbols, so a twin on the training side would leak the answer;
* `--labels llm --rows all`: the same, of every year: only the title twins of the sample's
  valid/test rows and of the gold are left out. About three times the real feed's train-year rows,
  but the store's own test-year rows (`jobs.evaluate` on the sample) are then no longer unseen years;
* `--labels gold`: the reviewed rows of the split, the train split less the same title twins as the sample's;
* `--labels teacher --rows feed|all`: the rows `--labels llm` trains on, labelled by a trained model
  instead (the `teacher_spans` table `jobs.relabel` writes: self-training), validated as `llm` is.

A failed or invalid LLM label is not a "no company" label, so those rows are left out.

A `RowSet` is a store table, the columns to read and a pure per-batch selection: `RowSet.batches`
streams it here (and `describe` counts and fingerprints it in one pass), and the Ray Train job
applies the same selection in Ray Data tasks, so no process holds the rows whole. Held-out titles
are kept as 64-bit hashes of their title keys (8 bytes a headline, sorted for binary search).
"""

from __future__ import annotations

import datetime
import functools
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from finner import artifacts, schemas
from finner.errors import FinnerError
from finner.gold import GOLD_REAL, GOLD_REVIEW, load_gold, review_gold
from finner.ids import stable_hash, title_key
from finner.sample import SampleConfig
from finner.store import Store

LLM_LABELS, GOLD_LABELS, TEACHER_LABELS = "llm", "gold", "teacher"  # where training labels come from
LabelSource = Literal["llm", "gold", "teacher"]
TEACHER_TABLE = "teacher_spans"  # `--labels teacher`: a trained model's labels of the feed's rows (`finner.relabel`)
SAMPLE_ROWS, FEED_ROWS, ALL_ROWS = "sample", "feed", "all"  # which headlines --labels llm trains on
RowSource = Literal["sample", "feed", "all"]
ROW_SOURCES = {  # what each --rows trains on, in words (model cards)
    SAMPLE_ROWS: "the review sample",
    FEED_ROWS: "every labelled train-year headline of the feed",
    ALL_ROWS: "every labelled headline of the feed, of every year",
}
TRAIN_SPLIT, VALID_SPLIT = "train", "valid"
ROW_COLUMNS = ["id", "title", "spans"]
SCAN_ROWS = 16_384  # rows per batch a table is read in (here, and by the Ray Data readers)


def model_name(kind: str, labels: LabelSource, name: str = "", rows: RowSource = SAMPLE_ROWS) -> str:
    """A fine-tuned model's name in the store unless the user named it: `<kind>-<labels>`, and
    `<kind>-<labels>-<rows>` for one trained on the whole feed (`jobs.train --rows feed` or `all`)."""
    return name or (f"{kind}-{labels}" if rows == SAMPLE_ROWS else f"{kind}-{labels}-{rows}")


def title_hashes(titles: Iterable[str]) -> np.ndarray:
    """64-bit hashes of the titles' normalised keys: two titles collide when their keys are equal
    (and, with odds of about n²/2⁶⁵, by chance: a chance collision only holds one more row out)."""
    keys = (hashlib.blake2b(title_key(t).encode(), digest_size=8).digest() for t in titles)
    return np.fromiter((int.from_bytes(k, "big") for k in keys), dtype=np.uint64)


def _is_in(hashes: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    if not sorted_set.size:
        return np.zeros(hashes.shape, dtype=bool)
    at = np.minimum(np.searchsorted(sorted_set, hashes), sorted_set.size - 1)
    return sorted_set[at] == hashes


# -- pure per-batch selections: run here or in Ray Data tasks ----------------------------------------


def sample_rows(batch: pa.Table, split: str) -> pa.Table:
    """(id, title, spans) of the sample rows of `split` the LLM labelled `ok`."""
    keep = pc.and_(pc.equal(batch.column("split"), split), pc.equal(batch.column("llm_status"), schemas.LABEL_OK))
    return batch.filter(keep).select(ROW_COLUMNS)


def held_rows(batch: pa.Table) -> pa.Table:
    """Rows that are already training rows (gold, human-sized, is handed over whole)."""
    return batch.select(ROW_COLUMNS)


@dataclass(frozen=True)
class TwinFilter:
    """A selection that drops title twins of held-out headlines: the `candidates` of a batch less
    those whose title key is among `held_out` (sorted title hashes)."""

    held_out: np.ndarray

    def candidates(self, batch: pa.Table) -> pa.Table:
        raise NotImplementedError

    def twins(self, candidates: pa.Table) -> np.ndarray:
        return _is_in(title_hashes(candidates.column("title").to_pylist()), self.held_out)

    def kept(self, batch: pa.Table) -> pa.Table:
        """The batch's selected rows, every column."""
        rows = self.candidates(batch)
        return rows.filter(pa.array(~self.twins(rows)))

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.kept(batch).select(ROW_COLUMNS)


@dataclass(frozen=True)
class FeedSelection(TwinFilter):
    """The training rows of a batch of the `spans` table (or `teacher_spans`): dated in `first_year`..`last_year` (UTC), no title twin."""

    first_year: int = datetime.MINYEAR
    last_year: int = datetime.MAXYEAR

    def candidates(self, batch: pa.Table) -> pa.Table:
        years = pc.year(batch.column("date"))
        return batch.filter(pc.and_(pc.greater_equal(years, self.first_year), pc.less_equal(years, self.last_year)))


@dataclass(frozen=True)
class HeldSelection(TwinFilter):
    """Reviewed gold rows, handed over whole, that train: every row but the title twins."""

    def candidates(self, batch: pa.Table) -> pa.Table:
        return batch


@dataclass(frozen=True)
class SampleSelection(TwinFilter):
    """The training rows of a batch of the `sample` table: its train split, labelled `ok`, no title twin."""

    def candidates(self, batch: pa.Table) -> pa.Table:
        keep = pc.and_(pc.equal(batch.column("split"), TRAIN_SPLIT), pc.equal(batch.column("llm_status"), schemas.LABEL_OK))
        return batch.filter(keep)


# -- row sets ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowSet:
    """One split's training rows: store table `table` read part by part (`columns` only) through the
    pure `select` (a batch of the table -> its training rows, `ROW_COLUMNS`), the first `limit` rows
    when set. Gold rows, human-sized, are `held` whole instead of read from a table."""

    table: str
    columns: tuple[str, ...]
    select: Callable[[pa.Table], pa.Table]
    limit: int = 0
    held: pa.Table | None = None

    def read_parts(self, filesystem: pafs.FileSystem, paths: Iterable[str]) -> Iterator[pa.Table]:
        """The unselected rows (`columns` only) of these parquet parts of `table`, batch by batch."""
        for path in paths:
            with filesystem.open_input_file(path) as f:
                for batch in pq.ParquetFile(f).iter_batches(batch_size=SCAN_ROWS, columns=list(self.columns)):
                    yield pa.Table.from_batches([batch])

    def raw_batches(self, store: Store) -> Iterator[pa.Table]:
        if self.held is not None:
            yield self.held
        else:
            yield from self.read_parts(store.filesystem, store.files(self.table))

    def batches(self, store: Store) -> Iterator[pa.Table]:
        """The selected rows, batch by batch, in table order (the order the Ray job reads them in)."""
        left = self.limit or None
        for raw in self.raw_batches(store):
            rows = self.select(raw)
            if left is not None:
                rows, left = rows.slice(0, left), left - min(left, rows.num_rows)
            if rows.num_rows:
                yield rows
            if left == 0:
                return

    def read(self, store: Store) -> pa.Table:
        """All the selected rows in memory (for the in-process fine-tuning of the learning curve)."""
        batches = list(self.batches(store))
        return pa.concat_tables(batches) if batches else pa.Table.from_pylist([], schema=schemas.SAMPLE.select(ROW_COLUMNS))


@dataclass(frozen=True)
class RowStats:
    """What the driver knows of a row set after one streaming pass: how many rows, a fingerprint of
    them (ids and spans: a re-curated table with the same rows is the same data), and for the feed how
    many train-year rows were held out as title twins of held-out headlines."""

    rows: int
    digest: str
    twins_removed: int = 0
    gold_overlap: dict[str, dict[str, int]] = field(default_factory=dict)  # gold source -> split -> training title keys in it


def describe(store: Store, rows: RowSet, golds: dict[str, dict[str, np.ndarray]] | None = None) -> RowStats:
    """Count and fingerprint the rows in one pass; with `golds` (source -> split -> sorted title
    hashes, `gold_parts`), also count the distinct training title keys in every gold part."""
    count, twins, digest = 0, 0, hashlib.blake2b(digest_size=8)
    hits: dict[str, dict[str, set[int]]] = {source: {split: set() for split in parts} for source, parts in (golds or {}).items()}
    left = rows.limit or None
    for raw in rows.raw_batches(store):
        if isinstance(rows.select, TwinFilter):
            candidates = rows.select.candidates(raw)
            twin = rows.select.twins(candidates)
            if left is not None and int((~twin).sum()) > left:  # the limit falls in this batch: count up to its last row
                end = int(np.flatnonzero(~twin)[left - 1]) + 1
                candidates, twin = candidates.slice(0, end), twin[:end]
            twins += int(twin.sum())
            kept = candidates.filter(pa.array(~twin)).select(ROW_COLUMNS)
        else:
            kept = rows.select(raw)
        if left is not None:
            kept = kept.slice(0, left)
            left -= kept.num_rows
        spans = [[(s["start"], s["end"]) for s in row or []] for row in kept.column("spans").to_pylist()]
        digest.update(stable_hash([kept.column("id").to_pylist(), spans]).encode())
        count += kept.num_rows
        if hits:
            hashes = title_hashes(kept.column("title").to_pylist())
            for source, parts in (golds or {}).items():
                for split, part in parts.items():
                    hits[source][split].update(hashes[_is_in(hashes, part)].tolist())
        if left == 0:
            break
    overlap = {source: {split: len(found) for split, found in parts.items()} for source, parts in hits.items()}
    return RowStats(count, digest.hexdigest(), twins, overlap)


def gold_parts(store: Store) -> dict[str, dict[str, np.ndarray]]:
    """Sorted title hashes of every part of the golds a model may be scored on: the shipped real
    gold (dev, test) and the store's reviewed `gold` table (by split), keyed as `finner.gold` names
    the sources, so `jobs.evaluate` can look up the part it scores."""
    golds = {GOLD_REAL: load_gold(store, GOLD_REAL).table}
    if store.exists("gold"):
        golds[GOLD_REVIEW] = review_gold(store)
    return {
        source: {split: np.unique(title_hashes(table.filter(pc.equal(table.column("split"), split)).column("title").to_pylist()))
                 for split in sorted(set(table.column("split").drop_null().to_pylist()))}
        for source, table in golds.items()
    }  # fmt: skip


def curated_years(store: Store) -> SampleConfig:
    """The split years curation drew the sample with (what `valid` and `test` mean in this store)."""
    record = store.get_json(artifacts.CURATE_KEY)
    if record is None or not store.exists("spans"):
        raise FinnerError("no `spans` table in the store: run the curation stage (jobs.curate) first")
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in record["sample"].items()}
    return SampleConfig(**fields)


def _gold_table_titles(store: Store) -> list[str]:
    """Titles of every row of the store's `gold` table, whatever its status (a row without a
    title takes its sample row's)."""
    if not store.exists("gold"):
        return []
    gold = store.read("gold", columns=["id", "title"])
    titles = [t for t in gold.column("title").to_pylist() if t is not None]
    untitled = gold.filter(pc.is_null(gold.column("title"))).column("id")
    if len(untitled) and store.exists("sample"):
        sample = store.read("sample", columns=["id", "title"], filter=pc.field("id").isin(untitled.to_pylist()))
        titles += sample.column("title").to_pylist()
    return titles


def held_out_titles(store: Store, years: SampleConfig | None) -> np.ndarray:
    """Sorted, unique title hashes of every headline no feed row may share a title key with: the
    headlines of the validation and test years (unless `years` is None), the sample's valid/test
    rows, every row of the store's `gold` table and of the shipped real gold (`finner.gold.REAL_GOLD`)."""
    ranges = [years.year_ranges()[split] for split in schemas.SPLITS if split != TRAIN_SPLIT] if years else []
    held = [year for first, last in ranges for year in range(first, last + 1)]
    parts = []
    for batch in store.dataset("headlines").to_batches(columns=["title", "date"], batch_size=SCAN_ROWS) if held else ():
        rows = batch.filter(pc.is_in(pc.year(batch.column("date")), pa.array(held, pa.int64())))
        parts.append(title_hashes(rows.column("title").to_pylist()))
    if store.exists("sample"):
        sample = store.read("sample", columns=["title"], filter=pc.field("split") != TRAIN_SPLIT)
        parts.append(title_hashes(sample.column("title").to_pylist()))
    parts.append(title_hashes(_gold_table_titles(store)))
    parts.append(title_hashes(load_gold(store, GOLD_REAL).table.column("title").to_pylist()))
    return np.unique(np.concatenate(parts))


def sample_held_out_titles(store: Store) -> np.ndarray:
    """Sorted, unique title hashes no training row of the sample (LLM or reviewed labels) may share
    a title key with: the sample's valid/test rows (the reviewed gold is drawn from the sample, so
    its held-out rows are among them) and the shipped real gold."""
    parts = [title_hashes(load_gold(store, GOLD_REAL).table.column("title").to_pylist())]
    if store.exists("sample"):
        sample = store.read("sample", columns=["title"], filter=pc.field("split") != TRAIN_SPLIT)
        parts.append(title_hashes(sample.column("title").to_pylist()))
    return np.unique(np.concatenate(parts))


def reviewed_held_out_titles(store: Store) -> np.ndarray:
    """`sample_held_out_titles` and the reviewed gold's own rows outside its train split."""
    gold = review_gold(store)
    held = gold.filter(pc.not_equal(gold.column("split"), TRAIN_SPLIT)).column("title").to_pylist()
    return np.unique(np.concatenate([sample_held_out_titles(store), title_hashes(held)]))


def feed_rows(store: Store, limit: int = 0, every_year: bool = False, labels: LabelSource = LLM_LABELS) -> RowSet:
    """The feed's training rows of the train years, or of `every_year` (`--rows all`; see the module
    docstring), the first `limit` when set; with the LLM's labels, or with `--labels teacher` the
    teacher's (the same selection: a row relabelled before the held-out headlines changed is still held out)."""
    years = curated_years(store)
    if every_year:
        selection = FeedSelection(held_out_titles(store, None))
    else:
        selection = FeedSelection(held_out_titles(store, years), *years.train_years)
    if labels == TEACHER_LABELS and not store.exists(TEACHER_TABLE):
        raise FinnerError(f"no `{TEACHER_TABLE}` table in the store: relabel the feed with a trained model first (jobs.relabel)")
    return RowSet(TEACHER_TABLE if labels == TEACHER_LABELS else "spans", ("id", "title", "date", "spans"), selection, limit)


def feed_train_rows(store: Store, limit: int = 0, every_year: bool = False) -> pa.Table:
    """(id, title, spans) of every feed training row, in memory: the learning curve's feed-sized
    points (about 6k rows of the train years for the real headlines; at cluster scale stream
    `feed_rows` instead)."""
    return feed_rows(store, limit, every_year).read(store)


def training_rows(store: Store, labels: LabelSource, rows: RowSource, split: str, limit: int = 0) -> RowSet:
    """The rows a model trains (`split` train) or is validated (`valid`) on. Validation always uses
    the sample's valid split, labelled like the training rows (no training row is a title twin of
    one; by the LLM for `--labels teacher`): validating on the feed's validation years every few
    hundred steps would cost more than training."""
    if labels not in (LLM_LABELS, GOLD_LABELS, TEACHER_LABELS):
        raise FinnerError(f"unknown label source {labels!r}; expected {LLM_LABELS}, {GOLD_LABELS} or {TEACHER_LABELS}")
    if rows not in (SAMPLE_ROWS, FEED_ROWS, ALL_ROWS):
        raise FinnerError(f"unknown rows {rows!r}; expected {SAMPLE_ROWS}, {FEED_ROWS} or {ALL_ROWS}")
    if labels == GOLD_LABELS:
        if rows != SAMPLE_ROWS:
            raise FinnerError(f"--rows {rows} trains on the LLM's labels of the whole feed; reviewed gold labels cover the sample only (use --labels llm)")
        select = HeldSelection(reviewed_held_out_titles(store)) if split == TRAIN_SPLIT else held_rows
        return RowSet("gold", (), select, limit, held=gold_labelled(store, split))
    if labels == TEACHER_LABELS and rows == SAMPLE_ROWS:
        raise FinnerError(f"--labels {TEACHER_LABELS} trains on a teacher's labels of the whole feed (jobs.relabel): use --rows {FEED_ROWS} or {ALL_ROWS}")
    if rows != SAMPLE_ROWS and split == TRAIN_SPLIT:
        return feed_rows(store, limit, every_year=rows == ALL_ROWS, labels=labels)
    if not store.exists("sample"):
        raise FinnerError("no `sample` table in the store: run the curation stage (jobs.curate) first")
    select = SampleSelection(sample_held_out_titles(store)) if split == TRAIN_SPLIT else functools.partial(sample_rows, split=split)
    return RowSet("sample", (*ROW_COLUMNS, "split", "llm_status"), select, limit)


def llm_labelled(store: Store, split: str) -> pa.Table:
    """(id, title, spans) of the sample's `split` rows the LLM labelled successfully."""
    return training_rows(store, LLM_LABELS, SAMPLE_ROWS, split).read(store)


def gold_labelled(store: Store, split: str) -> pa.Table:
    """(id, title, spans) of the reviewed (`submitted`) gold rows of `split`."""
    if not store.exists("gold"):
        raise FinnerError("no `gold` table in the store: review the sample first (jobs.review), or train with --labels llm")
    gold = review_gold(store)
    return gold.filter(pc.equal(gold.column("split"), split)).select(ROW_COLUMNS)
