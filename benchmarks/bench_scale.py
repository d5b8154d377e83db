"""The pipeline at feed scale, measured per stage: what grows with the feed, and how fast.

    python benchmarks/bench_scale.py --quick                    # N = 10k and 100k
    python benchmarks/bench_scale.py --rows 2000 20000          # any sizes (the ratios compare the
    python benchmarks/bench_scale.py --rows 90000 900000        #   smallest and the largest N)

For each N, on a fresh store: a feed of N headlines rewritten from the real ones
(`finner.testing.feeds`), then every stage as its real entry point in a process of its own
(`python -m jobs.<stage>`, so the driver's memory is the job's): ingest -> label (the built-in
gazetteer endpoint, `--test-endpoint`, through the same async actors) -> curate -> review push of
the whole sample to a local Argilla (`jobs.review serve`; skipped, with a line saying so, when its
environment is missing) -> score with the CPU int8 runtime (`--runtime onnx-int8`).

The model is trained once, on the smallest N, with a fixed budget (`--train-rows` labelled feed
rows, `--train-steps` steps, GLiNER on the packaged MiniLM encoder): the question here is the
feed, not the model (`--model PATH` reuses one). Its ONNX export is made before the first measured
scoring run, and int8 is used whatever its agreement with torch on so young a model.

Per stage: wall time; throughput (feed rows/s for ingest, headlines/s for label, curate and score,
records/s for the review push); the driver's peak RSS (VmHWM of the job's process) and its peak
private memory (RssAnon, sampled: VmHWM also counts the pages of Ray's shared object store the
driver has read, which Ray bounds, not the job); the Ray
workers' peak RSS (the processes under the job's raylet, sampled: the largest one and the largest
sum); object-store spill (files in the session's `ray_spilled_objects_*` folder, sampled: bytes
spilled in all and the most on disk at once); files, bytes and rows of every table after the stage
(`scale_files_per_100k_rows`: the worst table's files per 100k feed rows after the run).
Writes `bench_scale.json` and `reports/bench_scale.png` (time and memory against N per stage) under
`--out`, and ends with `BENCH` lines.

A run is resumable: each N's finished stages are recorded in `n<N>/stages.json` as they end, and
the same command again (same `--out`) keeps them and goes on from the first stage not finished. A
stage cut off midway runs again and its job resumes from the store (label and score keep what they
committed); its throughput then counts only the headlines of its last run (`note` says so). `python -m jobs.score --scale-measurements <out>/bench_scale.json`
prices nodes from the largest feed's scoring (`finner.cost`).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from finner import artifacts  # noqa: E402
from finner.plots import pyplot, save_figure  # noqa: E402
from finner.pipeline.cli import stop_on_signals  # noqa: E402
from finner.review_server.launcher import default_server_python, free_port  # noqa: E402
from finner.schemas import TABLES  # noqa: E402
from finner.store import Store  # noqa: E402
from finner.testing.feeds import write_scaled_feed  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
HEADLINES = SHARED / "benzinga_headlines.parquet"
LISTINGS = SHARED / "company_listings.csv"
QUICK_ROWS = (10_000, 100_000)
STAGES = ("ingest", "label", "curate", "review", "score")
WORK_TABLE = {"label": "llm_labels", "score": "predictions"}  # one row per headline done: a resumed run counts only its own
STAGES_FILE = "stages.json"
RATIO_STAGES = ("label", "curate", "score")  # the throughput goal (>= 0.9 at 10x) is set for these
SAMPLE_EVERY_S = 0.25
MODEL_NAME = "scale-bench"
WARMUP_ROWS = 64
# int8 is the runtime measured, whatever its agreement with torch: the model is barely trained, and a
# short check keeps the job's fixed cost small.
SCORE_FLAGS = ["--runtime", "onnx-int8", "--agreement-tolerance", "1", "--agreement-rows", "32"]
# Fit flags of the offline demo (jobs.pipeline's DEMO_FIT_FLAGS): a fresh head on the local encoder.
TRAIN_FLAGS = ["--kind", "gliner", "--labels", "llm", "--rows", "feed", "--offline", "--epochs", "1",
               "--learning-rate", "5e-5", "--head-learning-rate", "1e-3", "--num-workers", "1"]


@dataclass
class StageRun:
    """One stage's process, measured."""

    stage: str
    rows: int = 0  # what its throughput counts
    seconds: float = 0.0
    driver_peak_rss: int = 0
    driver_peak_private: int = 0  # RssAnon at its largest sample: the job's own heap, without shared pages
    worker_peak_rss: int = 0  # the largest Ray worker
    workers_peak_rss: int = 0  # all Ray workers together, at their largest
    workers_seen: int = 0
    spilled_bytes: int = 0
    spill_peak_bytes: int = 0
    returncode: int = 0
    tables: dict[str, dict[str, int]] = field(default_factory=dict)  # table -> files, bytes, rows
    summary: dict | None = None  # the scoring job's own `score_throughput` (what the cost report prices)
    note: str = ""

    @property
    def per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def process_memory(pid: int) -> tuple[int, int]:
    """(peak RSS (VmHWM), current private RSS (RssAnon)) of a live process, in bytes."""
    fields = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "RssAnon"):
                    fields[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return fields.get("VmHWM", 0), fields.get("RssAnon", 0)


def _is_ray_worker(cmdline: list[str]) -> bool:
    return bool(cmdline) and (cmdline[0].startswith("ray::") or any("default_worker.py" in part for part in cmdline))


def _session_dir(processes: list[psutil.Process]) -> str | None:
    """The Ray session folder of the job's own raylet (other jobs on the machine have theirs)."""
    for proc in processes:
        try:
            cmdline = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if "raylet" in cmdline and (found := re.search(r"(/\S*?/session_[^/\s]+)", cmdline)):
            return found.group(1)
    return None


def run_stage(stage: str, argv: list[str], log: Path, env: dict[str, str]) -> StageRun:
    """Run `python -m jobs.<...> argv` and sample its process tree until it exits."""
    run = StageRun(stage)
    spilled: dict[str, int] = {}
    session = None
    with open(log, "w") as out:
        start = time.monotonic()
        job = subprocess.Popen([sys.executable, "-m", *argv], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        driver = psutil.Process(job.pid)
        while job.poll() is None:
            hwm, private = process_memory(job.pid)
            run.driver_peak_rss = max(run.driver_peak_rss, hwm)
            run.driver_peak_private = max(run.driver_peak_private, private)
            try:
                tree = driver.children(recursive=True)
            except psutil.Error:
                tree = []
            session = session or _session_dir(tree)
            total = 0
            for proc in tree:
                try:
                    if _is_ray_worker(proc.cmdline()):
                        rss = proc.memory_info().rss
                        run.worker_peak_rss = max(run.worker_peak_rss, rss)
                        run.workers_seen += 1
                        total += rss
                except psutil.Error:
                    continue
            run.workers_peak_rss = max(run.workers_peak_rss, total)
            if session:
                now = {path: os.path.getsize(path) for path in glob.glob(f"{session}/ray_spilled_objects_*/*") if os.path.isfile(path)}
                spilled.update(now)
                run.spill_peak_bytes = max(run.spill_peak_bytes, sum(now.values()))
            time.sleep(SAMPLE_EVERY_S)
        run.seconds = time.monotonic() - start
    run.returncode = job.returncode
    run.spilled_bytes = sum(spilled.values())
    return run


def table_stats(store: Store) -> dict[str, dict[str, int]]:
    """Files, bytes and rows of every committed table."""
    import pyarrow.parquet as pq

    stats = {}
    for name in TABLES:
        files = store.files(name)
        if files:
            stats[name] = {
                "files": len(files),
                "bytes": sum(os.path.getsize(f) for f in files),
                "rows": sum(pq.read_metadata(f).num_rows for f in files),
            }
    return stats


class Argilla:
    """`python -m jobs.review serve` in the background for the whole benchmark, or None."""

    def __init__(self, home: Path):
        self.home, self.proc, self.env = home, None, {}

    def __enter__(self) -> Argilla | None:
        if not os.path.exists(default_server_python()):
            print(f"review push skipped: no Argilla environment at {default_server_python()} (`make argilla-venv`)")
            return None
        port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jobs.review", "serve", "--home", str(self.home), "--port", str(port), "--api-key", "bench.key"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for line in self.proc.stdout:  # the banner's `  export ARGILLA_API_URL=... ARGILLA_API_KEY=...` line
            if line.strip().startswith("export "):
                self.env = dict(item.split("=", 1) for item in line.split()[1:])
                return self
        print(f"review push skipped: the local Argilla did not start (see {self.home}/server.log)")
        return None

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=120)


def env_with(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), **(extra or {})}


