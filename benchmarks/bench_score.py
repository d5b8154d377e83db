"""Scoring throughput: each runtime against gliner's own batching, the split Ray Data job against a
single actor, and the model actor's body fed by preparation processes against a raw forward loop.

    python benchmarks/bench_score.py [--quick] [--gpu-stage [N]]

One run, one fine-tuned model, one machine, the same real Benzinga headlines (none of them seen
in training):

* **model**: GLiNER on the offline all-MiniLM-L6-v2 encoder, fine-tuned in-process on real
  headlines labelled by the gazetteer (`finner.testing.labelled_headlines`), cached under
  `--cache` by its settings (an untrained head scores every span near 0.5, and near-threshold
  spans would make the agreement figures meaningless);
* **runtimes** (CPU): one actor's body in-process (`Scorer.predict` over the job's batches:
  prepare, forward, decode) with each `--runtime`, against `GLiNER.inference` with its defaults
  (batch_size 8, input order), both on `--threads` threads. gliner is timed before and after the
  runtimes and the better figure is the denominator (a shared machine's load moves), and each
  runtime's spans are compared with torch fp32's (exact-span F1);
* **jobs** (CPU with Ray): the scoring job with one actor, preparation in CPU tasks (`--prepare
  tasks`, the default) and in the actor (`--prepare actor`, how the job ran before the split),
  measured once the actor is up (`ScoreSummary.steady_hps`); their spans must be identical;
* **GPU stage** (`--gpu-stage N`, needs no Ray): the scoring actor's body (`ScoreActor`) in this
  process, fed with batches that `prepare_task`, the preparation stage's own function, prepares in N
  worker processes, against a raw forward loop over pre-collated batches (no tokenization, no
  decoding: the model's limit on this device). On CUDA this is the GPU actor; on CPU the figure is
  the CPU's.

Ends with `BENCH` lines: score_<runtime>_vs_gliner, score_<runtime>_span_f1 (CPU), score_split_vs_single
and score_split_same_spans (CPU with Ray), score_gpu_stage_vs_raw and score_gpu_stage_same_spans
(spans of the stage against gliner's own inference; with --gpu-stage).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
REAL, LISTINGS = SHARED / "benzinga_headlines.parquet", SHARED / "company_listings.csv"
sys.path.insert(0, str(REPO))

# The benchmark's checkpoint: a few hundred gazetteer-labelled headlines, a few epochs (~0.7 span
# F1 against the gazetteer's labels on held-out headlines: confident, meaningful spans).
TRAINING = {"rows": 500, "epochs": 4, "learning_rate": 5e-5, "head_learning_rate": 1e-3}


def fine_tuned_checkpoint(cache: Path) -> tuple[str, set[str]]:
    """A GLiNER fine-tuned as TRAINING says, trained once and kept under `cache` (keyed by the
    settings); returns its path and the titles it was trained on."""
    import pyarrow as pa

    from finner.ids import stable_hash
    from finner.models.registry import ModelSpec, build_model
    from finner.testing.labelled_headlines import labelled_rows
    from finner.train import fit_locally

    rows = labelled_rows(REAL, LISTINGS, TRAINING["rows"])
    seen = {row["title"] for row in rows}
    target = cache / f"gliner-{stable_hash(TRAINING, length=12)}"
    if (target / "gliner_config.json").is_file():
        return str(target), seen
    print(f"training the benchmark's checkpoint once ({TRAINING}) into {target} ...", flush=True)

    def table(part: list[dict]) -> pa.Table:
        return pa.table({"id": [r["id"] for r in part], "title": [r["title"] for r in part], "spans": [r["spans"] for r in part]})

    split = len(rows) * 4 // 5
    settings = {k: v for k, v in TRAINING.items() if k != "rows"}
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as work:
        best = fit_locally(build_model(ModelSpec("gliner", offline=True)), table(rows[:split]), table(rows[split:]), work, **settings)
        shutil.move(best, target)
    return str(target), seen


def span_sets(rows: list[list[dict]]) -> list[tuple]:
    return [tuple(sorted((s["start"], s["end"]) for s in row)) for row in rows]


def same_spans(reference: list[list[dict]], other: list[list[dict]]) -> float:
    """Fraction of headlines whose spans (start, end) are the same in both."""
    return sum(a == b for a, b in zip(span_sets(reference), span_sets(other))) / len(reference)


def gliner_inference(gliner, titles: list[str], labels: list[str], threshold: float) -> tuple[float, list[list[dict]]]:
    """headlines/s of `GLiNER.inference` with its defaults, and its spans."""
    gliner.inference(titles[:8], labels, threshold=threshold)  # warm-up
    started = time.perf_counter()
    entities = gliner.inference(titles, labels, threshold=threshold)
    return len(titles) / (time.perf_counter() - started), entities


def actor_body(scorer, titles: list[str], batch_rows: int) -> tuple[float, list[list[dict]]]:
    """headlines/s of one actor preparing and scoring the job's batches in this process, and its spans."""
    scorer.predict(titles[:batch_rows])  # warm-up
    started = time.perf_counter()
    spans = [s for first in range(0, len(titles), batch_rows) for s in scorer.predict(titles[first : first + batch_rows])]
    return len(titles) / (time.perf_counter() - started), spans


