"""The feed-scale pipeline as one `ray job submit` on a local multi-node Ray cluster.

    python benchmarks/bench_scale_cluster.py --quick                          # N = 10k
    python benchmarks/bench_scale_cluster.py --rows 900000 --model <ckpt>     # the whole feed

The cluster is the test suite's (`tests/ray_cluster.py`): a head that runs only the job's driver
(0 CPUs) and `--nodes` worker nodes of `--node-cpus` CPUs each, local raylets that Ray's fake
multi-node provider starts and the autoscaler keeps at that count. The store is a path every node
reads and writes (on this machine the local disk; on a cluster a shared filesystem or an object
store). One job does the whole feed:

    python -m jobs.pipeline --store S --path FEED --listings L --only ingest label curate review-push score \\
        --stage-args score="--model M --runtime onnx-int8 ..."

on a feed of N headlines rewritten from the real ones (`bench_scale.py`'s), labelled by the
built-in endpoint through the async actors, the whole 5% sample pushed to a local Argilla, scored
by the CPU int8 runtime with `--model` (`bench_scale.py`'s, to compare; without it an untrained
GLiNER on the packaged encoder, the same compute, a different number of spans to decode; its ONNX
export is then part of the scoring stage's time). It records each stage's time from the job's log, the driver's peak RSS, the
nodes the Ray actors ran on and the tables after, writes `bench_scale_cluster.json` under `--out`
and ends with `BENCH scale_cluster_seconds`, `scale_cluster_score_per_s` (the scoring stage's
headlines per second) and `scale_cluster_actor_nodes` (worker nodes that ran an actor).

Nodes of 1 CPU deadlock the label stage: its two actors (0.25 CPU each) take one node each, and
the streaming repartition that cuts the todo stream into batches (`finner.pipeline.todo.in_batches`)
asks for a whole CPU per task, which no node has left. Hence `--node-cpus` 2 by default.

The job's code is the installed finner (no `working_dir`: the fake provider's nodes share one
session folder, see tests/test_autoscaling.py). Resumable like the pipeline: the same command
again submits the same job, which keeps what it finished; its figures then cover that run only.
`--from STAGE` submits the stages from STAGE on, for a run stopped after the earlier ones finished.
Each run's job log stays under `--out` as `job-<submission id>.log`, a stopped run's included.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_scale import (  # noqa: E402
    HEADLINES,
    LISTINGS,
    SAMPLE_EVERY_S,
    SCORE_FLAGS,
    Argilla,
    process_memory,
    table_stats,
)
from finner.score import untrained_checkpoint  # noqa: E402
from finner.pipeline.cli import stop_on_signals  # noqa: E402
from finner.store import Store  # noqa: E402
from finner.testing.feeds import write_scaled_feed  # noqa: E402
from tests.ray_cluster import LocalRayCluster  # noqa: E402

QUICK_ROWS = 10_000
STAGES = ("ingest", "label", "curate", "review-push", "score")
NODE_TYPE = "cpu_worker"
JOB_TIMEOUT_S = 6 * 3600


def cluster_config(nodes: int, node_cpus: int) -> dict:
    """tests/fake_cluster.yaml's provider with a head of 0 CPUs and `nodes` CPU workers, always up."""
    import yaml

    config = yaml.safe_load((REPO / "tests" / "fake_cluster.yaml").read_text())
    config.update(max_workers=nodes, idle_timeout_minutes=60)
    config["available_node_types"] = {
        "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
        NODE_TYPE: {"resources": {"CPU": node_cpus}, "node_config": {}, "min_workers": nodes, "max_workers": nodes},
    }
    return config