def train_once(store: Store, workdir: Path, train_rows: int, train_steps: int) -> str:
    """The model every N scores with: trained on the smallest feed's labels, with a fixed budget
    (the one a cut-off run of the benchmark finished, if any)."""
    if done := artifacts.trained_model_path(store, MODEL_NAME):
        return done
    argv = ["jobs.train", "--store", store.root, *TRAIN_FLAGS, "--name", MODEL_NAME, "--max-train-rows", str(train_rows), "--max-steps", str(train_steps)]
    run = run_stage("train", argv, workdir / "train.log", env_with())
    if run.returncode:
        raise SystemExit(f"training failed (exit {run.returncode}): see {workdir / 'train.log'}")
    print(f"  model: {train_rows} labelled rows, {train_steps} steps, trained in {run.seconds:.0f} s")
    return artifacts.trained_model_path(store, MODEL_NAME)


def warm_up_scoring(model: str, workdir: Path, onnx_cache: str) -> None:
    """Export the model to int8 ONNX once, on a scratch store, so no measured run pays for it."""
    (workdir / "warmup").mkdir(exist_ok=True)
    store = Store(str(workdir / "warmup" / "store"))
    feed = write_scaled_feed(HEADLINES, LISTINGS, WARMUP_ROWS, workdir / "warmup" / "feed.parquet")
    for argv in (["jobs.ingest", "--path", str(feed)], ["jobs.score", "--model", model, *SCORE_FLAGS, "--onnx-cache", onnx_cache, "--no-report"]):
        done = subprocess.run([sys.executable, "-m", argv[0], "--store", store.root, *argv[1:], "--quiet"], cwd=REPO, env=env_with(), capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"warm-up {argv[0]} failed: {done.stderr[-2000:]}")


