"""Ingest throughput and memory: the real headlines scaled to a large feed, streamed into `headlines`.

    python benchmarks/bench_source.py [--quick]

Each size runs in a fresh process so its peak RSS is its own; flat memory means the peak barely
moves while the feed grows. Ends with `BENCH <metric> <value>` lines.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "benzinga_headlines.parquet"
LISTINGS = REAL.with_name("company_listings.csv")


def one_run(rows: int, workdir: Path) -> dict:
    """Child process: time the ingest of a feed file the parent wrote, and its peak RSS."""
    sys.path.insert(0, str(REPO))
    from finner.source import SourceConfig, ingest
    from finner.store import Store

    feed = workdir / f"feed-{rows}.parquet"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    summary = ingest(SourceConfig(path=str(feed), batch_rows=20_000), Store(str(workdir / f"store-{rows}")), progress=False)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"rows": rows, "written": summary.written, "seconds": seconds, "peak_rss_kib": peak, "rss_before_kib": before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="30k and 100k rows only (default adds 300k)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_run(args.child, Path(args.workdir))))
        return
    sizes = [30_000, 100_000] if args.quick else [30_000, 100_000, 300_000]
    sys.path.insert(0, str(REPO))
    from finner.testing.feeds import write_scaled_feed

    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        for rows in sizes:
            write_scaled_feed(REAL, LISTINGS, rows, Path(workdir) / f"feed-{rows}.parquet")
            out = subprocess.run([sys.executable, __file__, "--child", str(rows), "--workdir", workdir], capture_output=True, text=True, check=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            results[rows] = result
            print(
                f"{rows:>8} rows (real headlines scaled up, perturbed): {result['written']} written, "
                f"{rows / result['seconds']:,.0f} rows/s, peak RSS {result['peak_rss_kib'] / 2**20:.2f} GiB"
            )
    big, small = results[100_000], results[30_000]
    print(f"BENCH ingest_100k_rows_per_s {100_000 / big['seconds']:.0f}")
    print(f"BENCH ingest_100k_peak_rss_gib {big['peak_rss_kib'] / 2**20:.3f}")
    print(f"BENCH ingest_rss_growth_100k_vs_30k {big['peak_rss_kib'] / small['peak_rss_kib']:.2f}")


if __name__ == "__main__":
    main()
