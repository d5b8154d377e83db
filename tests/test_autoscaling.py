"""The autoscaler adds a GPU worker node when the scoring job's actors ask for GPUs, and removes it when idle.

Ray's fake multi-node provider (tests/fake_cluster.yaml) starts worker "nodes" as local processes
with the declared resources: a `gpu_worker` type with {CPU: 1, GPU: 1}, min 0, 6 s idle timeout.
`python -m jobs.score --gpus yes` asks for one GPU per actor even though the cluster has none yet,
which is what makes the autoscaler add the node; with no real GPU here the actor computes on CPU.
"""

from __future__ import annotations

import re
import time

import pytest
import yaml

from finner.score import untrained_checkpoint
from finner.source import SourceConfig, ingest
from finner.store import Store
from tests.conftest import REPO
from tests.ray_cluster import LocalRayCluster

HEADLINES = 300


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
def test_gpu_worker_added_for_scoring_actors_and_removed_when_idle(real_headlines_path, tmp_path):
    store = Store(str(tmp_path / "store"))
    ingest(SourceConfig(path=str(real_headlines_path), limit=HEADLINES), store, progress=False)
    model = untrained_checkpoint(str(tmp_path / "gliner"))  # same compute as a fine-tuned one
    config = yaml.safe_load((REPO / "tests" / "fake_cluster.yaml").read_text())

    with LocalRayCluster(num_cpus=1, autoscaling_config=config) as cluster:
        assert not gpu_nodes(cluster, "ALIVE"), "the GPU worker type starts at zero"

        # No working_dir runtime env here (the other Ray tests submit with one): the fake provider's
        # "nodes" share one session directory, so one node's runtime-env agent deleting its copy of the
        # working_dir takes away the other node's workers' current directory. The code is installed.
        job = cluster.submit("jobs.score", "--store", store.root, "--model", model, "--gpus", "yes", "--no-report", "--quiet")
        added = poll(lambda: gpu_nodes(cluster, "ALIVE"), 180, "the autoscaler to add a GPU node")
        assert len(added) == 1
        gpu_node = added[0]["node_id"]
        # `ray status` (the autoscaler's own report, refreshed every few seconds) follows the node's start.
        active = re.compile(r"Active:\s*\n(\s+\d+ \S+\n)*\s+1 gpu_worker\n")
        poll(lambda: active.search(cluster.ray_status()), 60, "`ray status` to list the GPU node as active")

        run = cluster.wait(job, timeout=300)
        assert run.status == "SUCCEEDED", run.logs
        # The autoscaler's event reaches the driver's output, which a quiet run keeps in the stage's log.
        assert "Adding 1 node(s) of type gpu_worker" in (tmp_path / "store" / "logs" / "score.log").read_text()
        assert f"scored {HEADLINES} headlines" in run.logs
        assert store.ids("predictions") == store.ids("headlines")
        # The scoring actor ran on the added node (and, with no CUDA there, computed on the CPU).
        scorers = [a for a in cluster.actors() if "ScoreActor" in a["class_name"]]
        assert scorers and {a["node_id"] for a in scorers} == {gpu_node}

        # Idle for idle_timeout_minutes (6 s): the autoscaler terminates the node.
        poll(lambda: not gpu_nodes(cluster, "ALIVE"), 120, "the autoscaler to remove the idle GPU node")
        assert gpu_node in [n["node_id"] for n in gpu_nodes(cluster, "DEAD")]
        poll(lambda: "gpu_worker" not in cluster.ray_status().split("Pending:")[0], 60, "`ray status` to drop the GPU node")