def _recorded(here: Path, rows: int, seed: int) -> dict:
    """What an earlier run of this N in the same folder finished: {"seed": ..., "stages": {...}}."""
    path = here / STAGES_FILE
    if not path.exists():
        return {"seed": seed, "stages": {}}
    record = json.loads(path.read_text())
    if record["seed"] != seed:
        print(f"error: --seed: N={rows:,} in {here} was begun with --seed {record['seed']}; use it or another --out", file=sys.stderr)
        raise SystemExit(2)
    return record


def _record(here: Path, record: dict) -> None:
    tmp = here / f".{STAGES_FILE}.tmp"
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(here / STAGES_FILE)


def run_size(rows: int, workdir: Path, argilla: Argilla | None, model: dict, args: argparse.Namespace) -> dict[str, StageRun]:
    """Every stage on a fresh store of `rows` headlines, or on from where a cut-off run stopped."""
    here = workdir / f"n{rows}"
    here.mkdir(parents=True, exist_ok=True)
    store = Store(str(here / "store"))
    record = _recorded(here, rows, args.seed)
    feed = here / "feed.parquet"
    if "feed" not in record:
        began = time.monotonic()
        write_scaled_feed(HEADLINES, LISTINGS, rows, feed, seed=args.seed)
        record["feed"] = str(feed)
        _record(here, record)
        print(f"N={rows:,}: feed written in {time.monotonic() - began:.0f} s ({feed})")
    base = ["--store", store.root]
    commands = {
        "ingest": (["jobs.ingest", *base, "--path", str(feed), "--quiet"], {}),
        "label": (["jobs.label", *base, "--test-endpoint", "--listings", str(LISTINGS), "--quiet"], {}),
        "curate": (["jobs.curate", *base, "--quiet"], {}),
        "review": (["jobs.review", *base, "push", "--dataset-name", f"scale-{rows}-{{split}}"], argilla.env if argilla else None),
        "score": (None, {}),
    }
    runs: dict[str, StageRun] = {}
    for stage in STAGES:
        argv, extra = commands[stage]
        if stage in args.skip:
            continue
        if (kept := record["stages"].get(stage)) and not kept["returncode"]:
            runs[stage] = StageRun(**{k: v for k, v in kept.items() if k != "per_s"})
            print(f"  {stage:<7} finished by an earlier run: kept ({here / STAGES_FILE})")
            continue
        if stage == "review" and extra is None:
            runs[stage] = StageRun(stage, note="skipped: no Argilla environment")
            continue
        if stage == "score":
            if "path" not in model:
                model["path"] = train_once(Store(model["train_store"]), workdir, args.train_rows, args.train_steps)
            if "warm" not in model:
                warm_up_scoring(model["path"], workdir, str(workdir / "onnx"))
                model["warm"] = "yes"
            argv = ["jobs.score", *base, "--model", model["path"], *SCORE_FLAGS, "--onnx-cache", str(workdir / "onnx"),
                    "--listings", str(LISTINGS), "--quiet"]
        before = table_stats(store)
        run = run_stage(stage, argv, here / f"{stage}.log", env_with(extra))
        run.tables = table_stats(store)
        run.rows = _counted_rows(stage, rows, before, run.tables, store)
        if stage in WORK_TABLE and (earlier := before.get(WORK_TABLE[stage], {}).get("rows", 0)):
            run.note = f"resumed: {earlier:,} headlines were done by a run cut off before; the figures are this run's {run.rows:,}"
        if stage == "score":
            run.summary = store.get_json(artifacts.SCORE_THROUGHPUT_KEY)
        runs[stage] = run
        record["stages"][stage] = asdict(run)
        _record(here, record)
        status = "" if run.returncode == 0 else f"  FAILED (exit {run.returncode}, see {here / f'{stage}.log'})"
        print(
            f"  {stage:<7} {run.seconds:7.1f} s {run.per_s:9.1f}/s  driver {run.driver_peak_rss / 2**20:6.0f} MiB "
            f"(private {run.driver_peak_private / 2**20:.0f})  workers max {run.worker_peak_rss / 2**20:5.0f} MiB, "
            f"sum {run.workers_peak_rss / 2**20:5.0f} MiB  spilled {run.spilled_bytes / 2**20:.0f} MiB{status}"
            + (f"  ({run.note})" if run.note else "")
        )
        if run.returncode:
            break
    return runs


