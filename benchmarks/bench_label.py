"""Labeling throughput against a fixed-capacity endpoint: our Ray job vs the case study's gather loop.

    python benchmarks/bench_label.py [--quick] [--plot label_throughput.png]

The endpoint is our chat server (`finner.testing.chat_server`) in its own process with C slots and
a heavy-tailed (log-normal) service time, like a TGI server with `max_concurrent_requests=C`. Its
capacity is C / mean service time. Both clients are measured at the server, from the answers it
sent:

* **our job** (`finner.pipeline.label` on a local Ray, actor pool with a sliding window) labels
  real headlines: its sustained answers/s (between the 10% and 90% answer) over the capacity is
  `label_saturation`;
* **the seed loop** re-implements the case study: batches of 128 sent with `asyncio.gather` through
  `AsyncInferenceClient.chat_completion`, each batch waiting for its slowest request.
  `label_vs_seed_loop` is our sustained rate over the seed's.

The gazetteer behind the test endpoint answers every request, so its own speed (the listing
gazetteer over every real headline, in this process) is measured too: `gazetteer_headlines_per_s`.

Ends with `BENCH label_saturation <ratio>`, `BENCH label_vs_seed_loop <ratio>` and
`BENCH gazetteer_headlines_per_s <rate>`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"
HEADLINES = SHARED / "benzinga_headlines.parquet"
LISTINGS = SHARED / "company_listings.csv"
SEED_BATCH = 128


def sustained_rate(answer_times: list[float]) -> float:
    """Answers per second between the 10% and the 90% answer: the steady state, without ramp-up and drain."""
    times = sorted(answer_times)
    lo, hi = int(len(times) * 0.1), int(len(times) * 0.9)
    return (hi - lo) / (times[hi] - times[lo]) if hi > lo and times[hi] > times[lo] else 0.0


def whole_rate(seen: dict) -> float:
    return seen["answered"] / (seen["last_answer_at"] - seen["first_request_at"])


def run_ours(url: str, rows: int, actors: int, in_flight: int, workdir: Path) -> None:
    from finner.label import LabelConfig
    from finner.pipeline import cli
    from finner.pipeline.label import LabelRunConfig, run_labeling
    from finner.source import SourceConfig, ingest
    from finner.store import Store
    from finner.testing.feeds import write_scaled_feed

    feed = write_scaled_feed(HEADLINES, LISTINGS, rows, workdir / "feed.parquet") if rows > 16_000 else HEADLINES
    store = Store(str(workdir / "store"))
    ingest(SourceConfig(path=str(feed), limit=rows), store, progress=False)
    cli.init_ray()
    label = LabelConfig(endpoint=url, max_in_flight=in_flight, timeout_s=120)
    summary = run_labeling(store, label, LabelRunConfig(actors=actors, batch_rows=128, batches_per_actor=8), progress=False)
    print(f"  our job: {summary.line(LabelRunConfig())}")


def run_seed_loop(url: str, titles: list[str]) -> None:
    """The case study's loop: batches of 128 through asyncio.gather, failures printed and dropped."""
    from huggingface_hub import AsyncInferenceClient

    from finner.label import messages_for, response_format

    client = AsyncInferenceClient(base_url=url)
    grammar = response_format("tgi")

    async def llm_engine(messages):
        try:
            response = await client.chat_completion(messages=messages, model="ENDPOINT", temperature=0.1, response_format=grammar, max_tokens=512)
            return response.choices[0].message.content
        except Exception as err:
            print(f"Error in LLM engine: {err}")
            return "failed"

    async def loop():
        answers = []
        for start in range(0, len(titles), SEED_BATCH):
            batch = titles[start : start + SEED_BATCH]
            answers += await asyncio.gather(*(llm_engine(messages_for(t)) for t in batch))
        return answers

    answers = asyncio.run(loop())
    print(f"  seed loop: {len(answers)} answers, {sum(a == 'failed' for a in answers)} failed")


