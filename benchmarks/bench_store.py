"""What a commit to a Delta table costs: appends of `predictions` rows by commit size, then the
resume read (the ids one model version scored) before and after the table is compacted.

    python benchmarks/bench_store.py [--quick]

One process appends one commit after another, as one write task of the scoring job does; the
commit size is what `jobs.score --commit-batches` and `--batch-rows` choose. Ends with
`BENCH <metric> <value>` lines.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.compute as pc

REPO = Path(__file__).resolve().parents[1]


def appends(root: str, commits: int, rows: int) -> dict[str, float]:
    sys.path.insert(0, str(REPO))
    from finner.score import prediction_rows
    from finner.store import Store

    store = Store(root)
    store.ensure("predictions")
    batches = [prediction_rows([f"h{k}-{i}" for i in range(rows)], [[] for _ in range(rows)], "v1", {}) for k in range(commits)]
    seconds = []
    for k, batch in enumerate(batches):
        start = time.perf_counter()
        store.append("predictions", batch, part=f"p{k}")
        seconds.append(time.perf_counter() - start)

    def resume_read() -> float:
        start = time.perf_counter()
        store.ids("predictions", filter=pc.field("model_version") == "v1", prune=[("model_version", "=", "v1")])
        return time.perf_counter() - start

    before = resume_read()
    start = time.perf_counter()
    store.compact("predictions")
    compact = time.perf_counter() - start
    return {
        "append_median_ms": 1000 * statistics.median(seconds),
        "append_p90_ms": 1000 * sorted(seconds)[int(0.9 * len(seconds))],
        "rows_per_s": commits * rows / sum(seconds),
        "resume_read_ms": 1000 * before,
        "compact_s": compact,
        "resume_read_compacted_ms": 1000 * resume_read(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer commits")
    args = parser.parse_args()
    commits = 30 if args.quick else 200
    with tempfile.TemporaryDirectory() as workdir:
        for rows in (512, 2048):
            r = appends(f"{workdir}/store-{rows}", commits, rows)
            print(
                f"{commits} commits of {rows} rows: append median {r['append_median_ms']:.1f} ms, p90 {r['append_p90_ms']:.1f} ms "
                f"({r['rows_per_s']:,.0f} rows/s); resume read {r['resume_read_ms']:.0f} ms over {commits} files, "
                f"{r['resume_read_compacted_ms']:.0f} ms after compaction ({r['compact_s']:.2f} s)"
            )
            print(f"BENCH append_median_ms_{rows} {r['append_median_ms']:.2f}")
            print(f"BENCH append_rows_per_s_{rows} {r['rows_per_s']:.0f}")


if __name__ == "__main__":
    main()
