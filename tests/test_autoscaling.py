"""The autoscaler adds a GPU worker node when a job's actors ask for GPUs, and removes it when idle.

Ray's fake multi-node provider (tests/fake_cluster.yaml) starts worker "nodes" as local processes
with the declared resources: a `gpu_worker` type with {CPU: 1, GPU: 1}, min 0, 6 s idle timeout.
The job is `finner.pipeline.gpu_check`, the same shape as bulk scoring: a Ray Data actor pool
over `headlines`, one GPU per actor; with no real GPU here each actor computes on the CPU.
"""

from __future__ import annotations

import re
import time

import pyarrow.compute as pc
import pytest
import yaml

from finner.source import SourceConfig, ingest
from finner.store import Store
from tests.conftest import REPO, run_module
from tests.ray_cluster import LocalRayCluster

HEADLINES = 2000


def gpu_nodes(cluster: LocalRayCluster, state: str) -> list[dict]:
    return [n for n in cluster.nodes() if n["state"] == state and n["resources_total"].get("GPU")]


def poll(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(1)
    return value


@pytest.mark.slow
def test_gpu_worker_added_for_gpu_actors_and_removed_when_idle(real_headlines_path, tmp_path):
    store = Store(str(tmp_path / "store"))
    ingest(SourceConfig(path=str(real_headlines_path), limit=HEADLINES), store, progress=False)
    titles = store.read("headlines", columns=["title"])["title"]
    config = yaml.safe_load((REPO / "tests" / "fake_cluster.yaml").read_text())

    with LocalRayCluster(num_cpus=1, autoscaling_config=config) as cluster:
        assert not gpu_nodes(cluster, "ALIVE"), "the GPU worker type starts at zero"

        job = cluster.submit("finner.pipeline.gpu_check", "--store", store.root, runtime_env="runtime_env/score.yaml")
        added = poll(lambda: gpu_nodes(cluster, "ALIVE"), 180, "the autoscaler to add a GPU node")
        assert len(added) == 1
        gpu_node = added[0]["node_id"]
        assert re.search(r"Active:\s*\n(\s+\d+ \S+\n)*\s+1 gpu_worker\n", cluster.ray_status())

        run = cluster.wait(job, timeout=240)
        assert run.status == "SUCCEEDED", run.logs
        assert "Adding 1 node(s) of type gpu_worker" in run.logs  # the autoscaler's event, in the driver log
        # The actor ran on the added node, was given its GPU, and fell back to CPU computation.
        expected = f"gpu_check: node {gpu_node} gpu_ids [0] device cpu: {HEADLINES} headlines, {pc.sum(pc.utf8_length(titles)).as_py()} chars"
        assert expected in run.logs, run.logs[-3000:]

        # Idle for idle_timeout_minutes (6 s): the autoscaler terminates the node.
        poll(lambda: not gpu_nodes(cluster, "ALIVE"), 120, "the autoscaler to remove the idle GPU node")
        assert gpu_node in [n["node_id"] for n in gpu_nodes(cluster, "DEAD")]
        assert "gpu_worker" not in cluster.ray_status().split("Pending:")[0]


def test_gpu_check_help_and_missing_table_error(tmp_path):
    assert "--gpus-per-actor" in run_module("finner.pipeline.gpu_check", "--help").stdout
    done = run_module("finner.pipeline.gpu_check", "--store", str(tmp_path / "empty"))
    assert done.returncode == 2
    assert done.stderr.startswith("error: no headlines table in ") and "jobs.ingest" in done.stderr
