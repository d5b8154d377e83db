"""Scoring throughput: our Ray Data job against a raw forward loop and against gliner's own batching.

    python benchmarks/bench_score.py [--quick]

One run, one model, one machine, the same headlines (real Benzinga titles, scaled up with
`finner.testing.feeds` when more rows are asked for than the file has):

  (a) raw: the model's forward pass alone over pre-tokenized, length-bucketed batches (no
      tokenization, no decoding, no I/O): the practical limit of this model on this device;
  (b) gliner: `GLiNER.inference` with its defaults (batch_size 8, input order);
  (c) ours: `jobs.score`'s Ray Data job (read, skip done, actors, decode, append to the store) with
      1 and 2 actors, measured once the actors are up (`ScoreSummary.steady_hps`; a long feed
      converges to it), the end-to-end figure (actor start-up included) printed beside it.

(a) is measured before and after (c) and the better figure kept: the load of a shared machine moves.

The model is GLiNER on the offline all-MiniLM-L6-v2 encoder with an untrained span head (same
compute as a fine-tuned one; its spans mean nothing). CUDA is used when present (bf16/fp16
autocast for (a) and (c); (b) runs gliner's default fp32). Ends with `BENCH` lines:
score_vs_raw = (c, 1 actor) / (a) and score_vs_gliner = (c, 1 actor) / (b), each on the same
resources (one model, `--threads` threads; 2 actors show how the job scales on the machine),
score_same_spans = fraction of headlines where (b) and (c) give the same spans.

On a GPU machine without Ray, (c) is the actor's body timed in-process, and
score_shared_gpu_<N>_vs_raw is N such bodies in N processes sharing the GPU (what N actors with
`--gpus-per-actor 1/N` run): one actor leaves the GPU idle while it prepares and decodes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "benzinga_headlines.parquet"
sys.path.insert(0, str(REPO))


def span_sets(entities: list[list[dict]]) -> list[tuple]:
    return [tuple(sorted((e["start"], e["end"], e["label"]) for e in row)) for row in entities]


def raw_forward(scorer, titles: list[str], batch_rows: int) -> float:
    """(a): headlines/s of the forward passes alone, on batches bucketed like the job's."""
    import torch

    batches = []
    for start in range(0, len(titles), batch_rows):  # the job sorts within each Ray batch
        prepared = scorer.model.prepare_batch(titles[start : start + batch_rows], list(scorer.config.labels))
        batches += [scorer.collate(prepared, chunk) for chunk in scorer.buckets(prepared)]
    scorer.forward(batches[0])  # warm-up (allocator, kernels)
    sync = torch.cuda.synchronize if scorer.device == "cuda" else (lambda: None)
    sync()
    started = time.perf_counter()
    for batch in batches:
        scorer.forward(batch)
    sync()
    return len(titles) / (time.perf_counter() - started)


def gliner_inference(scorer, titles: list[str]) -> tuple[float, list[list[dict]]]:
    """(b): headlines/s of gliner's own `inference` with its default batching, and its spans."""
    model, labels, threshold = scorer.model, list(scorer.config.labels), scorer.config.threshold
    model.inference(titles[:8], labels, threshold=threshold)  # warm-up
    started = time.perf_counter()
    entities = model.inference(titles, labels, threshold=threshold)
    return len(titles) / (time.perf_counter() - started), entities


def predict_raw(scorer, titles: list[str], batch_rows: int) -> tuple[float, list[list[dict]]]:
    """(c) without Ray: what each actor runs on its batches, timed in this process."""
    started = time.perf_counter()
    entities = [e for start in range(0, len(titles), batch_rows) for e in scorer.predict_raw(titles[start : start + batch_rows])]
    return len(titles) / (time.perf_counter() - started), entities


def _shared_gpu_worker(config, titles: list[str], batch_rows: int, barrier, results) -> None:
    """One process standing in for one actor on a shared GPU: load, warm up, wait for the others, time."""
    from finner.score import Scorer

    scorer = Scorer(config)
    scorer.predict_raw(titles[:batch_rows])
    barrier.wait()
    started = time.perf_counter()
    predict_raw(scorer, titles, batch_rows)
    results.put((started, time.perf_counter(), len(titles)))


