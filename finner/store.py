"""The parquet layer: where every table lives under one root, and how it is written safely.

Layout under the root (a local path or any pyarrow/fsspec URI such as `s3://bucket/finner`)::

    <table>/_CURRENT                  name of the committed version (one small object)
    <table>/<version>/part-*.parquet  the rows of that version

* `write()` builds a new version part by part and commits it by replacing `_CURRENT` last:
  a job killed midway leaves the previous version as the table readers see.
* `append()` adds one part to the current version, written to a `_tmp-` name and renamed,
  so a killed writer leaves at most an ignored temp file. Incremental stages (labels,
  predictions) append one part per finished batch: that is what makes them resumable.
* Every write is checked against the table's declared schema (`finner.schemas.TABLES`);
  a wrong column fails with its name instead of corrupting the table.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from finner.errors import FinnerError
from finner.schemas import TABLES

CURRENT = "_CURRENT"
PART_PREFIX = "part-"
TMP_PREFIX = "_tmp-"


def filesystem_of(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) of a local path or a URI (`s3://...`, `gs://...`): the one place that
    tells them apart."""
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), uri


class SchemaError(FinnerError):
    """A batch does not fit its table's declared schema."""


def conform(table: pa.Table, schema: pa.Schema, name: str) -> pa.Table:
    """Return `table` with exactly `schema`'s columns and types, or raise naming the bad column."""
    missing = [f.name for f in schema if f.name not in table.column_names]
    extra = [c for c in table.column_names if c not in schema.names]
    if missing or extra:
        raise SchemaError(f"table {name!r}: missing columns {missing}, unexpected columns {extra}")
    columns = []
    for field in schema:
        column = table.column(field.name)
        try:
            column = column.cast(field.type, safe=True) if column.type != field.type else column
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as err:
            raise SchemaError(f"table {name!r}, column {field.name!r}: cannot store {column.type} as {field.type}: {err}") from err
        if not field.nullable and column.null_count:
            first = pc.index(pc.is_null(column), True).as_py()
            raise SchemaError(f"table {name!r}, column {field.name!r}: null at row {first} but the column is required")
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


