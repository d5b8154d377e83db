"""Fine-tuning on the feed: memory as the feed grows, throughput with more workers, and streaming
against rows held in memory.

    python benchmarks/bench_train.py [--quick]

The real Benzinga headlines (../shared/data; `--quick`: 1,000 of them, evenly spaced), and a feed
10x that size scaled from them with `finner.testing.feeds`, each ingested, labelled by the
gazetteer (the LLM's stand-in) and curated (`finner.testing.labelled_feed`). GLiNER on the
offline encoder then trains the same number of steps (`--max-steps`, batches of 4) on `--rows feed`:

  (a) 1x feed, 1 worker: `python -m jobs.train`, as a user runs it;
  (b) 10x feed, 1 worker: the same;
  (c) 1x feed, 2 workers: the same;
  (d) 1x feed, 1 worker, rows in memory: the same rows handed to the worker in the loop config and
      batched there (`finner.train.in_memory_batches`), as the job trained before it streamed.

All four run on one local Ray started here (the jobs join it). Each job's driver runs in a process
of its own and prints its own peak RSS; a worker's peak RSS is
the `peak_rss_mib` rank 0 reports with its last validation. Rows/s counts training steps only
(`train_seconds`: start-up, the first step and validations excluded); rows = steps x batch x workers.
Ends with `BENCH` lines: train_worker_peak_rss_ratio_10x and train_driver_peak_rss_ratio_10x are
(b) / (a), train_rows_per_s_2_vs_1_workers is (c) / (a), train_stream_vs_inmemory is (a) / (d).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
BATCH = 4
VALID_ROWS = 40  # about this many sample rows in the valid split of every store: validations cost the same
DRIVER = (
    "import resource, sys\n"
    "from jobs.train import main\n"
    "code = main(sys.argv[1:])\n"
    "print('driver_peak_rss_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    "sys.exit(code)\n"
)
sys.path.insert(0, str(REPO))


def build_store(workdir: Path, factor: int, base_rows: int | None):
    """A store holding the real feed (or `base_rows` of it, evenly spaced) scaled `factor` times,
    labelled and curated, with a sample fraction that keeps the valid split at about `VALID_ROWS` rows."""
    import pyarrow.parquet as pq

    from finner.sample import SampleConfig
    from finner.store import Store
    from finner.testing.feeds import write_scaled_feed
    from finner.testing.labelled_feed import write_labelled_feed

    real = SHARED / "benzinga_headlines.parquet"
    available = pq.read_metadata(real).num_rows
    rows = min(base_rows or available, available) * factor
    feed = write_scaled_feed(real, SHARED / "company_listings.csv", rows, workdir / f"feed-{factor}x.parquet", base_rows=base_rows)
    first, last = SampleConfig().valid_years
    dates = pq.read_table(feed, columns=["Date"]).column("Date").to_pylist()
    valid = sum(first <= int(date[:4]) <= last for date in dates if date and date[:4].isdigit())  # broken rows too
    store = Store(str(workdir / f"store-{factor}x"))
    write_labelled_feed(store, feed, SHARED / "company_listings.csv", sample=SampleConfig(fraction=VALID_ROWS / valid))
    return store


def run_job(store, workers: int, steps: int, address: str) -> dict:
    """(a)-(c): the training job in a process of its own, joining the Ray at `address`; its
    driver's peak RSS and rank 0's report."""
    name = f"bench-{workers}w"
    argv = [
        "--store", store.root, "--rows", "feed", "--offline", "--num-workers", str(workers), "--name", name, "--force",
        "--epochs", "1", "--max-steps", str(steps), "--batch-size", str(BATCH), "--learning-rate", "5e-5", "--warmup-ratio", "0",
    ]  # fmt: skip
    env = {**os.environ, "RAY_ADDRESS": address}
    run = subprocess.run([sys.executable, "-c", DRIVER, *argv], cwd=REPO, env=env, capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"jobs.train failed:\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}")
    last = store.get_json(f"train-{name}-epochs")["evaluations"][-1]
    driver_kib = int(re.search(r"driver_peak_rss_kib (\d+)", run.stdout).group(1))
    return {"driver_mib": driver_kib / 1024, "worker_mib": last["peak_rss_mib"], "rows_per_s": last["timed_steps"] * BATCH * workers / last["train_seconds"]}


def in_memory_worker(loop_config: dict) -> None:
    """(d): a Ray Train worker that trains on rows it was handed whole, batched in the worker."""
    import ray.train

    from finner.config import config_from_dict
    from finner.models.registry import ModelSpec, build_model
    from finner.models.train_config import TrainConfig
    from finner.train import fine_tune, in_memory_batches, steps_per_epoch

    spec, config = config_from_dict(ModelSpec, loop_config["spec"]), config_from_dict(TrainConfig, loop_config["train"])
    model, rows, valid = build_model(spec), loop_config["rows"], loop_config["valid"]
    with tempfile.TemporaryDirectory() as work_dir:
        fine_tune(
            model, in_memory_batches(model, rows, config), lambda: valid, config, steps_per_epoch(len(rows), 1, config.batch_size), work_dir,
            lambda metrics, checkpoint: ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(checkpoint)),
            keep_training_state=False,
        )


def run_in_memory(store, steps: int) -> dict:
    import dataclasses

    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from finner.models.registry import ModelSpec
    from finner.models.train_config import TrainConfig
    from finner.pipeline.train import TrainJobConfig, worker_resources
    from finner.train import examples
    from finner.training_data import feed_train_rows, llm_labelled

    use_gpu = ray.cluster_resources().get("GPU", 0) >= 1
    config = TrainConfig(epochs=1, max_steps=steps, batch_size=BATCH, learning_rate=5e-5, warmup_ratio=0.0)
    trainer = TorchTrainer(
        in_memory_worker,
        train_loop_config={
            "spec": dataclasses.asdict(ModelSpec("gliner", offline=True)), "train": dataclasses.asdict(config),
            "rows": examples(feed_train_rows(store)), "valid": examples(llm_labelled(store, "valid")),
        },
        scaling_config=ScalingConfig(num_workers=1, use_gpu=use_gpu, resources_per_worker=worker_resources(TrainJobConfig(num_workers=1), use_gpu)),
        run_config=RunConfig(storage_path=store.artifact("bench_runs")),
    )
    last = trainer.fit().metrics
    return {"rows_per_s": last["timed_steps"] * BATCH / last["train_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (under 5 minutes on a quiet 2-core CPU)")
    parser.add_argument("--steps", type=int, help="training steps of every run (default: 12 quick, 80 full)")
    parser.add_argument("--base-rows", type=int, help="headlines of the 1x feed, evenly spaced over the real ones (default: 1,000 quick, all 16,553 full)")
    args = parser.parse_args()
    steps = args.steps or (12 if args.quick else 80)
    base_rows = args.base_rows or (1000 if args.quick else None)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))  # for the Ray workers
    started = time.monotonic()

    import ray

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        small, large = build_store(workdir, 1, base_rows), build_store(workdir, 10, base_rows)
        print(f"stores built in {time.monotonic() - started:.0f} s; {steps} steps of {BATCH} rows on the feed's train rows; "
              f"GLiNER on the offline encoder; CPU cores: {os.cpu_count()}")
        address = ray.init(logging_level="WARNING").address_info["gcs_address"]
        # (a) runs between (c) and (d), the runs it is compared with: the load of a shared machine moves.
        b = run_job(large, 1, steps, address)
        print(f"(b) 10x feed, 1 worker: {b['rows_per_s']:6.1f} rows/s; peak RSS worker {b['worker_mib']:7.1f} MiB, driver {b['driver_mib']:7.1f} MiB")
        c = run_job(small, 2, steps, address)
        print(f"(c) 1x feed, 2 workers: {c['rows_per_s']:6.1f} rows/s; peak RSS worker {c['worker_mib']:7.1f} MiB, driver {c['driver_mib']:7.1f} MiB")
        a = run_job(small, 1, steps, address)
        print(f"(a) 1x feed, 1 worker:  {a['rows_per_s']:6.1f} rows/s; peak RSS worker {a['worker_mib']:7.1f} MiB, driver {a['driver_mib']:7.1f} MiB")
        d = run_in_memory(small, steps)
        print(f"(d) 1x feed, 1 worker, rows in memory: {d['rows_per_s']:6.1f} rows/s")
        ray.shutdown()
    print(f"{time.monotonic() - started:.0f} s in all")

    print(f"BENCH train_worker_peak_rss_ratio_10x {b['worker_mib'] / a['worker_mib']:.3f}")
    print(f"BENCH train_driver_peak_rss_ratio_10x {b['driver_mib'] / a['driver_mib']:.3f}")
    print(f"BENCH train_rows_per_s_2_vs_1_workers {c['rows_per_s'] / a['rows_per_s']:.3f}")
    print(f"BENCH train_stream_vs_inmemory {a['rows_per_s'] / d['rows_per_s']:.3f}")


if __name__ == "__main__":
    main()
