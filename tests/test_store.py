import os
import signal
import subprocess
import sys
import textwrap
import time

import pyarrow as pa
import pytest

from deltalake import DeltaTable

from finner import schemas
from finner.store import SchemaError, Store, StoreError
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


def test_a_streamed_write_keeps_its_rows_in_order_across_files(store, monkeypatch):
    """delta-rs's writer spread a stream's batches over one partition per CPU, in an order that
    depended on timing: readers in table order (the training stream) must get the stream's order."""
    import finner.store as store_module

    monkeypatch.setattr(store_module, "ROW_GROUP_ROWS", 64)
    monkeypatch.setattr(store_module, "TARGET_FILE_BYTES", 1)  # a new file after every row group
    batches = [headlines(37, start=37 * i) for i in range(20)]  # batches that straddle row groups
    assert store.write("headlines", iter(batches)) == 740
    expected = pa.concat_tables(batches)["id"].to_pylist()
    assert store.read("headlines")["id"].to_pylist() == expected
    files = store.files("headlines")
    assert len(files) == 12 and files == sorted(files)  # ceil(740 / 64) files, named in write order
    assert store.files("headlines", prune=[("id", "=", "h0")]) == files[:1]  # the log's min and max prune files


def test_a_failed_write_deletes_the_files_it_wrote(store):
    store.write("headlines", headlines(4))
    before = set(os.listdir(store.table_dir("headlines")))

    def batches():
        yield headlines(70_000, start=100)  # past one row group: a file is written before the failure
        raise RuntimeError("killed midway")

    with pytest.raises(RuntimeError):
        store.write("headlines", batches())
    assert set(os.listdir(store.table_dir("headlines"))) == before


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


def test_an_append_adds_a_column_the_declared_schema_gained(store):
    from deltalake import write_deltalake

    write_deltalake(store.table_uri("headlines"), headlines(2).drop_columns(["publisher"]))  # the table as an older schema made it
    store.append("headlines", headlines(1, start=2).set_column(4, "publisher", pa.array(["Benzinga"])))
    assert {r["id"]: r["publisher"] for r in store.read("headlines").to_pylist()} == {"h0": None, "h1": None, "h2": "Benzinga"}


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


def test_s3_roots_commit_with_conditional_puts():
    from finner.store import storage_options

    assert storage_options("s3://bucket/finner") == storage_options("s3a://bucket/finner") == {"aws_conditional_put": "etag"}
    assert storage_options("/data/finner") == storage_options("gs://bucket/finner") == {}


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


# -- real processes against one store ------------------------------------------------------------


def labels(ids: list[str], version: str = "v1", status: str = schemas.LABEL_OK) -> pa.Table:
    return pa.Table.from_pylist([{"id": i, "status": status, "result": [version], "label_version": version} for i in ids], schema=schemas.LLM_LABELS)


def python(script: str, **kwargs) -> subprocess.Popen:
    """A real process running `script` with the repo importable."""
    code = f"import sys; sys.path.insert(0, {str(REPO)!r})\n" + textwrap.dedent(script)
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, text=True, **kwargs)


