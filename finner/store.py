"""The table layer: every table a Delta Lake table under one root, written and read through delta-rs.

Layout under the root (a local path or a URI such as `s3://bucket/finner`)::

    <table>/_delta_log/...   the table's transaction log: one JSON commit per version
    <table>/part-*.parquet   data files, referenced by the log
    _meta/<key>.json         small documents (run summaries, cost figures), not tables

* `write()` replaces a table in one overwrite commit, its rows in the order they come (`OrderedParts`):
  readers keep the version they started on, and a job killed midway leaves the previous version
  (its half-written files are never referenced).
* `append()` adds rows in one commit; concurrent appenders (Ray tasks, two jobs) all land because
  delta-rs retries a commit that lost the race for its version. Incremental stages append one
  commit per batch of the size their caller chooses, so a killed job loses only its batches in flight.
* `compact()` (after an incremental stage) rewrites small files into large ones and vacuums files
  no version within the retention still needs.
* Every version stays readable until vacuumed (`read(..., version=N)`, `Store.at`); a store
  remembers the version it first read of each table (`versions_read`), so a job can record them.
* Every write is checked against the table's declared schema (`finner.schemas.TABLES`) before
  anything is committed; a wrong column fails with its name.
* A store written by the previous layout (`<table>/_CURRENT` and one folder per version) is refused
  until `python -m jobs.store migrate` converts it (`migrate`).
"""

from __future__ import annotations

import datetime
import json
import math
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable, WriterProperties, write_deltalake
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from deltalake.transaction import AddAction, CommitProperties, Transaction, create_table_with_add_actions

from finner.config import Config, help_text
from finner.errors import FinnerError
from finner.schemas import TABLES

TMP_PREFIX = "_tmp-"
MIGRATE_COMMAND = "python -m jobs.store migrate"
LEGACY_POINTER = "_CURRENT"  # the previous layout's per-table version pointer
LEGACY_PART_PREFIX = "part-"
S3_SCHEMES = ("s3", "s3a")
# delta-rs on S3: commit a version with a conditional put (If-None-Match), so two writers can
# never both create the same log entry; AWS S3, MinIO and R2 support it, no lock table needed.
S3_SAFE_COMMITS = {"aws_conditional_put": "etag"}
# Every write and compaction: zstd (smaller files than the default snappy), and row groups of
# ROW_GROUP_ROWS rows: delta-rs's parquet writer holds a row group in memory until it is full, and
# its default (about a million rows) held a whole large table, so a writer's memory grew with it.
ROW_GROUP_ROWS = 1 << 16
# Appends never conflict with one another, they only race for the next version number: with many
# concurrent appenders (jobs writing one table at once) delta-rs's default of 15 tries can run out.
APPEND_COMMIT_RETRIES = 100
# An overwrite's files end at about this size (delta-rs's own target is 100 MiB).
TARGET_FILE_BYTES = 128 << 20
WRITER = WriterProperties(compression="ZSTD", max_row_group_size=ROW_GROUP_ROWS)
# A filtered read keeps only the rows it selects, but pyarrow's default scan decodes up to 16
# batches of 4 files ahead of the filter (hundreds of MiB of a table of spans): filtered reads and
# spills scan `SCAN_ROWS` rows at a time with no read-ahead.
SCAN_ROWS = 8_192
BOUNDED_SCAN = {"batch_size": SCAN_ROWS, "batch_readahead": 1, "fragment_readahead": 1}
# Tuple filters, `[("model_version", "=", v)]`: a conjunction that delta-rs prunes files with (the
# log's statistics) and pyarrow turns into a row filter (`pq.filters_to_expression`).
Filters = list[tuple[str, str, Any]]


@dataclass(frozen=True)
class StoreConfig(Config):
    """How the store keeps old versions."""

    retention_hours: int = field(
        default=168,
        metadata=help_text("vacuum, run after an incremental stage, deletes data files no version of the last this-many hours needs; older versions stop being readable", at_least=0),
    )


