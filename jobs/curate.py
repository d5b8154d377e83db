"""Curate the labelled feed: company spans, company clusters, and the stratified, date-split sample.

    python -m jobs.curate                                  # defaults: 5% per stratum, threshold 85
    python -m jobs.curate --fraction 0.1 --seed 1 --threshold 90
    python -m jobs.curate --train-years 2010 2015 --valid-years 2016 2017 --test-years 2018 2020

Reads `headlines` and `llm_labels`, replaces `spans` and `sample`; re-running on the same inputs
keeps the tables the last run wrote (`--force` writes them again: the same). Memory does not grow
with the feed: the tables are joined in id ranges of about `--batch-rows` headlines, kept meanwhile
in a temporary folder (`$TMPDIR`).
"""

from __future__ import annotations

import sys

from finner.cluster import ClusterConfig
from finner.config import add_config_args
from finner.curate import CurateConfig, curate
from finner.pipeline import cli
from finner.progress import say
from finner.sample import SampleConfig


def main(argv: list[str] | None = None) -> int:
    p = cli.parser("python -m jobs.curate", __doc__.split("\n\n")[0])
    add_config_args(p, ClusterConfig)
    add_config_args(p, SampleConfig)
    add_config_args(p, CurateConfig)
    p.add_argument("--label-version", default="", help="curate the labels of this version (see jobs.label's summary); default: the latest labeling run's")
    p.add_argument("--force", action="store_true", help="curate again even when the last curation read the same tables and settings")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)

    def body(cluster_config: ClusterConfig, sample_config: SampleConfig, config: CurateConfig) -> None:
        summary = curate(cli.store_from(args), cluster_config, sample_config, config, progress=not args.quiet, label_version=args.label_version, force=args.force)
        say("\n".join(summary.lines()))

    return cli.run(body, args, "curate", configs=(ClusterConfig, SampleConfig, CurateConfig))


if __name__ == "__main__":
    sys.exit(main())
