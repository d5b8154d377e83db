"""Run finner's stages in order on one store; with no arguments, the embedded demo end to end.

Each stage reads and writes tables of the store, so any stage can be skipped or re-run alone,
and re-running the pipeline resumes: finished work is not redone.

    python -m jobs.pipeline                      # embedded sample, local Ray, ./finner-data
    python -m jobs.pipeline --path feed.parquet --skip label
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from finner.pipeline import cli


def ingest_stage(args) -> None:
    from jobs import ingest

    argv = ["--store", args.store] + (["--path", args.path] if args.path else []) + (["--hub"] if args.hub else [])
    if ingest.main(argv):
        raise SystemExit(2)


# Stage name -> runner, in data-flow order.
STAGES: dict[str, Callable] = {
    "ingest": ingest_stage,
}


def main(argv: list[str] | None = None) -> int:
    p = cli.parser("python -m jobs.pipeline", __doc__.split("\n\n")[0])
    p.add_argument("--path", help="local feed file or folder (default: the embedded sample)")
    p.add_argument("--hub", action="store_true", help="stream the FNSPID Benzinga rows from the Hugging Face hub")
    p.add_argument("--skip", nargs="*", default=[], choices=list(STAGES), help="stages not to run")
    p.add_argument("--only", nargs="*", choices=list(STAGES), help="run just these stages")
    args = p.parse_args(argv)

    def body() -> None:
        for name, stage in STAGES.items():
            if name in args.skip or (args.only and name not in args.only):
                print(f"[{name}] skipped")
                continue
            start = time.perf_counter()
            print(f"[{name}] running")
            stage(args)
            print(f"[{name}] done in {time.perf_counter() - start:.1f}s")

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
