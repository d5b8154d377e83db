"""The resume rule of the incremental Ray stages (label, score) as a Ray Data stream: the headlines a
stage has not done yet, without the driver ever holding a headline row or id.

* **Input**: the data files of the `headlines` version the job starts on (`Store.files`), read by
  Ray Data read tasks (`ray.data.read_parquet` on the store's filesystem, so a local root and
  `s3://` read alike).
* **Done**: a headline is done when `DoneRule.table`, at the version the job started on, has a
  row with its id matching `DoneRule.filter` (delta-rs prunes files by the log's statistics, then
  pyarrow filters rows). `map_batches` tasks drop the done rows; each worker process loads that id
  set once (`done_ids`, cached), so it lives in the workers, never in the driver. The stage's own
  appends land in later versions and change nothing mid-run.
* **Counts**: how many are done (and so how many are left, for the summary and the progress bar)
  comes from one streamed pass of the same tasks over the `id` column, summed, before the stage runs.
* **Order**: with a `limit`, or `ordered`, the stream keeps the order of Ray Data's read units
  (its `preserve_order`), and a `limit` takes the first `limit` headlines left in that order: the
  same on every run of the same table version. That is table order (files as the Delta log lists
  them, rows within a file in order) while the columns read fit one read unit (Ray Data packs row
  groups into units of a set uncompressed size, `RAY_DATA_PARQUET_BIN_PACKING_BYTES`); past that,
  Ray Data's packing decides how units follow each other. Otherwise blocks reach the stage as their
  read tasks finish.
* **CPUs**: read and filter tasks reserve `READ_TASK_CPUS` (they are fused into one task), so they
  still run beside CPU actors that hold every other CPU (else a job whose actors hold the CPUs
  would wait forever for its own input), and at most `READ_TASKS` run at once, since every one of
  their processes holds its own copy of the done-id set. The cut into batches (`in_batches`) is
  the exception: see there.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from finner.errors import FinnerError
from finner.store import BOUNDED_SCAN, Filters, Store

READ_TASK_CPUS = 0.1
READ_TASKS = 4
# A writing task appends a few finished batches to the store in one commit, a little I/O: with a
# whole CPU it would take turns with the stage's other tasks in the CPUs the actors leave. One runs
# at a time (a job's commits never race each other for the next version: on 2 CPUs Ray ran 14 at
# once, and at 900k headlines one of them lost the race 100 times).
WRITE_TASK_CPUS = 0.1
WRITE_TASKS = 1


def write_task_options() -> dict[str, Any]:
    """`map_batches` options of a stage's writing tasks (label and score)."""
    import ray

    return {"num_cpus": WRITE_TASK_CPUS, "compute": ray.data.TaskPoolStrategy(size=WRITE_TASKS)}


@dataclass(frozen=True)
class DoneRule:
    """The headlines a stage counts as done: those with a row matching `filter` in `table` at
    `version` (None: the table did not exist when the job started, so none is done). Hashable: it
    keys each worker's cache of the done ids."""

    table: str
    filter: tuple[tuple[str, str, Any], ...]
    version: int | None

    @classmethod
    def at_start(cls, store: Store, table: str, filter: Filters) -> DoneRule:
        """The rule for `table` at its latest version now (the version the job starts on)."""
        return cls(table, tuple(tuple(condition) for condition in filter), store.version(table))


@functools.lru_cache(maxsize=4)
def done_ids(root: str, rule: DoneRule) -> pa.Array:
    """The ids `rule` counts as done, read once per worker process: every batch of a job asks for
    the same set. Only the `id` column and the filter's are read."""
    if rule.version is None:
        return pa.array([], pa.string())
    filters = list(rule.filter)
    dataset = Store(root).dataset(rule.table, version=rule.version, prune=filters)
    return dataset.to_table(columns=["id"], filter=pq.filters_to_expression(filters), **BOUNDED_SCAN)["id"].combine_chunks()


def is_done(ids: pa.Array | pa.ChunkedArray, root: str, rule: DoneRule) -> pa.Array:
    """Per id: whether `rule` counts it as done."""
    return pc.is_in(ids, value_set=done_ids(root, rule))


def drop_done(batch: pa.Table, root: str, rule: DoneRule) -> pa.Table:
    """Ray Data task: the rows of `batch` not done yet."""
    return batch.filter(pc.invert(is_done(batch["id"], root, rule)))


def count_done(batch: pa.Table, root: str, rule: DoneRule) -> pa.Table:
    """Ray Data task: one row, how many of `batch`'s headlines are done."""
    return pa.table({"done": pa.array([pc.sum(is_done(batch["id"], root, rule).cast(pa.int64())).as_py() or 0], pa.int64())})


@dataclass(frozen=True)
class Todo:
    """What a stage has left: a Ray Dataset of `columns` of the headlines not done, and counts."""

    dataset: Any  # ray.data.Dataset, streamed when the stage iterates it
    rows: int  # rows the dataset yields (`limit` applied)
    done: int  # headlines already done


def todo_dataset(store: Store, rule: DoneRule, columns: tuple[str, ...], limit: int = 0, ordered: bool = False) -> Todo:
    """`columns` of the headlines `rule` does not count as done, as a Ray Dataset (see the module
    docstring for the order, the counts and the tasks' CPUs); at most `limit` (0: all)."""
    import ray

    if not store.exists("headlines"):
        raise FinnerError("the store has no headlines table: run `python -m jobs.ingest` first")
    snapshot = store.dataset("headlines")  # one version's files
    total = snapshot.count_rows()  # from the files' footers: no row is read
    if not total:
        return Todo(ray.data.from_arrow(snapshot.to_table(columns=list(columns))), 0, 0)
    tasks = {"num_cpus": READ_TASK_CPUS, "concurrency": READ_TASKS}
    task_args = {"fn_kwargs": {"root": store.root, "rule": rule}, "batch_size": None, "batch_format": "pyarrow", **tasks}

    def read(names: list[str]) -> Any:
        return ray.data.read_parquet(snapshot.files, filesystem=store.filesystem, partitioning=None, **tasks).select_columns(names)

    done = 0
    if rule.version is not None:
        done = int(read(["id"]).map_batches(count_done, **task_args).sum("done") or 0)
    rows = total - done if not limit else min(limit, total - done)
    dataset = read(list(columns))
    if limit or ordered:
        dataset.context.execution_options.preserve_order = True  # this dataset's own context, not the process's
    dataset = dataset.map_batches(drop_done, **task_args)
    return Todo(dataset.limit(limit) if limit else dataset, rows, done)


def in_batches(todo: Todo, rows: int) -> Any:
    """`todo`'s stream cut into blocks of `rows` headlines (the last one shorter): a read block holds
    up to a whole file, and an actor task takes whole blocks and hands its results on only when it
    ends, so without the cut one task would score or label a file before anything is committed or
    counted. Ray Data's streaming repartition cuts them; its tasks take one CPU each (it takes no
    resource arguments), which leaves a CPU actor pool one CPU short of the cluster's to run them.
    Ray keeps a block under its inline size (100 KiB) in the memory of the process that owns it,
    the driver, not in the object store: where blocks queue up in front of slow actors, `rows`
    should make blocks larger than that."""
    return todo.dataset.repartition(target_num_rows_per_block=rows, strict=True)