def wait_for_nodes(cluster: LocalRayCluster, nodes: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while sum(n["state"] == "ALIVE" and n["resources_total"].get("CPU", 0) > 0 for n in cluster.nodes()) < nodes:
        if time.monotonic() > deadline:
            raise SystemExit(f"the autoscaler did not start {nodes} worker nodes in {timeout:.0f} s:\n{cluster.ray_status()}")
        time.sleep(2)


def stage_seconds(logs: str) -> dict[str, float]:
    """`[stage] done in 12.3s` lines of the pipeline's log."""
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^\[([\w-]+)\] done in ([\d.]+)s", logs, re.MULTILINE)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=0, help="feed size N (default: --quick's)")
    parser.add_argument("--quick", action="store_true", help=f"N = {QUICK_ROWS:,}")
    parser.add_argument("--nodes", type=int, default=2, help="worker nodes")
    parser.add_argument("--node-cpus", type=int, default=2, help="CPUs of each worker node (nodes of 1 CPU deadlock the label stage: see the docstring)")
    parser.add_argument("--out", default="finner-data/bench-scale-cluster", help="work folder: feed, store, logs, the JSON")
    parser.add_argument("--model", default="", help="GLiNER checkpoint to score with; none: an untrained one on the packaged encoder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the feed")
    parser.add_argument("--from", dest="first", choices=STAGES, default=STAGES[0], help="first stage to run (a stopped run of this --out finished those before it)")
    args = parser.parse_args()
    stop_on_signals()  # `kill` as well as Ctrl-C stops the servers and clusters it started
    sys.stdout.reconfigure(line_buffering=True)
    rows = args.rows or QUICK_ROWS
    if rows < 1_000 or args.nodes < 1 or args.node_cpus < 1:
        parser.error("--rows: at least 1000; --nodes and --node-cpus: at least 1")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    store = Store(str(out / "store"))
    feed = out / f"feed-{rows}-seed{args.seed}.parquet"
    if not feed.exists():
        partial = feed.with_suffix(".partial")
        write_scaled_feed(HEADLINES, LISTINGS, rows, partial, seed=args.seed)
        partial.replace(feed)
    model = args.model or untrained_checkpoint(str(out / "untrained-gliner"))
    stages = STAGES[STAGES.index(args.first):]
    pushes = "review-push" in stages
    with Argilla(out / "argilla") if pushes else contextlib.nullcontext() as argilla, \
            LocalRayCluster(num_cpus=0, autoscaling_config=cluster_config(args.nodes, args.node_cpus), env={"PYTHONPATH": str(REPO)}) as cluster:
        if pushes and argilla is None:
            raise SystemExit("error: the review push needs the local Argilla environment (`make argilla-venv`)")
        wait_for_nodes(cluster, args.nodes)
        base = ["--store", store.root, "--path", str(feed), "--listings", str(LISTINGS)]
        score = " ".join(["--model", model, *SCORE_FLAGS, "--onnx-cache", str(out / "onnx"), "--quiet"])
        before = table_stats(store)
        job = cluster.submit("jobs.pipeline", *base, "--only", *stages, "--stage-args", f"score={score}", env_vars=argilla.env if pushes else None)
        began, driver_peak = time.monotonic(), 0
        job_log = out / f"job-{job}.log"
        try:
            while (status := cluster.status(job)) not in ("SUCCEEDED", "FAILED", "STOPPED"):
                if pid := cluster.driver_pid(job):
                    driver_peak = max(driver_peak, process_memory(pid)[0])
                if time.monotonic() - began > JOB_TIMEOUT_S:
                    cluster.stop_job(job)
                time.sleep(SAMPLE_EVERY_S * 8)
        finally:  # a run stopped midway keeps its log too: the stages it finished are timed only there
            logs = cluster.logs(job)
            job_log.write_text(logs)
        seconds = time.monotonic() - began
        workers = {n["node_id"] for n in cluster.nodes() if n["resources_total"].get("CPU", 0) > 0}
        actor_nodes = {a["node_id"] for a in cluster.actors() if a["node_id"] in workers}
    done = stage_seconds(logs)
    tables = table_stats(store)
    scored = tables.get("predictions", {}).get("rows", 0) - before.get("predictions", {}).get("rows", 0)  # by this run
    report = {
        "rows": rows, "nodes": args.nodes, "node_cpus": args.node_cpus, "model": model, "stages": list(stages), "status": status,
        "seconds": seconds, "stage_seconds": done, "driver_peak_rss": driver_peak,
        "actor_nodes": len(actor_nodes), "tables": tables,
    }  # fmt: skip
    (out / "bench_scale_cluster.json").write_text(json.dumps(report, indent=2))
    for stage in stages:
        print(f"  {stage:<12} {done[stage]:8.1f} s" if stage in done else f"  {stage:<12} not finished")
    print(f"job {job}: {status} in {seconds:.0f} s on {args.nodes} nodes of {args.node_cpus} CPUs; driver peak {driver_peak / 2**20:.0f} MiB; log {job_log}")
    if status != "SUCCEEDED":
        raise SystemExit(f"the job ended {status}: see {job_log}")
    print(f"BENCH scale_cluster_seconds {seconds:.1f}")
    if "score" in done:
        print(f"BENCH scale_cluster_score_per_s {scored / done['score']:.3f}")
    print(f"BENCH scale_cluster_actor_nodes {len(actor_nodes)}")


if __name__ == "__main__":
    main()