def test_two_processes_appending_at_once_lose_no_row(store):
    store.ensure("llm_labels")
    script = """
        import sys
        from finner.store import Store
        from tests.test_store import labels
        store, who = Store(sys.argv[1]), sys.argv[2]
        print("ready", flush=True)
        sys.stdin.readline()  # both start appending at the same moment
        for batch in range(25):
            store.append("llm_labels", labels([f"{who}-{batch}-{row}" for row in range(20)]))
    """
    code = f"import sys; sys.path.insert(0, {str(REPO)!r})\n" + textwrap.dedent(script)
    procs = [subprocess.Popen([sys.executable, "-c", code, store.root, who], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for who in "ab"]
    assert [p.stdout.readline() for p in procs] == ["ready\n", "ready\n"]
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    ids = store.read("llm_labels", columns=["id"])["id"].to_pylist()
    assert len(ids) == len(set(ids)) == 2 * 25 * 20
    assert store.version("llm_labels") == 50  # the empty table, then one commit per batch
    retries = sum(c.get("operationMetrics", {}).get("num_retries", 0) for c in DeltaTable(store.table_uri("llm_labels")).history())
    print(f"commits that lost a race and were retried: {retries}")


def test_a_reader_sees_a_whole_version_while_another_process_overwrites(store):
    def spans(prefix: str, n: int) -> pa.Table:
        t = headlines(n)
        return pa.Table.from_pylist([{**r, "id": f"{prefix}{i}"} for i, r in enumerate(t.to_pylist())]).drop_columns(["publisher"]).cast(
            pa.schema([schemas.SPANS_TABLE.field(c) for c in ("id", "title", "date", "symbol")])
        )

    store.write("spans", pad_spans(spans("a", 300)))
    writer = python(
        f"""
        from finner.store import Store
        from tests.test_store import headlines, pad_spans, overwrite_forever
        overwrite_forever(Store({store.root!r}))
        """
    )
    try:
        seen = set()
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and len(seen) < 2:
            ids = store.read("spans", columns=["id"])["id"].to_pylist()
            prefixes = {i[0] for i in ids}
            assert len(prefixes) == 1 and len(ids) == (300 if prefixes == {"a"} else 500), f"a torn read: {len(ids)} rows of {prefixes}"
            if store.version("spans") > 2:
                seen |= prefixes
        assert seen == {"a", "b"}, "the writer should have committed both tables while the reader read"
    finally:
        writer.kill()
        writer.wait()


def pad_spans(table: pa.Table) -> pa.Table:
    for column in ("spans", "tokens", "token_spans", "not_found", "clusters"):
        table = table.append_column(column, pa.nulls(table.num_rows, schemas.SPANS_TABLE.field(column).type))
    return table


def overwrite_forever(store: Store) -> None:
    """The writer of the test above: `spans` replaced by 500 `b` rows, then 300 `a` rows, and again."""
    base = headlines(500).drop_columns(["publisher"])
    for round_ in range(10_000):
        prefix, n = ("b", 500) if round_ % 2 == 0 else ("a", 300)
        store.write("spans", pad_spans(base.slice(0, n).set_column(0, "id", pa.array([f"{prefix}{i}" for i in range(n)]))))


def test_a_job_killed_mid_append_leaves_whole_batches_and_the_rerun_resumes(store):
    store.write("headlines", headlines(400))
    job = """
        import sys, time
        import pyarrow.compute as pc
        from finner.store import Store
        from tests.test_store import labels
        store, pause = Store(sys.argv[1]), float(sys.argv[2])
        done = store.ids("llm_labels", filter=pc.field("status") == "ok", prune=[("status", "=", "ok")])
        print("resumed after", len(done), flush=True)
        ids = [i for i in store.read("headlines", columns=["id"])["id"].to_pylist() if i not in done]
        for start in range(0, len(ids), 40):
            store.append("llm_labels", labels(ids[start : start + 40]))
            print("committed", flush=True)
            time.sleep(pause)
    """
    code = f"import sys; sys.path.insert(0, {str(REPO)!r})\n" + textwrap.dedent(job)
    proc = subprocess.Popen([sys.executable, "-c", code, store.root, "0.3"], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "resumed after 0\n"
    for _ in range(3):
        assert proc.stdout.readline() == "committed\n"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    committed = store.read("llm_labels", columns=["id"])["id"].to_pylist()
    assert len(committed) % 40 == 0 and 120 <= len(committed) < 400, "whole batches only"
    rerun = subprocess.run([sys.executable, "-c", code, store.root, "0"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.startswith(f"resumed after {len(committed)}\n")
    ids = store.read("llm_labels", columns=["id"])["id"].to_pylist()
    assert sorted(ids) == sorted(f"h{i}" for i in range(400))  # nothing twice, nothing missing


def test_time_travel_returns_the_labels_before_a_relabel(store):
    store.append("llm_labels", labels(["h0", "h1"], version="v1"))
    before = store.version("llm_labels")
    store.append("llm_labels", labels(["h0", "h1"], version="v2"))
    assert set(store.read("llm_labels")["label_version"].to_pylist()) == {"v1", "v2"}
    assert set(store.read("llm_labels", version=before)["label_version"].to_pylist()) == {"v1"}
    pinned = Store(store.root).at(llm_labels=before)
    assert pinned.read("llm_labels").num_rows == 2 and pinned.versions_read == {"llm_labels": before}
    for write in (
        lambda: pinned.append("llm_labels", labels(["h2"])),
        lambda: pinned.write("llm_labels", labels(["h2"])),
        lambda: pinned.replace("llm_labels", labels(["h0"]), keys=("id",)),
        lambda: pinned.compact("llm_labels"),
        lambda: pinned.ensure("llm_labels"),
    ):
        with pytest.raises(StoreError, match=f"^llm_labels: this store reads version {before} of it"):
            write()
    assert store.read("llm_labels").num_rows == 4  # nothing written
    pinned.append("headlines", headlines(1))  # the tables it does not pin are written as usual
    with pytest.raises(StoreError, match="has no version 99"):
        store.read("llm_labels", version=99)


def test_other_engines_read_the_tables(store):
    import duckdb
    import polars as pl

    store.write("headlines", headlines(5))
    store.append("headlines", headlines(2, start=5))
    frame = pl.read_delta(store.table_uri("headlines"))
    assert frame.height == 7 and sorted(frame["id"].to_list()) == sorted(f"h{i}" for i in range(7))
    assert pl.read_delta(store.table_uri("headlines"), version=0).height == 5
    # duckdb's own delta_scan needs its `delta` extension (downloaded on first use); here it scans the
    # table's Arrow dataset, which delta-rs builds from the log
    dataset = DeltaTable(store.table_uri("headlines")).to_pyarrow_dataset()  # noqa: F841 (duckdb reads it by name)
    assert duckdb.sql("select count(*), count(distinct id) from dataset where symbol = 'AAPL'").fetchall() == [(7, 7)]


# -- the previous layout and bad roots -------------------------------------------------------------


def write_previous_layout(root, tables: dict[str, list[pa.Table]]) -> None:
    """A store as the previous store layer left it: `<table>/_CURRENT` naming `<table>/<version>/`,
    one parquet part per batch, and a stale version folder beside it."""
    import pyarrow.parquet as pq

    for name, parts in tables.items():
        directory = root / name
        (directory / "v-old").mkdir(parents=True)
        (directory / "v-new").mkdir()
        for i, part in enumerate(parts):
            pq.write_table(part, directory / "v-new" / f"part-{i:06d}.parquet")
        (directory / "v-old" / "part-000000.parquet").write_bytes(b"stale")
        (directory / "_tmp-0123abcd").write_text("v-old")  # a pointer write that was killed
        (directory / "_CURRENT").write_text("v-new")


def test_a_previous_layout_store_is_refused_then_migrated(tmp_path):
    root = tmp_path / "old"
    write_previous_layout(root, {"headlines": [headlines(3), headlines(2, start=3)], "llm_labels": [labels(["h0"])]})
    refused = run_module("jobs.store", "versions", "--store", str(root))
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"error: table 'headlines' in {root} is in the previous store layout (_CURRENT); convert the store with `python -m jobs.store migrate --store {root}`"
    ]

    migrated = run_module("jobs.store", "migrate", "--store", str(root))
    assert migrated.returncode == 0, migrated.stderr
    assert "headlines: 5 rows, now a Delta table at version 0" in migrated.stdout
    assert sorted(os.listdir(root / "headlines"))[0] == "_delta_log" and not (root / "headlines" / "_CURRENT").exists()
    assert not any(entry.startswith("v-") for entry in os.listdir(root / "headlines"))
    assert DeltaTable(str(root / "headlines")).to_pyarrow_table().num_rows == 5
    assert Store(str(root)).ids("llm_labels") == {"h0"}
    again = run_module("jobs.store", "migrate", "--store", str(root))
    assert again.returncode == 0 and "nothing to migrate" in again.stdout


def test_a_migration_killed_after_its_commit_finishes_on_the_next_run(tmp_path):
    from finner.store import LEGACY_POINTER, migrate

    root = tmp_path / "old"
    write_previous_layout(root, {"headlines": [headlines(3)]})
    store = Store(str(root))
    store._overwrite("headlines", headlines(3))  # what the killed migration had committed
    assert (root / "headlines" / LEGACY_POINTER).exists()
    assert migrate(store) == {"headlines": 3}
    assert sorted(os.listdir(root / "headlines")) == ["_delta_log", *sorted(f for f in os.listdir(root / "headlines") if f.startswith("part-"))]


def test_a_store_that_is_a_file_is_one_error_line(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a store")
    done = run_module("jobs.curate", "--store", str(path))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: store {path} is a file; --store takes a directory (or a URI such as s3://bucket/finner)"]


@pytest.mark.slow
def test_a_small_pipeline_store_is_delta_tables_with_the_rows_the_jobs_reported(tmp_path, real_headlines_path):
    """ingest -> label (built-in gazetteer endpoint, real local Ray) -> curate, as a user runs them."""
    import json
    import re

    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    real = pq.read_table(real_headlines_path)
    real = real.filter(pc.invert(pc.starts_with(real["date"], "2009")))  # 2009 is in no split
    feed = tmp_path / "feed.parquet"
    pq.write_table(real.take(list(range(0, real.num_rows, real.num_rows // 120))[:120]), feed)
    root = tmp_path / "store"
    ingest = run_module("jobs.ingest", "--store", str(root), "--path", str(feed), "--quiet")
    assert ingest.returncode == 0, ingest.stderr
    written, rejected = map(int, re.search(r"written (\d+), rejected (\d+)", ingest.stdout).groups())
    label = run_module("jobs.label", "--store", str(root), "--test-endpoint", "--batch-rows", "16", "--commit-rows", "16", "--quiet", "--retention-hours", "0")
    assert label.returncode == 0, label.stderr
    labelled = int(re.search(r"labeled (\d+) headlines", label.stdout).group(1))
    curate = run_module("jobs.curate", "--store", str(root), "--quiet", "--fraction", "1")
    assert curate.returncode == 0, curate.stderr
    curated = int(re.search(r"^headlines: (\d+);", curate.stdout, re.MULTILINE).group(1))

    counts = {name: DeltaTable(str(root / name)).to_pyarrow_table().num_rows for name in ("headlines", "rejects", "llm_labels", "spans", "sample")}
    assert counts["headlines"] == written == curated == labelled and counts["rejects"] == rejected
    assert counts["llm_labels"] == labelled and 0 < counts["spans"] <= labelled and counts["sample"] > 0
    # the label stage appended one commit per batch, then compacted them into one file and vacuumed
    # the small ones (--retention-hours 0)
    llm_labels = DeltaTable(str(root / "llm_labels"))
    assert len(llm_labels.file_uris()) == 1 and llm_labels.version() >= labelled // 16 + 1
    assert len([f for f in os.listdir(root / "llm_labels") if f.endswith(".parquet")]) == 1
    # each stage's run records the versions it read and the ones it committed
    record = json.loads((root / "_meta" / "curate_versions.json").read_text())
    assert record["read"] == {"headlines": 0, "llm_labels": llm_labels.version()}
    assert record["wrote"] == {"spans": {"from": None, "to": 0}, "sample": {"from": None, "to": 0}}
    label_record = json.loads((root / "_meta" / "label_versions.json").read_text())
    assert label_record["wrote"]["llm_labels"] == {"from": None, "to": llm_labels.version()}
