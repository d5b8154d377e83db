"""Ingest headlines into the store's `headlines` table (bad rows go to `rejects` with a reason).

    python -m jobs.ingest                          # the embedded sample feed
    python -m jobs.ingest --path feed.parquet      # a local CSV / parquet / JSONL file or folder
    python -m jobs.ingest --hub                    # Benzinga rows of Zihan1004/FNSPID, streamed
"""

from __future__ import annotations

import sys

from finner.config import add_config_args
from finner.pipeline import cli
from finner.progress import say
from finner.source import SourceConfig, ingest


def main(argv: list[str] | None = None) -> int:
    p = cli.parser("python -m jobs.ingest", __doc__.split("\n\n")[0])
    add_config_args(p, SourceConfig)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)

    def body(config: SourceConfig) -> None:
        summary = ingest(config, cli.store_from(args), progress=not args.quiet)
        say(summary.line())

    return cli.run(body, args, "ingest", configs=(SourceConfig,))


if __name__ == "__main__":
    sys.exit(main())
