"""Stable ids: content hashes, never positions, so re-runs, resumes and re-exports agree."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from finner.store import BOUNDED_SCAN

ID_HEX_DIGITS = 16  # a headline id: 16 hex digits, 64 bits


def stable_hash(value: Any, length: int = 16) -> str:
    """Hex digest of a JSON-serialisable value, independent of dict order and process."""
    payload = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.blake2b(payload.encode("utf-8"), digest_size=length // 2).hexdigest()


def normalize_title(title: str) -> str:
    """Whitespace-collapsed title: the form that is hashed and stored (feeds carry stray newlines)."""
    return " ".join(title.split())


def headline_id(title: str, date_iso: str, symbol: str | None) -> str:
    """Id of a feed row: the same headline about another ticker, or on another day, is another row."""
    return stable_hash([normalize_title(title), date_iso, symbol or ""], length=ID_HEX_DIGITS)


def title_key(title: str) -> str:
    """Case- and punctuation-blind form of a title: the feed repeats a headline on other days and
    under other symbols with small edits, and such twins must never sit on both sides of a split."""
    return " ".join("".join(ch if ch.isalnum() else " " for ch in title.lower()).split())


ID_PREFIX_DIGITS = 8  # hex digits of the cuts between id ranges: 2**32 even ranges at most


def id_range_cuts(ranges: int) -> list[str]:
    """The `ranges - 1` ids that cut the id space into `ranges` ranges of equal width, ascending.
    Ids are uniform hashes in lower-case hex, so each range holds about 1/ranges of a table's ids
    and the same range of two tables holds the same headlines; an id of any other form still falls
    in exactly one range (by string order), only not evenly."""
    return [f"{(k << (4 * ID_PREFIX_DIGITS)) // ranges:0{ID_PREFIX_DIGITS}x}" for k in range(1, ranges)]


SPILL = pa.ipc.IpcWriteOptions(compression="zstd")  # the temporary range files: Arrow IPC, small on disk


def spill_by_id_range(
    dataset: pads.Dataset,
    columns: Sequence[str],
    cuts: Sequence[str],
    paths: Sequence[str],
    filter: pc.Expression | None = None,
    done: Callable[[int], object] | None = None,
) -> None:
    """One streamed read of `columns` of `dataset` (the rows `filter` keeps), each row appended to
    the Arrow file in `paths` of its id range (`cuts` between ranges, `id_range_cuts`): joining two
    tables a range at a time then reads each table once and holds one range, where a filtered scan
    per range would read the whole table per range. Rows keep their table order within a range;
    the scan is bounded (`BOUNDED_SCAN`). `done(rows)` after each batch."""
    bounds = np.array(cuts)
    schema = pa.schema([dataset.schema.field(c) for c in columns])
    writers = [pa.ipc.new_file(path, schema, options=SPILL) for path in paths]
    try:
        for batch in dataset.to_batches(columns=list(columns), filter=filter, **BOUNDED_SCAN):
            which = np.searchsorted(bounds, batch.column("id").to_numpy(zero_copy_only=False), side="right")
            order = np.argsort(which, kind="stable")
            batch, which = batch.take(pa.array(order)), which[order]
            starts = np.searchsorted(which, np.arange(len(paths) + 1))
            for writer, start, end in zip(writers, starts, starts[1:]):
                if end > start:
                    writer.write_batch(batch.slice(start, end - start))
            if done is not None:
                done(batch.num_rows)
    finally:
        for writer in writers:
            writer.close()


def spill_pair_by_id_range(
    left: pads.Dataset,
    left_columns: Sequence[str],
    right: pads.Dataset,
    right_columns: Sequence[str],
    batch_rows: int,
    folder: str,
    right_filter: pc.Expression | None = None,
    done: Callable[[int], object] | None = None,
) -> list[tuple[str, str]]:
    """Two tables to be joined on `id`, spilled by the same id ranges into files of their own under
    `folder` (`spill_by_id_range`, one streamed read of each; of `right`, the rows `right_filter`
    keeps); returns each range's (left, right) paths. The ranges are cut so the larger table has
    about `batch_rows` rows in each, so the join holds one range. `done` counts `left`'s rows."""
    rows = max(left.count_rows(), right.count_rows(filter=right_filter))
    cuts = id_range_cuts(max(1, math.ceil(rows / batch_rows)))
    paths = [(f"{folder}/left-{k}.arrow", f"{folder}/right-{k}.arrow") for k in range(len(cuts) + 1)]
    spill_by_id_range(left, left_columns, cuts, [l for l, _ in paths], done=done)
    spill_by_id_range(right, right_columns, cuts, [r for _, r in paths], filter=right_filter)
    return paths


def read_spilled(path: str) -> pa.Table:
    """One range's rows, as `spill_by_id_range` wrote them."""
    with pa.OSFile(path) as f:
        return pa.ipc.open_file(f).read_all()


class SeenIds:
    """The headline ids met so far, for de-duplicating a feed of any size in bounded memory: a
    sorted numpy array of each id as the 64-bit number its 16 hex digits spell (8 bytes an id,
    where a Python set of the strings takes over 100). The number is the id itself, not a hash of
    it, so two ids are equal exactly when their numbers are: no collision can drop a row."""

    def __init__(self) -> None:
        self._keys = np.empty(0, np.uint64)

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, ids: Sequence[str]) -> np.ndarray:
        """Record `ids`; returns, per id, whether it is new (neither seen before nor earlier in `ids`)."""
        if any(len(i) != ID_HEX_DIGITS for i in ids):
            raise ValueError(f"not a headline id ({ID_HEX_DIGITS} hex digits): {next(i for i in ids if len(i) != ID_HEX_DIGITS)!r}")
        keys = np.frombuffer(bytes.fromhex("".join(ids)), dtype=">u8").astype(np.uint64)
        new = np.zeros(len(keys), dtype=bool)
        new[np.unique(keys, return_index=True)[1]] = True  # the first of each id within the batch
        if len(self._keys):
            at = np.searchsorted(self._keys, keys).clip(max=len(self._keys) - 1)
            new &= self._keys[at] != keys
        added = np.sort(keys[new])
        self._keys = np.insert(self._keys, np.searchsorted(self._keys, added), added)  # a merge: linear, stays sorted
        return new