def _counted_rows(stage: str, feed_rows: int, before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], store: Store) -> int:
    """What a stage's throughput counts: feed rows read, headlines (labelled and scored: those this
    run added), or sample records sent (a resumed push sends only what the server lacks)."""
    if stage == "ingest":
        return feed_rows
    if stage == "review":
        return sum((store.get_json(artifacts.REVIEW_PUSH_KEY) or {}).get("sent", {}).values())
    if stage in WORK_TABLE:
        table = WORK_TABLE[stage]
        return after.get(table, {}).get("rows", 0) - before.get(table, {}).get("rows", 0)
    return after.get("headlines", {}).get("rows", 0)


# -- the report ---------------------------------------------------------------------------------


def ratios(results: dict[int, dict[str, StageRun]]) -> dict[str, float]:
    """Largest N against smallest: throughput ratios per stage, the worst driver RSS ratio and the
    worst driver private-memory ratio (stages that ran to the end at both), the worst table's files per 100k rows and the review push rate
    at the largest N."""
    small, big = min(results), max(results)
    out: dict[str, float] = {}
    both = [s for s in STAGES if all(s in results[n] and results[n][s].per_s and not results[n][s].returncode for n in (small, big))]
    for stage in both:
        out[f"scale_{stage}_throughput_ratio_10x"] = results[big][stage].per_s / results[small][stage].per_s
    for figure, memory in (("scale_driver_rss_ratio_10x", "driver_peak_rss"), ("scale_driver_private_ratio_10x", "driver_peak_private")):
        grown = [getattr(results[big][s], memory) / getattr(results[small][s], memory) for s in both if getattr(results[small][s], memory)]
        if grown:
            out[figure] = max(grown)
    last = [run for run in results[big].values() if run.tables]
    if last:
        out["scale_files_per_100k_rows"] = max(files_per_100k(last[-1].tables, big).values())
    review = results[big].get("review")
    if review and review.per_s:
        out["scale_review_push_per_s"] = review.per_s
    return out


def files_per_100k(tables: dict[str, dict[str, int]], feed_rows: int) -> dict[str, float]:
    """Files of each table per 100k feed rows: what a table costs to list and read as the feed grows
    (per its own rows it would punish small tables such as the 5% sample)."""
    return {name: t["files"] / feed_rows * 100_000 for name, t in tables.items()}


