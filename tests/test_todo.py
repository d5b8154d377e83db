"""The resume rule of the Ray stages on a real local Ray: the headlines left stream from the store's
files, the done ids are dropped in Ray tasks, the counts are exact (a done row of a headline the
table no longer has counts for nothing), and a limit takes the first headlines left in table order."""

from __future__ import annotations

import os

import pytest

from finner import schemas
from finner.errors import FinnerError
from finner.models.base import weights_digest
from finner.pipeline import cli
from finner.pipeline.todo import DoneRule, count_done, drop_done, todo_dataset
from finner.pipeline.worker import in_worker
from tests.test_store import headlines, labels


@pytest.fixture(scope="module")
def ray_local():
    import ray

    cli.init_ray()
    yield
    ray.shutdown()


def test_the_tasks_drop_and_count_the_ids_done_at_the_rules_version(store):
    """The Ray tasks' bodies, called as Ray Data calls them: the rule reads the done table as it
    was when the job started, whatever the job appends since."""
    store.append("llm_labels", labels(["h1", "h3"]))
    store.append("llm_labels", labels(["h2"], status=schemas.LABEL_FAILED))
    rule = DoneRule.at_start(store, "llm_labels", [("status", "=", schemas.LABEL_OK)])
    store.append("llm_labels", labels(["h4"]))
    batch = headlines(6)
    assert drop_done(batch, store.root, rule)["id"].to_pylist() == ["h0", "h2", "h4", "h5"]
    assert count_done(batch, store.root, rule).to_pylist() == [{"done": 2}]
    never = DoneRule.at_start(store, "predictions", [("model_version", "=", "m")])
    assert never.version is None and drop_done(batch, store.root, never).num_rows == 6


def ids_of(dataset) -> list[str]:
    return [i for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow") for i in batch["id"].to_pylist()]


@pytest.mark.slow
def test_todo_streams_what_is_left_with_exact_counts_and_table_order(store, ray_local):
    store.write("headlines", headlines(40))
    for start in (40, 80):  # three data files
        store.append("headlines", headlines(40, start))
    assert len(store.files("headlines")) == 3
    order = store.read("headlines", columns=["id"])["id"].to_pylist()
    done = [f"h{i}" for i in range(0, 120, 3)]
    store.append("llm_labels", labels(done + ["gone1", "gone2"]))  # two ids the headlines no longer have
    store.append("llm_labels", labels(["h1", "h2"], status=schemas.LABEL_FAILED))  # not done: failed
    store.append("llm_labels", labels(["h4"], version="v2"))  # done under another filter only
    rule = DoneRule.at_start(store, "llm_labels", [("status", "=", schemas.LABEL_OK), ("label_version", "=", "v1")])
    store.append("llm_labels", labels(["h5"]))  # after the job started: not part of its rule
    left = [i for i in order if i not in set(done)]

    todo = todo_dataset(store, rule, ("id", "title"))
    assert (todo.rows, todo.done) == (80, 40)
    assert sorted(ids_of(todo.dataset)) == sorted(left)
    assert todo.dataset.columns() == ["id", "title"]

    first = todo_dataset(store, rule, ("id",), limit=25)
    assert (first.rows, first.done) == (25, 40) and ids_of(first.dataset) == left[:25]
    assert ids_of(todo_dataset(store, rule, ("id",), ordered=True).dataset) == left
    assert todo_dataset(store, rule, ("id",), limit=500).rows == 80

    nothing_done = todo_dataset(store, DoneRule.at_start(store, "predictions", [("model_version", "=", "m")]), ("id",))
    assert (nothing_done.rows, nothing_done.done) == (120, 0)


def test_work_handed_to_a_worker_runs_in_a_process_of_its_own_and_its_error_comes_back_as_itself(store, tmp_path, ray_local):
    """The stages' compactions and the score job's ticker check run this way, so that the driver's
    memory never holds what they allocate."""
    pids = [in_worker(os.getpid) for _ in range(2)]
    assert os.getpid() not in pids and pids[0] != pids[1]  # each call's worker exits after it
    for start in (0, 10, 20):
        store.append("headlines", headlines(10, start))
    assert in_worker(store.compact, "headlines")["files_removed"] == 3
    assert sorted(store.read("headlines")["id"].to_pylist()) == sorted(f"h{i}" for i in range(30))
    with pytest.raises(FinnerError, match="no weights"):
        in_worker(weights_digest, str(tmp_path))  # a directory without a checkpoint