def raw_forward(scorer, batches: list[dict]) -> float:
    """headlines/s of the forward passes alone, on pre-collated, length-bucketed batches."""
    import torch

    sync = torch.cuda.synchronize if scorer.device == "cuda" else (lambda: None)
    scorer.forward(batches[0])  # warm-up (allocator, kernels)
    sync()
    started = time.perf_counter()
    for batch in batches:
        scorer.forward(batch)
    sync()
    return sum(len(b["rows"]) for b in batches) / (time.perf_counter() - started)


def _prepare_worker(model: str, labels: tuple, forward_rows: int, blocks: list, ready, queue) -> None:
    """One preparation process: load the tokenizer, wait for the others, prepare its blocks."""
    from finner.pipeline.score import prepare_task

    prepare_task(blocks[0].slice(0, 8), model, labels, forward_rows)  # loads the model once per process
    ready.wait()
    for block in blocks:
        queue.put(prepare_task(block, model, labels, forward_rows))


def gpu_stage(config, titles: list[str], batch_rows: int, processes: int) -> tuple[float, list[list[dict]]]:
    """headlines/s of the scoring actor's body in this process, fed by `processes` preparation
    processes (from the moment all are ready to the last batch scored), and its spans."""
    import multiprocessing

    import pyarrow as pa

    from finner.pipeline.score import ScoreActor, prepare_task

    blocks = [pa.table({"id": [str(i) for i in range(first, min(first + batch_rows, len(titles)))], "title": titles[first : first + batch_rows]})
              for first in range(0, len(titles), batch_rows)]  # fmt: skip
    context = multiprocessing.get_context("spawn")
    ready, queue = context.Barrier(processes + 1), context.Queue(maxsize=2 * processes)
    workers = [
        context.Process(target=_prepare_worker, args=(config.preparing_model(), config.labels, config.forward_rows, blocks[i::processes], ready, queue))
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    actor = ScoreActor(dataclasses.asdict(config))
    actor(prepare_task(blocks[0], config.preparing_model(), config.labels, config.forward_rows))  # warm-up
    ready.wait(timeout=600)
    started = time.perf_counter()
    scored = [actor(queue.get(timeout=600)) for _ in blocks]
    elapsed = time.perf_counter() - started
    for worker in workers:
        worker.join()
    spans: list[list[dict]] = [[] for _ in titles]
    for row in (r for table in scored for r in table.to_pylist()):
        for i, start, end in zip(row["span_title"], row["span_start"], row["span_end"]):
            spans[int(row["ids"][i])].append({"start": start, "end": end})
    return len(titles) / elapsed, spans


def unseen_rows(table, seen: set[str]):
    """The rows of `table` whose title was not among the training headlines."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return table.filter(pc.invert(pc.is_in(table["title"], value_set=pa.array(sorted(seen), pa.string()))))


def ray_job(feed: Path, workdir: Path, config, prepare: str, batch_rows: int):
    """The scoring job, one CPU actor, on a fresh store holding `feed`: its summary and spans by title."""
    from finner.pipeline.score import ScoreRunConfig, run_scoring
    from finner.source import SourceConfig, ingest
    from finner.store import Store

    store = Store(str(workdir / f"store-{prepare}"))
    ingest(SourceConfig(path=str(feed)), store, progress=False)
    cpus = os.cpu_count() or 1
    task_cpus = 0.5 if cpus <= 2 else 1.0  # one preparation task beside the actor
    run = ScoreRunConfig(batch_rows=batch_rows, prepare=prepare, task_cpus=task_cpus, actor_cpus=max(cpus - task_cpus, 0.5), gpus="no")
    summary = run_scoring(store, config, run, progress=False)
    title_of = dict(zip(*(store.read("headlines", columns=["id", "title"])[c].to_pylist() for c in ("id", "title"))))
    spans = {title_of[p["id"]]: p["spans"] for p in store.read("predictions", columns=["id", "spans"]).to_pylist()}
    return summary, spans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,048 headlines (under 5 minutes on a 2-core CPU once the checkpoint is cached)")
    parser.add_argument("--rows", type=int, help="headlines to score (default: 2,048 quick, 4,096 full; x8 on GPU)")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of gliner, of each runtime and of the job's actor; 0 = torch's default")
    parser.add_argument("--runtimes", nargs="+", default=["torch", "onnx", "onnx-int8"], help="CPU runtimes to measure")
    parser.add_argument("--precision", choices=["auto", "fp32", "fp16", "bf16"], default="fp32", help="CUDA autocast")
    parser.add_argument("--batch-rows", type=int, default=256, help="headlines per job batch (one actor call)")
    parser.add_argument(
        "--gpu-stage", type=int, nargs="?", const=0, default=None, metavar="N",
        help="also time the actor's body fed by N preparation processes (default N: the CPUs less one)",
    )  # fmt: skip
    parser.add_argument("--no-jobs", action="store_true", help="skip the Ray jobs (split vs single)")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "finner" / "bench_score",
                        help="where the fine-tuned checkpoint and ONNX exports are kept between runs")  # fmt: skip
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import pyarrow.parquet as pq
    import torch

    from finner.score import ScoreConfig, Scorer, choose_runtime, default_forward_rows, runtime_agreement

    gpus = torch.cuda.device_count()
    device = f"{gpus}x {torch.cuda.get_device_name(0)}" if gpus else f"CPU, {os.cpu_count()} cores"
    rows = args.rows or (2048 if args.quick else 4096) * (8 if gpus else 1)
    checkpoint, seen = fine_tuned_checkpoint(args.cache)
    source = pq.read_table(REAL, columns=["title", "date", "symbol", "publisher"])
    unseen = unseen_rows(source, seen)
    feed_table = unseen.slice(0, rows)
    titles = [" ".join(t.split()) for t in feed_table["title"].to_pylist()]  # as ingest stores them
    base = ScoreConfig(
        model=(checkpoint,), threshold=(args.threshold,), threads=args.threads, precision=args.precision, runtime="torch",
        onnx_cache=str(args.cache / "onnx"), forward_rows=default_forward_rows("cuda" if gpus else "cpu"),
    )  # fmt: skip
    reference = Scorer(base)
    labels = list(base.labels)
    print(f"device: {device}; {len(titles)} real headlines unseen in training; fine-tuned GLiNER ({checkpoint}); "
          f"threshold {args.threshold}; {args.threads} threads; forward batches of {base.forward_rows}, job batches of {args.batch_rows}", flush=True)  # fmt: skip
    bench: dict[str, float] = {}

    if not gpus:
        theirs, gliner_spans = gliner_inference(reference.gliner, titles, labels, args.threshold)
        print(f"gliner inference(), its defaults:   {theirs:8.1f} headlines/s", flush=True)
        measured: dict[str, tuple[float, list]] = {}
        for runtime in args.runtimes:
            scorer = reference if runtime == "torch" else Scorer(dataclasses.replace(base, runtime=runtime), loaded=reference.models)
            measured[runtime] = actor_body(scorer, titles, args.batch_rows)
            print(f"one actor, --runtime {runtime:<10} {measured[runtime][0]:8.1f} headlines/s", flush=True)
        again, _ = gliner_inference(reference.gliner, titles, labels, args.threshold)
        print(f"gliner inference(), measured again: {again:8.1f} headlines/s", flush=True)
        theirs = max(theirs, again)
        torch_spans = measured["torch"][1] if "torch" in measured else reference.predict(titles)
        for runtime, (hps, spans) in measured.items():
            bench[f"score_{runtime}_vs_gliner"] = hps / theirs
            bench[f"score_{runtime}_span_f1"] = runtime_agreement(torch_spans, spans)
        choice = choose_runtime(dataclasses.replace(base, runtime="auto"), titles[:200], min_f1=0.98)
        print(f"--runtime auto (tolerance 0.02, the feed's first 200 headlines) chooses {choice.runtime}: {choice.reason}", flush=True)

        if not args.no_jobs:
            import ray

            from finner.pipeline import cli

            with tempfile.TemporaryDirectory() as tmp:
                feed = Path(tmp) / "feed.parquet"
                pq.write_table(feed_table, feed)
                cli.init_ray()
                job_config = dataclasses.replace(base, runtime=choice.runtime)
                single, single_spans = ray_job(feed, Path(tmp), job_config, "actor", args.batch_rows)
                split, split_spans = ray_job(feed, Path(tmp), job_config, "tasks", args.batch_rows)
                ray.shutdown()
            for name, summary in (("preparing in the actor", single), ("preparing in CPU tasks", split)):
                print(f"job, 1 actor ({choice.runtime}), {name}: {summary.steady_hps:8.1f} headlines/s once up "
                      f"({summary.job_hps:.1f}/s end to end; actor {summary.per_actor_hps:.1f}/s busy, "
                      f"preparation {summary.prepare_hps_per_cpu:.1f}/s per CPU)", flush=True)  # fmt: skip
            bench["score_split_vs_single"] = split.steady_hps / single.steady_hps
            bench["score_split_same_spans"] = sum(split_spans[t] == single_spans[t] for t in split_spans) / len(split_spans)

    if args.gpu_stage is not None:
        processes = args.gpu_stage or max(1, (os.cpu_count() or 2) - 1)
        stage_config = dataclasses.replace(base, runtime="torch", device="cuda" if gpus else "cpu")
        stage_scorer = reference if stage_config == base else Scorer(stage_config, loaded=reference.models)
        batches = [b for first in range(0, len(titles), args.batch_rows) for b in stage_scorer.prepare(titles[first : first + args.batch_rows]).batches]
        raw = raw_forward(stage_scorer, batches)
        print(f"raw forward loop, pre-collated:     {raw:8.1f} headlines/s", flush=True)
        hps, stage_spans = gpu_stage(stage_config, titles, args.batch_rows, processes)
        print(f"actor body fed by {processes} preparation process(es): {hps:8.1f} headlines/s", flush=True)
        raw = max(raw, raw_forward(stage_scorer, batches))
        _, gliner_spans = gliner_inference(reference.gliner, titles, labels, args.threshold) if gpus else (None, gliner_spans)
        bench["score_gpu_stage_vs_raw"] = hps / raw
        bench["score_gpu_stage_same_spans"] = same_spans(gliner_spans, stage_spans)

    for name, value in bench.items():
        print(f"BENCH {name} {value:.4f}")


if __name__ == "__main__":
    main()