def filesystem_of(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) of a local path or a URI (`s3://...`, `gs://...`): the one place that
    tells them apart."""
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), uri


def storage_options(root: str) -> dict[str, str]:
    """delta-rs storage options for a store root: the one place they are chosen (credentials come
    from the environment, as for pyarrow)."""
    scheme = root.split("://", 1)[0] if "://" in root else ""
    return dict(S3_SAFE_COMMITS) if scheme in S3_SCHEMES else {}


class SchemaError(FinnerError):
    """A batch does not fit its table's declared schema."""


class StoreError(FinnerError):
    """The store root or one of its tables cannot be used as it is."""


def conform(table: pa.Table, schema: pa.Schema, name: str) -> pa.Table:
    """Return `table` with exactly `schema`'s columns and types, or raise naming the bad column."""
    missing = [f.name for f in schema if f.name not in table.column_names]
    extra = [c for c in table.column_names if c not in schema.names]
    if missing or extra:
        raise SchemaError(f"table {name!r}: missing columns {missing}, unexpected columns {extra}")
    columns = []
    for field_ in schema:
        column = table.column(field_.name)
        try:
            column = column.cast(field_.type, safe=True) if column.type != field_.type else column
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as err:
            raise SchemaError(f"table {name!r}, column {field_.name!r}: cannot store {column.type} as {field_.type}: {err}") from err
        if not field_.nullable and column.null_count:
            first = pc.index(pc.is_null(column), True).as_py()
            raise SchemaError(f"table {name!r}, column {field_.name!r}: null at row {first} but the column is required")
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