def plot(results: dict[int, dict[str, StageRun]], out: Path) -> str:
    plt = pyplot()
    sizes = sorted(results)
    fig, (time_ax, rss_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    for colour, stage in enumerate(STAGES):
        points = [(n, results[n][stage]) for n in sizes if stage in results[n] and results[n][stage].seconds]
        if not points:
            continue
        xs = [n for n, _ in points]
        time_ax.plot(xs, [r.seconds for _, r in points], marker="o", color=f"C{colour}", label=stage)
        rss_ax.plot(xs, [r.driver_peak_rss / 2**20 for _, r in points], marker="o", color=f"C{colour}", label=f"{stage} driver")
        if any(r.worker_peak_rss for _, r in points):
            rss_ax.plot(xs, [r.workers_peak_rss / 2**20 for _, r in points], marker="x", linestyle="--", color=f"C{colour}", label=f"{stage} Ray workers (sum)")
    for ax, title, unit in ((time_ax, "wall time per stage", "seconds"), (rss_ax, "peak RSS per stage", "MiB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
        ax.tick_params(axis="x", which="minor", labelbottom=False)
        ax.set_xlabel("feed rows (N)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.legend(fontsize=7)
    fig.suptitle("finner at feed scale (feeds rewritten from the real headlines)")
    return save_figure(fig, Store(str(out)), artifacts.REPORTS_DIR, "bench_scale.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", help="feed sizes N (default: --quick's)")
    parser.add_argument("--quick", action="store_true", help=f"N = {' and '.join(f'{n:,}' for n in QUICK_ROWS)}")
    parser.add_argument("--out", default="finner-data/bench-scale", help="work folder: feeds, stores, logs, the JSON and the plot")
    parser.add_argument("--model", default="", help="score with this GLiNER checkpoint instead of training one")
    parser.add_argument("--train-rows", type=int, default=400, help="labelled feed rows the one model trains on")
    parser.add_argument("--train-steps", type=int, default=40, help="training steps of the one model (batch of 4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the feeds")
    parser.add_argument("--skip", nargs="+", default=[], choices=STAGES, help="stages not run (a later stage needs the earlier ones' tables)")
    args = parser.parse_args()
    stop_on_signals()  # `kill` as well as Ctrl-C stops the servers and clusters it started
    sys.stdout.reconfigure(line_buffering=True)  # progress lines as they come, also into a file
    sizes = sorted(set(args.rows or QUICK_ROWS))
    if any(n < 1_000 for n in sizes) or any(v < 1 for v in (args.train_rows, args.train_steps)):
        parser.error("--rows: at least 1000 each; --train-rows and --train-steps: at least 1")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for rows in sizes:  # a cut-off run goes on only with the seed it began with
        _recorded(out / f"n{rows}", rows, args.seed)
    results: dict[int, dict[str, StageRun]] = {}
    model: dict[str, str] = {"path": args.model} if args.model else {"train_store": str(out / f"n{sizes[0]}" / "store")}
    with Argilla(out / "argilla") if "review" not in args.skip else contextlib.nullcontext() as argilla:
        for rows in sizes:
            results[rows] = run_size(rows, out, argilla, model, args)
    failed = [f"N={n} {s}" for n, runs in results.items() for s, r in runs.items() if r.returncode]
    figures = ratios(results) if len(sizes) > 1 else {}
    chart = plot(results, out)
    report = {
        "sizes": sizes,
        "factor": max(sizes) / min(sizes),
        "model": {**model, "train_rows": args.train_rows, "train_steps": args.train_steps},
        "cpus": os.cpu_count(),
        "stages": {str(n): {s: {**asdict(r), "per_s": r.per_s} for s, r in runs.items()} for n, runs in results.items()},
        "files_per_100k_rows": {str(n): files_per_100k(list(runs.values())[-1].tables, n) for n, runs in results.items()},
        "bench": figures,
        "failed": failed,
    }
    (out / "bench_scale.json").write_text(json.dumps(report, indent=2))
    print(f"measurements: {out / 'bench_scale.json'}; chart: {chart}")
    if len(sizes) > 1 and max(sizes) != 10 * min(sizes):
        print(f"note: the *_10x figures compare N={max(sizes):,} with N={min(sizes):,} ({max(sizes) / min(sizes):g}x)")
    for name, value in figures.items():
        print(f"BENCH {name} {value:.3f}")
    if failed:
        raise SystemExit(f"failed stages: {', '.join(failed)}")


if __name__ == "__main__":
    main()
