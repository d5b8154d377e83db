import os
import signal
import subprocess
import sys
import textwrap

import pyarrow as pa
import pytest

from finner import schemas
from finner.store import SchemaError, Store


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


def test_write_replaces_previous_version(store):
    store.write("headlines", headlines(5))
    store.write("headlines", headlines(2, start=10))
    assert sorted(store.read("headlines")["id"].to_pylist()) == ["h10", "h11"]
    versions = [d for d in os.listdir(store.table_dir("headlines")) if d.startswith("v-")]
    assert len(versions) == 1, "old versions are removed after commit"


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
        sys.path.insert(0, {os.getcwd()!r})
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


def test_append_adds_atomic_parts_and_ignores_temp_files(store):
    store.append("headlines", headlines(2), part="a")
    store.append("headlines", headlines(2, start=2), part="b")
    directory = os.path.join(store.table_dir("headlines"), store.version("headlines"))
    with open(os.path.join(directory, "_tmp-deadbeef.parquet"), "wb") as f:
        f.write(b"PAR1 half a file")  # what a writer killed mid-file leaves behind
    assert store.ids("headlines") == {"h0", "h1", "h2", "h3"}
    store.append("headlines", headlines(1, start=9), part="a")  # same part name: replaced
    assert store.ids("headlines") == {"h2", "h3", "h9"}


def test_uri_root_works_unchanged(tmp_path):
    store = Store(f"file://{tmp_path}/uri-store")
    store.write("headlines", headlines(3))
    store.append("headlines", headlines(1, start=3))
    assert store.read("headlines").num_rows == 4
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