def gazetteer_rate() -> float:
    """Headlines/s of the listing gazetteer labelling every real headline."""
    import pyarrow.parquet as pq

    from finner.listing_labeller import Gazetteer

    gazetteer = Gazetteer.from_listings(LISTINGS)
    titles = pq.read_table(HEADLINES, columns=["title"]).column("title").to_pylist()
    started = time.perf_counter()
    for title in titles:
        gazetteer.label(title)
    return len(titles) / (time.perf_counter() - started)


def plot(series: dict[str, list[float]], capacity: float, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for name, times in series.items():
        start = min(times)
        seconds = [t - start for t in times]
        bins = range(0, int(max(seconds)) + 2)
        counts = [0] * len(bins)
        for s in seconds:
            counts[int(s)] += 1
        ax.plot(list(bins), counts, label=name)
    ax.axhline(capacity, color="grey", linestyle="--", label=f"endpoint capacity ({capacity:.0f}/s)")
    ax.set_xlabel("seconds since first request")
    ax.set_ylabel("answers per second")
    ax.set_title("Labeling throughput at a fixed-capacity endpoint (heavy-tailed latency)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot: {path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller runs (under 5 minutes)")
    p.add_argument("--capacity", type=int, default=128, help="endpoint slots (TGI's default max_concurrent_requests)")
    p.add_argument("--median-s", type=float, default=0.5, help="median service time")
    p.add_argument("--sigma", type=float, default=1.0, help="log-normal sigma of the service time")
    p.add_argument("--actors", type=int, default=2)
    p.add_argument("--in-flight", type=int, default=96, help="requests in flight per actor")
    p.add_argument("--plot", default="label_throughput.png", help="PNG of answers/s over time")
    args = p.parse_args()
    ours_rows, seed_rows = (4_000, 10 * SEED_BATCH) if args.quick else (20_000, 40 * SEED_BATCH)

    import pyarrow.parquet as pq

    from finner.testing.chat_server import FaultyServerConfig, reset_stats, serve_chat, stats

    server = FaultyServerConfig(
        listings=str(LISTINGS),
        capacity=args.capacity,
        latency_median_s=args.median_s,
        latency_sigma=args.sigma,
        latency_cap_s=10 * args.median_s,
        faults=(),
    )
    print(
        f"endpoint: {args.capacity} slots, log-normal service time (median {args.median_s}s, sigma {args.sigma}, "
        f"cap {10 * args.median_s}s); machine: 2-core CPU container; our job: {args.actors} actors x {args.in_flight} in flight"
    )
    with serve_chat(server, in_subprocess=True) as url, tempfile.TemporaryDirectory() as workdir:
        started = time.perf_counter()
        run_ours(url, ours_rows, args.actors, args.in_flight, Path(workdir))
        ours = stats(url)
        print(f"  ({time.perf_counter() - started:.0f}s with Ray start-up)")
        reset_stats(url)
        titles = pq.read_table(HEADLINES, columns=["title"]).column("title").to_pylist()[:seed_rows]
        run_seed_loop(url, titles)
        seed = stats(url)

    capacity = args.capacity / (ours["service_s"] / ours["answered"])
    seed_capacity = args.capacity / (seed["service_s"] / seed["answered"])
    our_rate, seed_rate = sustained_rate(ours["answer_times"]), sustained_rate(seed["answer_times"])
    print(f"our job:   {ours['answered']} answers, sustained {our_rate:.1f}/s, whole run {whole_rate(ours):.1f}/s, capacity {capacity:.1f}/s")
    print(f"seed loop: {seed['answered']} answers, sustained {seed_rate:.1f}/s, whole run {whole_rate(seed):.1f}/s, capacity {seed_capacity:.1f}/s")
    plot({"our job (Ray actors, sliding window)": ours["answer_times"], "seed loop (gather batches of 128)": seed["answer_times"]}, capacity, args.plot)
    print(f"BENCH label_saturation {our_rate / capacity:.3f}")
    print(f"BENCH label_vs_seed_loop {our_rate / seed_rate:.2f}")
    print(f"BENCH gazetteer_headlines_per_s {gazetteer_rate():.0f}")


if __name__ == "__main__":
    main()
