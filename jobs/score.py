"""Score every headline with the fine-tuned GLiNER (or the majority vote of several) into
`predictions`, then check it against the tickers and report the cost (resumable: re-running skips
headlines this model version scored).

    python -m jobs.score                                   # the best fine-tuned checkpoint in the store
    python -m jobs.score --model PATH                      # any GLiNER checkpoint directory
    python -m jobs.score --model PATH_A PATH_B PATH_C      # their majority vote: a span where 2 of 3 predict it
    python -m jobs.score --model EmergentMethods/gliner_medium_news-v2.1   # a hub id (network)
    python -m jobs.score --max-actors 4                    # CPU workers: the fastest runtime that agrees with torch
    python -m jobs.score --runtime torch --prepare actor   # CPU actors that tokenize their own batches
    python -m jobs.score --gpus yes --min-actors 1 --max-actors 8          # GPU nodes added by the autoscaler
    python -m jobs.score --listings my_symbols.csv         # your own symbol,name list for the ticker check
"""

from __future__ import annotations

import dataclasses
import sys

from finner import artifacts
from finner.config import add_config_args
from finner.cost import CostConfig, cost_report
from finner.errors import FinnerError
from finner.pipeline import cli
from finner.pipeline.score import ScoreRunConfig, run_scoring
from finner.pipeline.worker import in_worker
from finner.progress import say
from finner.score import ScoreConfig
from finner.ticker_check import TickerCheckConfig, ticker_check


def default_model(store) -> str:
    """The best fine-tuned GLiNER checkpoint the training job recorded in the store."""
    path = artifacts.scoring_default(store)
    if path is None:
        raise FinnerError("no fine-tuned GLiNER checkpoint in the store: run `python -m jobs.train` first, or pass --model PATH_OR_HUB_ID")
    return path


def main(argv: list[str] | None = None) -> int:
    p = cli.parser("python -m jobs.score", __doc__.split("\n\n")[0])
    add_config_args(p, ScoreConfig)
    add_config_args(p, ScoreRunConfig)
    add_config_args(p, TickerCheckConfig)
    add_config_args(p, CostConfig)
    p.add_argument("--no-report", action="store_true", help="score only: skip the ticker check and the cost report")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)

    def body(config: ScoreConfig, run: ScoreRunConfig, check_config: TickerCheckConfig, cost_config: CostConfig) -> None:
        store = cli.store_from(args)
        if not config.model:
            config = dataclasses.replace(config, model=(default_model(store),))
        cli.init_ray()
        summary = run_scoring(store, config, run, progress=not args.quiet)
        say(summary.line())
        if summary.choice is not None:
            say(f"runtime {summary.runtime} (--runtime {config.runtime}): {summary.choice.reason}")
        if args.no_report:
            return
        check = in_worker(ticker_check, store, summary.model_version, check_config)
        say(check.text())
        say(cost_report(store, cost_config).text())

    return cli.run(body, args, "score", configs=(ScoreConfig, ScoreRunConfig, TickerCheckConfig, CostConfig))


if __name__ == "__main__":
    sys.exit(main())
