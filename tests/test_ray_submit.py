"""`ray job submit` against a real local Ray head, exactly as a user runs the jobs on a cluster."""

from __future__ import annotations

import psutil
import pyarrow.compute as pc
import pytest

from finner.source import SourceConfig, ingest
from finner.store import Store
from tests.conftest import run_module

pytestmark = pytest.mark.slow


def test_ingest_job_submitted_to_ray_writes_real_headlines(ray_cluster, real_headlines_path, tmp_path):
    store_root = tmp_path / "store"
    run = ray_cluster.run(
        "jobs.ingest", "--store", str(store_root), "--path", str(real_headlines_path), "--quiet",
        runtime_env="runtime_env/curate.yaml",
    )  # fmt: skip
    assert run.status == "SUCCEEDED", run.logs
    assert "source: read 16553," in run.logs

    headlines = Store(str(store_root)).read("headlines").sort_by("id")
    assert headlines.num_rows > 16_000
    assert pc.count_distinct(headlines["id"]).as_py() == headlines.num_rows

    # The job on the cluster wrote exactly what the same stage writes in-process.
    local = Store(str(tmp_path / "local"))
    ingest(SourceConfig(path=str(real_headlines_path)), local, progress=False)
    assert headlines.equals(local.read("headlines").sort_by("id"))


def test_store_location_forwarded_from_the_submitting_shell(ray_cluster, real_headlines_path, tmp_path):
    # No --store flag: the job finds its store in $FINNER_STORE, forwarded the documented way
    # (`--runtime-env-json "$(python -m finner.pipeline.runtime_env FILE)"`).
    store_root = tmp_path / "from-env"
    run = ray_cluster.run(
        "jobs.ingest", "--path", str(real_headlines_path), "--limit", "300", "--quiet",
        runtime_env="runtime_env/curate.yaml", env_vars={"FINNER_STORE": str(store_root)},
    )  # fmt: skip
    assert run.status == "SUCCEEDED", run.logs
    assert Store(str(store_root)).read("headlines").num_rows > 250


def test_gpu_check_reports_where_its_actors_ran(ray_cluster, real_headlines_path, tmp_path):
    store = Store(str(tmp_path / "store"))
    ingest(SourceConfig(path=str(real_headlines_path), limit=500), store, progress=False)
    chars = pc.sum(pc.utf8_length(store.read("headlines")["title"])).as_py()
    run = ray_cluster.run("finner.pipeline.gpu_check", "--store", store.root, "--gpus-per-actor", "0", runtime_env="runtime_env/score.yaml")
    assert run.status == "SUCCEEDED", run.logs
    (head,) = [n["node_id"] for n in ray_cluster.nodes() if n["state"] == "ALIVE"]
    assert f"gpu_check: node {head} gpu_ids [] device cpu: 500 headlines, {chars} chars" in run.logs

    strict = ray_cluster.run("finner.pipeline.gpu_check", "--store", store.root, "--gpus-per-actor", "0", "--require-cuda", runtime_env="runtime_env/score.yaml")
    assert strict.status == "FAILED" and f"error: no CUDA device in the actors on node(s) {head}" in strict.logs


def test_failing_job_reports_failed_with_one_error_line(ray_cluster, tmp_path):
    run = ray_cluster.run("jobs.ingest", "--store", str(tmp_path / "s"), "--path", str(tmp_path / "missing.parquet"), runtime_env="runtime_env/curate.yaml")
    assert run.status == "FAILED"
    assert "error: " in run.logs and "missing.parquet" in run.logs


def test_stop_job_ends_the_driver_process(ray_cluster, tmp_path):
    # A driver that never finishes by itself: a static file server on loopback, found by its directory.
    job = ray_cluster.submit("http.server", "0", "--bind", "127.0.0.1", "--directory", str(tmp_path))
    ray_cluster.wait_for_log(job, "Serving HTTP on 127.0.0.1", timeout=120)
    (driver,) = [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path) in (p.info["cmdline"] or [])]
    assert ray_cluster.stop_job(job) == "STOPPED"
    driver.wait(timeout=30)  # raises psutil.TimeoutExpired if the driver survived the stop


def test_gpu_check_help_and_missing_table_error(tmp_path):
    assert "--gpus-per-actor" in run_module("finner.pipeline.gpu_check", "--help").stdout
    done = run_module("finner.pipeline.gpu_check", "--store", str(tmp_path / "empty"))
    assert done.returncode == 2
    assert done.stderr.startswith("error: no headlines table in ") and "jobs.ingest" in done.stderr