class OrderedParts:
    """An overwrite's data files, written by pyarrow in the order its rows come: row groups of
    `ROW_GROUP_ROWS`, a new file once one passes `TARGET_FILE_BYTES`, named so that their names sort
    in that order. delta-rs's own writer spreads a stream of batches over one partition per CPU, so
    two writes of one stream kept their rows in different orders, and readers in table order (the
    training stream, a first-N selection) differed between two stores of one feed. `close` returns
    the Delta add actions with the statistics delta-rs writes for flat columns (row and null counts,
    min and max: what file pruning reads)."""

    def __init__(self, filesystem: pafs.FileSystem, directory: str, schema: pa.Schema) -> None:
        self._fs, self._dir, self.schema = filesystem, directory, delta_schema(schema)
        filesystem.create_dir(directory, recursive=True)
        self._prefix = uuid.uuid4().hex
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._written: list[str] = []
        self._actions: list[AddAction] = []
        self._stream: Any = None
        self._writer: pq.ParquetWriter | None = None
        self._stats: _FileStats | None = None
        self.rows = 0

    def add(self, table: pa.Table) -> None:
        self._pending.append(table.cast(self.schema))
        self._pending_rows += table.num_rows
        self.rows += table.num_rows
        while self._pending_rows >= ROW_GROUP_ROWS:
            self._write_row_group(ROW_GROUP_ROWS)

    def close(self) -> list[AddAction]:
        if self._pending_rows:
            self._write_row_group(self._pending_rows)
        self._close_file()
        return self._actions

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._stream.close()
        for path in self._written:
            self._fs.delete_file(path)

    def _write_row_group(self, rows: int) -> None:
        pending = pa.concat_tables(self._pending)
        group, rest = pending.slice(0, rows), pending.slice(rows)
        self._pending, self._pending_rows = ([rest] if rest.num_rows else []), rest.num_rows
        if self._writer is None:
            path = f"{self._dir}/part-{len(self._written):05d}-{self._prefix}.zstd.parquet"
            self._stream = self._fs.open_output_stream(path)
            self._written.append(path)
            self._writer = pq.ParquetWriter(self._stream, self.schema, compression="zstd", use_compliant_nested_type=False)  # as delta-rs writes lists
            self._stats = _FileStats(self.schema)
        self._writer.write_table(group, row_group_size=rows)
        self._stats.add(group)
        if self._stream.tell() >= TARGET_FILE_BYTES:
            self._close_file()

    def _close_file(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        size = self._stream.tell()
        self._stream.close()
        path = self._written[-1]
        self._actions.append(AddAction(path.rsplit("/", 1)[1], size, {}, int(time.time() * 1000), True, self._stats.json()))
        self._writer = self._stream = self._stats = None


class _FileStats:
    """A data file's Delta statistics, accumulated row group by row group."""

    def __init__(self, schema: pa.Schema) -> None:
        self._flat = [f.name for f in schema if _has_min_max(f.type)]
        self._rows = 0
        self._nulls = dict.fromkeys(self._flat, 0)
        self._min: dict[str, Any] = {}
        self._max: dict[str, Any] = {}

    def add(self, table: pa.Table) -> None:
        self._rows += table.num_rows
        for name in self._flat:
            self._nulls[name] += table.column(name).null_count
            low, high = pc.min_max(table.column(name)).values()
            if low.is_valid:
                low, high = low.as_py(), high.as_py()
                self._min[name] = low if name not in self._min else min(low, self._min[name])
                self._max[name] = high if name not in self._max else max(high, self._max[name])

    def json(self) -> str:
        return json.dumps(
            {
                "numRecords": self._rows,
                "minValues": {k: _stat_value(v) for k, v in self._min.items()},
                "maxValues": {k: _stat_value(v) for k, v in self._max.items()},
                "nullCount": self._nulls,
            }
        )


def delta_schema(schema: pa.Schema) -> pa.Schema:
    """`schema` as Delta Lake stores it: timestamps in microseconds (the only unit it has); readers
    get the declared schema back (`Store.dataset`)."""
    return pa.schema([f.with_type(pa.timestamp("us", f.type.tz)) if pa.types.is_timestamp(f.type) else f for f in schema])


def _has_min_max(type_: pa.DataType) -> bool:
    return pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_timestamp(type_) or pa.types.is_date(type_)


def _stat_value(value: Any) -> Any:
    """A min or max as the Delta log writes it: timestamps in RFC 3339 UTC, dates in ISO form."""
    if isinstance(value, datetime.datetime):
        return (value.astimezone(datetime.timezone.utc) if value.tzinfo else value).strftime("%Y-%m-%dT%H:%M:%S.%fZ" if value.tzinfo else "%Y-%m-%dT%H:%M:%S.%f")
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class Store:
    """Tables under one root. Cheap to construct and picklable, so Ray workers get their own.

    `pinned` maps a table to the version every read of it returns (time travel, see `at`)."""

    root: str
    config: StoreConfig = StoreConfig()
    pinned: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if "://" not in self.root:
            # Absolute before it is pickled: Ray workers run in other directories (a Ray Train
            # worker's is its run's artifact folder), where a relative root means another store.
            self.root = os.path.abspath(self.root)
            if os.path.isfile(self.root):
                raise StoreError(f"store {self.root} is a file; --store takes a directory (or a URI such as s3://bucket/finner)")
        self.root = self.root.rstrip("/")
        self._fs, self._base = filesystem_of(self.root)
        self._base = self._base.rstrip("/")
        self.storage_options = storage_options(self.root)
        self.versions_read: dict[str, int] = {}  # table -> the version this process first read of it

    def __getstate__(self) -> dict[str, Any]:
        return {"root": self.root, "config": self.config, "pinned": self.pinned}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.root, self.config, self.pinned = state["root"], state["config"], state["pinned"]
        self.__post_init__()

    def at(self, **versions: int | None) -> Store:
        """This store with reads of each named table pinned to that version (None: the latest)."""
        for name in versions:
            schema_of(name)
        pinned = Store(self.root, self.config, {**self.pinned, **{n: v for n, v in versions.items() if v is not None}})
        pinned.versions_read = self.versions_read  # one job, one record of what it read
        return pinned

    @property
    def filesystem(self) -> pafs.FileSystem:
        return self._fs

    # -- locations ---------------------------------------------------------------------------

    def table_dir(self, name: str) -> str:
        """The table's folder on `self.filesystem`."""
        schema_of(name)
        return f"{self._base}/{name}"

    def table_uri(self, name: str) -> str:
        """The table's location as delta-rs, duckdb and polars open it."""
        schema_of(name)
        return f"{self.root}/{name}"

    def _path(self, uri: str) -> str:
        """A data file's URI as delta-rs lists it -> its path on `self.filesystem`."""
        return uri.split("://", 1)[1] if "://" in uri else uri

    def _legacy(self, name: str) -> bool:
        return self._fs.get_file_info(f"{self.table_dir(name)}/{LEGACY_POINTER}").type == pafs.FileType.File

    def _refuse_legacy(self, name: str) -> None:
        """Called where a table has no Delta log: one of the previous layout is an error naming the fix."""
        if self._legacy(name):
            raise StoreError(
                f"table {name!r} in {self.root} is in the previous store layout ({LEGACY_POINTER}); "
                f"convert the store with `{MIGRATE_COMMAND} --store {self.root}`"
            )

    def delta(self, name: str, version: int | None = None) -> DeltaTable | None:
        """The table's Delta handle at `version` (default: its pinned version, else the latest),
        or None when the table was never written."""
        version = self.pinned.get(name) if version is None else version
        try:
            return DeltaTable(self.table_uri(name), version=version, storage_options=self.storage_options)
        except TableNotFoundError:
            self._refuse_legacy(name)
            return None
        except Exception as err:  # delta-rs reports a missing version as a generic DeltaError
            latest = self.version(name) if version is not None else None
            if latest is not None:
                raise StoreError(f"table {name!r} has no version {version} (latest: {latest}; older ones may be vacuumed)") from err
            raise

    def version(self, name: str) -> int | None:
        """The latest committed version of a table, or None when it was never written."""
        try:
            return DeltaTable(self.table_uri(name), storage_options=self.storage_options).version()
        except TableNotFoundError:
            self._refuse_legacy(name)
            return None

    def exists(self, name: str) -> bool:
        return self.delta(name) is not None

    def files(self, name: str, version: int | None = None, prune: Filters | None = None) -> list[str]:
        """The data files of a table's version (paths on `self.filesystem`), less those whose log
        statistics rule out every row `prune` wants."""
        table = self.delta(name, version)
        if table is None:
            return []
        self.versions_read.setdefault(name, table.version())
        return [self._path(uri) for uri in (table.file_uris(file_pruning_predicate=prune) if prune else table.file_uris())]

    # -- reading -----------------------------------------------------------------------------

    def dataset(self, name: str, version: int | None = None, prune: Filters | None = None) -> pads.Dataset:
        """A version of the table (its data files, `prune`d) as a pyarrow dataset with its declared schema."""
        return pads.dataset(self.files(name, version, prune), schema=schema_of(name), format="parquet", filesystem=self._fs)

    def read(self, name: str, columns: list[str] | None = None, filter: pads.Expression | None = None, version: int | None = None) -> pa.Table:
        """A committed version of the table (empty, with its schema, when never written); with a
        `filter`, only its rows are ever held (`BOUNDED_SCAN`)."""
        return self.dataset(name, version).to_table(columns=columns, filter=filter, **(BOUNDED_SCAN if filter is not None else {}))

    def ids(self, name: str, filter: pads.Expression | None = None, prune: Filters | None = None) -> set[str]:
        """The `id`s present in a table (optionally only rows matching `filter`), as a set in this
        process: for tables and callers of bounded size (the Ray stages stream theirs,
        `finner.pipeline.todo`). Only the `id` column and the filter's are read, and `prune` skips
        whole files by the log's statistics first."""
        return set(self.dataset(name, prune=prune).to_table(columns=["id"], filter=filter, **BOUNDED_SCAN).column("id").to_pylist())

    # -- writing -----------------------------------------------------------------------------

    def _refuse_pinned(self, name: str) -> None:
        """A table pinned for reading (`at`) is not written through this store: a write would start
        from the latest version while every read of it returns an older one."""
        if name in self.pinned:
            raise StoreError(f"{name}: this store reads version {self.pinned[name]} of it (Store.at); write through an unpinned Store")

    def write(self, name: str, data: pa.Table | Iterable[pa.Table]) -> int:
        """Replace a table with `data` (one table or a stream of batches) in one commit; returns
        the row count. Nothing is visible until the commit; readers keep their version."""
        self._refuse_pinned(name)
        self.delta(name)  # refuses a previous-layout table before anything is written beside it
        return self._overwrite(name, data)

    def _overwrite(self, name: str, data: pa.Table | Iterable[pa.Table]) -> int:
        schema = schema_of(name)
        parts = OrderedParts(self._fs, self.table_dir(name), schema)
        try:
            for batch in [data] if isinstance(data, pa.Table) else data:
                parts.add(conform(batch, schema, name))
            actions = parts.close()
        except BaseException:
            parts.abort()  # its files were never committed: delete them rather than wait for a vacuum
            raise
        uri, options = self.table_uri(name), self.storage_options
        if not DeltaTable.is_deltatable(uri, options):
            try:
                create_table_with_add_actions(uri, DeltaSchema.from_arrow(parts.schema), actions, mode="overwrite", storage_options=options)
                return parts.rows
            except Exception:
                if not DeltaTable.is_deltatable(uri, options):
                    raise
                # another writer created the table first: overwrite its version
        DeltaTable(uri, storage_options=options).create_write_transaction(actions, mode="overwrite", schema=parts.schema)  # another writer's commit in between: delta-rs retries
        return parts.rows

    def ensure(self, name: str) -> int:
        """Create the table, empty, if it does not exist, so concurrent appenders share one; its version."""
        self._refuse_pinned(name)
        table = self.delta(name)
        if table is None:
            try:
                write_deltalake(self.table_uri(name), schema_of(name).empty_table(), mode="ignore", storage_options=self.storage_options)
            except Exception:
                if self.version(name) is None:  # else another process created it first
                    raise
            table = self.delta(name)
        return table.version()

    def append(self, name: str, table: pa.Table, part: str | None = None) -> bool:
        """Add `table`'s rows to the table in one commit. A `part` names the rows: an append of a
        part already committed (a Ray retry of a finished batch) changes nothing. Returns whether
        it committed."""
        self._refuse_pinned(name)
        table = conform(table, schema_of(name), name)
        current = self.delta(name)
        if current is None:
            self.ensure(name)
            current = self.delta(name)
        if part is not None and current.transaction_version(part) is not None:
            return False
        write_deltalake(
            current,
            table,
            mode="append",
            schema_mode="merge",  # a column the declared schema gained since the table was made is added
            writer_properties=WRITER,
            commit_properties=CommitProperties(
                max_commit_retries=APPEND_COMMIT_RETRIES, app_transactions=[Transaction(app_id=part, version=0)] if part else None
            ),
        )
        return True

    def replace(self, name: str, table: pa.Table, keys: tuple[str, ...]) -> None:
        """Replace, in one commit, the rows whose `keys` columns equal those of a row of `table` by
        `table` (a re-run's results over its previous ones)."""
        self._refuse_pinned(name)
        table = conform(table, schema_of(name), name)
        if self.delta(name) is None:
            self.ensure(name)
        groups = table.select(list(keys)).group_by(list(keys)).aggregate([]).to_pylist()
        predicate = " OR ".join("(" + " AND ".join(_sql_equals(k, row[k]) for k in keys) + ")" for row in groups)
        write_deltalake(
            self.table_uri(name),
            table,
            mode="overwrite",
            predicate=predicate or "false",
            schema_mode="merge",
            storage_options=self.storage_options,
            writer_properties=WRITER,
        )

    def compact(self, name: str) -> dict[str, int]:
        """Rewrite the table's small files into large ones (a new version with the same rows),
        then delete the files no version within `config.retention_hours` references."""
        self._refuse_pinned(name)
        table = self.delta(name)
        nothing = {"files_added": 0, "files_removed": 0, "files_vacuumed": 0}
        if table is None:
            return nothing
        try:
            metrics = table.optimize.compact(writer_properties=WRITER)
        except CommitFailedError:  # another job compacted these files first: theirs stands
            return nothing
        vacuumed = table.vacuum(retention_hours=self.config.retention_hours, dry_run=False, enforce_retention_duration=False)
        return {"files_added": metrics["numFilesAdded"], "files_removed": metrics["numFilesRemoved"], "files_vacuumed": len(vacuumed)}

    # -- small documents (run summaries, cost figures) ---------------------------------------

    def _put_text(self, path: str, text: str) -> None:
        directory = path.rsplit("/", 1)[0]
        tmp = f"{directory}/{TMP_PREFIX}{uuid.uuid4().hex}"
        with self._fs.open_output_stream(tmp) as f:
            f.write(text.encode())
        self._fs.move(tmp, path)

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


def _sql_equals(column: str, value: Any) -> str:
    """`column = value` in delta-rs' SQL predicates (`IS NULL` for None, strings quoted)."""
    if value is None:
        return f"{column} IS NULL"
    if isinstance(value, str):
        return f"{column} = '{value.replace(chr(39), chr(39) * 2)}'"
    return f"{column} = {value!r}"


def schema_of(name: str) -> pa.Schema:
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; the store knows {sorted(TABLES)}") from None


def table_versions(store: Store) -> dict[str, int]:
    """The latest version of every table the store has."""
    return {name: v for name in TABLES if (v := store.version(name)) is not None}


# -- converting a store of the previous layout ---------------------------------------------------


def legacy_tables(store: Store) -> list[str]:
    """The tables of `store` still in the previous layout (a `_CURRENT` pointer, no Delta log)."""
    return [name for name in TABLES if store._legacy(name)]


def migrate(store: Store) -> dict[str, int]:
    """Convert every previous-layout table of `store` in place: its committed version's rows become
    version 0 of a Delta table in the same folder; only once that commit is done are the pointer and
    the version folders removed (a killed migration leaves them, and running it again finishes).
    Returns the rows of each converted table."""
    fs = store.filesystem
    converted = {}
    for name in legacy_tables(store):
        directory = store.table_dir(name)
        if not DeltaTable.is_deltatable(store.table_uri(name), store.storage_options):
            with fs.open_input_stream(f"{directory}/{LEGACY_POINTER}") as f:
                current = f.read().decode().strip()
            infos = fs.get_file_info(pafs.FileSelector(f"{directory}/{current}", allow_not_found=True)) if current else []
            parts = sorted(i.path for i in infos if i.is_file and i.base_name.startswith(LEGACY_PART_PREFIX) and i.base_name.endswith(".parquet"))
            old = pads.dataset(parts, schema=schema_of(name), format="parquet", filesystem=fs)
            converted[name] = store._overwrite(name, (pa.Table.from_batches([b]) for b in old.to_batches()))
        else:
            converted[name] = store.dataset(name).count_rows()  # committed by an earlier, killed migration
        fs.delete_file(f"{directory}/{LEGACY_POINTER}")
        for info in fs.get_file_info(pafs.FileSelector(directory)):
            if info.type == pafs.FileType.Directory and not info.base_name.startswith("_"):
                fs.delete_dir(info.path)  # a version folder
            elif info.is_file and info.base_name.startswith(TMP_PREFIX):
                fs.delete_file(info.path)  # a pointer the previous layer was killed writing
    return converted