def shared_gpu(config, titles: list[str], batch_rows: int, processes: int) -> float:
    """(c) without Ray, `processes` actors sharing one GPU (`--gpus-per-actor 1/processes`):
    each in its own process, as Ray actors are, on its share of the headlines; headlines/s of all
    of them together, from the first start to the last finish (clocks of one machine)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    workers = [
        context.Process(target=_shared_gpu_worker, args=(config, titles[i::processes], batch_rows, barrier, results)) for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    finished = [results.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join()
    return sum(rows for _, _, rows in finished) / (max(end for _, end, _ in finished) - min(start for start, _, _ in finished))


def ray_job(feed: Path, workdir: Path, config, actors: int, batch_rows: int, gpus: int):
    """(c): the scoring job on a fresh store holding `feed`; returns its summary and the store."""
    from finner.pipeline.score import ScoreRunConfig, run_scoring
    from finner.source import SourceConfig, ingest
    from finner.store import Store

    store = Store(str(workdir / f"store-{actors}"))
    ingest(SourceConfig(path=str(feed)), store, progress=False)
    run = ScoreRunConfig(
        min_actors=actors,
        max_actors=actors,
        batch_rows=batch_rows,
        gpus_per_actor=min(1.0, gpus / actors) if gpus else 1.0,
        actor_cpus=1.0 if gpus else ((os.cpu_count() or 1) - 0.25) / actors,  # leaves a little for Ray Data's own tasks
    )
    summary = run_scoring(store, config, run, progress=False)
    return summary, store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer headlines (under 5 minutes on a 2-core CPU)")
    parser.add_argument("--rows", type=int, help="headlines to score (default: 384 quick, 4096 full; x8 on GPU)")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads of (a), (b) and each actor of (c); 0 = torch's default (on a busy shared CPU one thread is fastest)"
    )
    parser.add_argument("--headlines", type=Path, default=REAL, help="parquet of real headlines to score (default: ../shared/data)")
    parser.add_argument("--precision", choices=["auto", "fp32", "fp16", "bf16"], default="auto", help="CUDA autocast of (a) and (c)")
    parser.add_argument(
        "--shared-gpu", type=int, nargs="*", default=[4, 8],
        help="on a GPU without Ray: also time this many actor processes sharing the GPU (--gpus-per-actor 1/N)",
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import pyarrow.parquet as pq
    import torch

    try:
        import ray
    except ImportError:  # e.g. a GPU box whose image has no Ray: measure the actor's body alone
        ray = None

    from finner.pipeline import cli
    from finner.score import ScoreConfig, Scorer, untrained_checkpoint
    from finner.testing.feeds import write_scaled_feed

    gpus = torch.cuda.device_count()
    device = f"{gpus}x {torch.cuda.get_device_name(0)}" if gpus else f"CPU, {os.cpu_count()} cores"
    rows = args.rows or (384 if args.quick else 4096) * (8 if gpus else 1)
    batch_rows = max(32, rows // 8)  # >= 4 Ray batches per actor with 2 actors
    shared: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        feed = write_scaled_feed(args.headlines, rows, workdir / "feed.parquet")
        titles = [" ".join(t.split()) for t in pq.read_table(feed, columns=["title"])["title"].to_pylist()]  # as ingest stores them
        config = ScoreConfig(model=untrained_checkpoint(str(workdir / "gliner")), threshold=args.threshold, precision=args.precision, threads=args.threads)
        scorer = Scorer(config)
        print(f"device: {device}; {rows} real headlines (scaled from {args.headlines.name}); GLiNER on the offline encoder, untrained head; "
              f"threshold {args.threshold}; forward batches of {scorer.forward_rows}, Ray batches of {batch_rows}")

        raw = raw_forward(scorer, titles, batch_rows)
        print(f"(a) raw forward loop, pre-tokenized:      {raw:8.1f} headlines/s")
        # On a shared machine the load moves between runs: (a) is measured again after (c), and
        # the better figure is the denominator, so the ratio errs on the side of (c) looking worse.
        theirs, gliner_entities = gliner_inference(scorer, titles)
        print(f"(b) gliner inference(), its defaults:     {theirs:8.1f} headlines/s  "
              f"({sum(map(len, gliner_entities)) / len(titles):.1f} spans/headline)")
        if ray is None:
            print("ray is not installed here: (c) is the scoring actor's body (Scorer.predict over the job's batches) in-process")
            predict_raw(scorer, titles, batch_rows)  # warm-up
            hps, ours_entities = predict_raw(scorer, titles, batch_rows)
            ours = {1: hps}
            print(f"(c) our scoring actor's body, in-process: {hps:8.1f} headlines/s")
            if gpus:  # one actor leaves the GPU idle while it prepares and decodes: share it
                for processes in args.shared_gpu:
                    shared[processes] = shared_gpu(config, titles, batch_rows, processes)
                    print(f"(c) {processes} actor processes sharing the GPU:  {shared[processes]:8.1f} headlines/s together")
        else:
            cli.init_ray()
            ours = {}
            for actors in (1, 2):
                summary, store = ray_job(feed, workdir, config, actors, batch_rows, gpus)
                ours[actors] = summary.steady_hps
                print(f"(c) our Ray Data job, {actors} actor(s):          {summary.steady_hps:8.1f} headlines/s once up "
                      f"({summary.job_hps:.1f}/s end to end, {summary.per_actor_hps:.1f}/s per actor while predicting)")
            ray.shutdown()
        raw_after = raw_forward(scorer, titles, batch_rows)
        print(f"(a) raw forward loop, measured again:     {raw_after:8.1f} headlines/s")
        raw = max(raw, raw_after)

        reference = dict(zip(titles, span_sets(gliner_entities)))
        if ray is None:
            by_title = dict(zip(titles, span_sets(ours_entities)))
        else:
            title_of = dict(zip(*(store.read("headlines", columns=["id", "title"])[c].to_pylist() for c in ("id", "title"))))
            predictions = store.read("predictions", columns=["id", "spans"]).to_pylist()
            by_title = {title_of[p["id"]]: span_sets([p["spans"]])[0] for p in predictions}
        same = sum(reference[t] == spans for t, spans in by_title.items()) / len(by_title)

    same_resources = ours[1]  # one actor: the same model, device and threads as (a) and (b)
    print(f"(c, 1 actor)/(a) = {same_resources / raw:.2f} (goal >= 0.9); (c, 1 actor)/(b) = {same_resources / theirs:.2f} (goal >= 2); "
          + (f"2 actors / 1 actor = {ours[2] / ours[1]:.2f}; " if 2 in ours else "") + f"same spans (b) vs (c): {same:.4f}")
    print(f"BENCH score_vs_raw {same_resources / raw:.3f}")
    print(f"BENCH score_vs_gliner {same_resources / theirs:.3f}")
    print(f"BENCH score_same_spans {same:.4f}")
    for processes, hps in shared.items():
        print(f"BENCH score_shared_gpu_{processes}_vs_raw {hps / raw:.3f}")


if __name__ == "__main__":
    main()
