import os
import signal
import subprocess
import sys
import textwrap

import pyarrow as pa
import pytest

from deltalake import DeltaTable

from finner import schemas
from finner.store import SchemaError, Store
from tests.conftest import REPO, run_module


def headlines(n: int, start: int = 0) -> pa.Table:
    import datetime as dt

    day = dt.datetime(2015, 1, 1, tzinfo=dt.timezone.utc)
    return pa.Table.from_pylist(
        [{"id": f"h{i}", "title": f"Headline {i}", "date": day, "symbol": "AAPL", "publisher": None} for i in range(start, start + n)],
        schema=schemas.HEADLINES,
    )


def test_never_written_table_reads_empty_with_its_schema(store):
    assert not store.exists("headlines")
    table = store.read("headlines")
    assert table.num_rows == 0 and table.schema == schemas.HEADLINES


def test_write_then_read_round_trips(store):
    assert store.write("headlines", [headlines(3), headlines(2, start=3)]) == 5
    assert sorted(store.read("headlines")["id"].to_pylist()) == ["h0", "h1", "h2", "h3", "h4"]
    assert store.ids("headlines") == {f"h{i}" for i in range(5)}


def test_write_replaces_the_table_in_one_commit_and_keeps_the_old_version(store):
    store.write("headlines", headlines(5))
    store.write("headlines", headlines(2, start=10))
    assert sorted(store.read("headlines")["id"].to_pylist()) == ["h10", "h11"]
    assert store.version("headlines") == 1
    assert sorted(store.read("headlines", version=0)["id"].to_pylist()) == [f"h{i}" for i in range(5)]
    assert DeltaTable(store.table_uri("headlines")).version() == 1


def test_missing_column_is_named(store):
    with pytest.raises(SchemaError, match=r"missing columns \['publisher'\]"):
        store.write("headlines", headlines(1).drop_columns(["publisher"]))


def test_extra_column_is_named(store):
    with pytest.raises(SchemaError, match=r"unexpected columns \['oops'\]"):
        store.write("headlines", headlines(1).append_column("oops", pa.array([1])))


def test_wrong_type_is_named(store):
    bad = headlines(1).set_column(2, "date", pa.array(["not a date"]))
    with pytest.raises(SchemaError, match="column 'date'"):
        store.write("headlines", bad)


def test_null_in_required_column_names_the_row(store):
    table = headlines(3)
    ids = pa.array(["a", None, "c"])
    with pytest.raises(SchemaError, match="column 'id': null at row 1"):
        store.write("headlines", table.set_column(0, pa.field("id", pa.string()), ids))


def test_unknown_table_is_refused(store):
    with pytest.raises(KeyError, match="unknown table 'headline'"):
        store.read("headline")


def test_failed_stream_leaves_previous_table(store):
    store.write("headlines", headlines(4))

    def batches():
        yield headlines(2, start=100)
        raise RuntimeError("killed midway")

    with pytest.raises(RuntimeError):
        store.write("headlines", batches())
    assert sorted(store.read("headlines")["id"].to_pylist()) == ["h0", "h1", "h2", "h3"]


def test_sigkill_during_write_leaves_previous_table(tmp_path):
    """A real process killed (SIGKILL, no cleanup) while streaming a new version."""
    root = str(tmp_path / "store")
    Store(root).write("headlines", headlines(4))
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from tests.test_store import headlines
        from finner.store import Store
        def batches():
            for i in range(1000):
                yield headlines(50, start=1000 + 50 * i)
                print("part", i, flush=True)
                time.sleep(0.05)
        Store({root!r}).write("headlines", batches())
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    for _ in range(3):
        assert proc.stdout.readline().startswith("part")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    table = Store(root).read("headlines")
    assert sorted(table["id"].to_pylist()) == ["h0", "h1", "h2", "h3"]


def test_append_commits_and_ignores_unreferenced_files(store):
    assert store.append("headlines", headlines(2), part="a")
    assert store.append("headlines", headlines(2, start=2), part="b")
    with open(os.path.join(store.table_dir("headlines"), "part-deadbeef.parquet"), "wb") as f:
        f.write(b"PAR1 half a file")  # what a writer killed mid-file leaves behind
    assert store.ids("headlines") == {"h0", "h1", "h2", "h3"}
    assert not store.append("headlines", headlines(1, start=9), part="a")  # a retry of a committed part
    assert store.ids("headlines") == {"h0", "h1", "h2", "h3"}
    assert store.append("headlines", headlines(1, start=9))


def test_replace_swaps_the_rows_of_a_key_in_one_commit(store):
    def metrics(model: str, setting: str | None, f1: float) -> pa.Table:
        return pa.Table.from_pylist([{"stage": "evaluate", "model": model, "setting": setting, "f1": f1}], schema=schemas.METRICS)

    store.replace("metrics", pa.concat_tables([metrics("gliner", None, 0.5), metrics("spacy", "it's", 0.1)]), keys=schemas.METRICS_KEY)
    store.replace("metrics", metrics("gliner", None, 0.7), keys=schemas.METRICS_KEY)
    rows = {(r["model"], r["setting"]): r["f1"] for r in store.read("metrics").to_pylist()}
    assert rows == {("gliner", None): 0.7, ("spacy", "it's"): 0.1}
    assert store.read("metrics").num_rows == 2


def test_compact_keeps_the_rows_in_fewer_files(store):
    for i in range(4):
        store.append("headlines", headlines(2, start=2 * i))
    before = store.version("headlines")
    done = store.compact("headlines")
    assert (done["files_removed"], done["files_added"]) == (4, 1) and len(store.files("headlines")) == 1
    assert store.ids("headlines") == {f"h{i}" for i in range(8)}
    assert store.read("headlines", version=before).num_rows == 8  # within the retention: still readable


def test_uri_root_works_unchanged(tmp_path):
    store = Store(f"file://{tmp_path}/uri-store")
    store.write("headlines", headlines(3))
    store.append("headlines", headlines(1, start=3))
    assert store.read("headlines").num_rows == 4
    assert DeltaTable(f"{tmp_path}/uri-store/headlines").version() == 1
    assert store.artifact("models", "x.bin").startswith("file://")


def test_json_documents(store):
    assert store.get_json("label-cost") is None
    store.put_json("label-cost", {"usd": 1.5})
    assert store.get_json("label-cost") == {"usd": 1.5}


def test_store_pickles_for_ray_workers(store):
    import pickle

    store.write("headlines", headlines(2))
    clone = pickle.loads(pickle.dumps(store))
    assert clone.ids("headlines") == {"h0", "h1"}


def test_a_relative_root_means_the_same_store_in_another_directory(tmp_path, monkeypatch):
    """Ray workers unpickle the store in their own working directory."""
    import pickle

    monkeypatch.chdir(tmp_path)
    store = Store("rel-store")
    store.put_json("k", {"v": 1})
    monkeypatch.chdir("/")
    assert pickle.loads(pickle.dumps(store)).get_json("k") == {"v": 1}