@dataclass
class Store:
    """Tables under one root. Cheap to construct and picklable, so Ray workers get their own."""

    root: str

    def __post_init__(self) -> None:
        if "://" not in self.root:
            # Absolute before it is pickled: Ray workers run in other directories (a Ray Train
            # worker's is its run's artifact folder), where a relative root means another store.
            self.root = os.path.abspath(self.root)
        self._fs, self._base = filesystem_of(self.root)
        self._base = self._base.rstrip("/")

    def __getstate__(self) -> dict[str, Any]:
        return {"root": self.root}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.root = state["root"]
        self.__post_init__()

    @property
    def filesystem(self) -> pafs.FileSystem:
        return self._fs

    # -- locations ---------------------------------------------------------------------------

    def table_dir(self, name: str) -> str:
        schema_of(name)
        return f"{self._base}/{name}"

    def version(self, name: str) -> str | None:
        """The committed version of a table, or None when it was never written."""
        try:
            with self._fs.open_input_stream(f"{self.table_dir(name)}/{CURRENT}") as f:
                return f.read().decode().strip() or None
        except FileNotFoundError:
            return None

    def exists(self, name: str) -> bool:
        return self.version(name) is not None

    def files(self, name: str) -> list[str]:
        """The committed part files of a table, sorted (paths on `self.filesystem`)."""
        version = self.version(name)
        if version is None:
            return []
        selector = pafs.FileSelector(f"{self.table_dir(name)}/{version}", allow_not_found=True)
        infos = self._fs.get_file_info(selector)
        return sorted(
            i.path for i in infos if i.is_file and i.base_name.startswith(PART_PREFIX) and i.base_name.endswith(".parquet")
        )

    # -- reading -----------------------------------------------------------------------------

    def dataset(self, name: str) -> pads.Dataset:
        return pads.dataset(self.files(name), schema=schema_of(name), format="parquet", filesystem=self._fs)

    def read(self, name: str, columns: list[str] | None = None, filter: pads.Expression | None = None) -> pa.Table:
        """The whole committed table (empty, with its schema, when never written)."""
        return self.dataset(name).to_table(columns=columns, filter=filter)

    def ids(self, name: str, filter: pads.Expression | None = None) -> set[str]:
        """The `id`s present in a table (optionally only rows matching `filter`): a stage's done-set."""
        if not self.exists(name):
            return set()
        return set(self.read(name, columns=["id"], filter=filter).column("id").to_pylist())

    # -- writing -----------------------------------------------------------------------------

    def _write_part(self, directory: str, table: pa.Table, part: str) -> str:
        final = f"{directory}/{PART_PREFIX}{part}.parquet"
        tmp = f"{directory}/{TMP_PREFIX}{uuid.uuid4().hex}.parquet"
        pq.write_table(table, tmp, filesystem=self._fs, compression="zstd")
        self._fs.move(tmp, final)  # a rename locally; on object stores the key appears whole
        return final

    def _put_text(self, path: str, text: str) -> None:
        directory = path.rsplit("/", 1)[0]
        tmp = f"{directory}/{TMP_PREFIX}{uuid.uuid4().hex}"
        with self._fs.open_output_stream(tmp) as f:
            f.write(text.encode())
        self._fs.move(tmp, path)

    def _new_version(self, name: str) -> str:
        version = f"v-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"
        self._fs.create_dir(f"{self.table_dir(name)}/{version}", recursive=True)
        return version

    def _commit(self, name: str, version: str) -> None:
        self._put_text(f"{self.table_dir(name)}/{CURRENT}", version)
        for info in self._fs.get_file_info(pafs.FileSelector(self.table_dir(name))):
            if info.type == pafs.FileType.Directory and info.base_name != version:
                with contextlib.suppress(OSError):  # an old version still being read elsewhere
                    self._fs.delete_dir(info.path)

    def write(self, name: str, data: pa.Table | Iterable[pa.Table]) -> int:
        """Replace a table with `data` (one table or a stream of batches); returns the row count.

        Nothing is visible until every part is written, then the new version is committed whole.
        """
        schema = schema_of(name)
        batches = [data] if isinstance(data, pa.Table) else data
        version = self._new_version(name)
        directory = f"{self.table_dir(name)}/{version}"
        rows = 0
        for index, batch in enumerate(batches):
            self._write_part(directory, conform(batch, schema, name), f"{index:06d}")
            rows += batch.num_rows
        self._commit(name, version)
        return rows

    def ensure(self, name: str) -> str:
        """Commit an empty version if the table has none, so concurrent appenders share one."""
        version = self.version(name)
        if version is None:
            version = self._new_version(name)
            self._commit(name, version)
        return version

    def append(self, name: str, table: pa.Table, part: str | None = None) -> str:
        """Add one atomic part to the table's current version; same `part` name overwrites it."""
        table = conform(table, schema_of(name), name)
        directory = f"{self.table_dir(name)}/{self.ensure(name)}"
        return self._write_part(directory, table, part or f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}")

    # -- small documents (run summaries, cost figures) ---------------------------------------

    def put_json(self, key: str, value: Any) -> None:
        """Atomically store a small JSON document under `_meta/<key>.json`."""
        self._fs.create_dir(f"{self._base}/_meta", recursive=True)
        self._put_text(f"{self._base}/_meta/{key}.json", json.dumps(value, indent=2, sort_keys=True, default=str))

    def get_json(self, key: str) -> Any | None:
        try:
            with self._fs.open_input_stream(f"{self._base}/_meta/{key}.json") as f:
                return json.loads(f.read())
        except FileNotFoundError:
            return None

    def artifact(self, *parts: str) -> str:
        """Location under the root for files that are not tables (checkpoints, plots), as a
        path for a local root and as a URI (`s3://...`) otherwise; its parent directory exists."""
        path = "/".join([self._base, *parts])
        self._fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        if "://" in self.root:
            return f"{self.root.split('://', 1)[0]}://{path}"
        return path


def schema_of(name: str) -> pa.Schema:
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; the store knows {sorted(TABLES)}") from None


def todo_headlines(store: Store, done_table: str, done_filter: pads.Expression, columns: tuple[str, ...] = ("id", "title")) -> tuple[pa.Table, int]:
    """`columns` of the headlines with no row matching `done_filter` in `done_table`, in table
    order, and how many already have one: the resume rule of every incremental stage."""
    if not store.exists("headlines"):
        raise FinnerError("the store has no headlines table: run `python -m jobs.ingest` first")
    headlines = store.read("headlines", columns=list(columns))
    done = store.ids(done_table, filter=done_filter)
    if not done:
        return headlines, 0
    todo = headlines.filter(pc.invert(pc.is_in(headlines["id"], value_set=pa.array(sorted(done), pa.string()))))
    return todo, headlines.num_rows - todo.num_rows
