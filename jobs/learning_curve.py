"""Fine-tune a compact model on growing subsets of LLM labels and of gold labels, score each on
the gold test split, and plot F1 against training size (plots/learning_curve_<kind>.png).

    python -m jobs.learning_curve                                        # gliner from the hub, 100..1000 + all
    python -m jobs.learning_curve --offline --gold embedded --epochs 3   # offline demo, on the packaged encoder
    python -m jobs.learning_curve --kind spanmarker --sizes 50 100 --no-include-all

Training runs in this process (one small fine-tuning per point). Finished points are kept in the
store: re-running the same command resumes after the last one.
"""

from __future__ import annotations

import sys

from finner.bootstrap import BootstrapConfig
from finner.config import add_config_args
from finner.gold import load_gold
from finner.learning_curve import CurveConfig, markdown_curve, plot_curve, run_curve
from finner.models.registry import ModelSpec
from finner.models.train_config import TrainConfig
from finner.pipeline import cli
from finner.progress import say


def main(argv: list[str] | None = None) -> int:
    p = cli.parser("python -m jobs.learning_curve", __doc__.split("\n\n")[0])
    add_config_args(p, CurveConfig)
    add_config_args(p, ModelSpec)
    add_config_args(p, TrainConfig)
    add_config_args(p, BootstrapConfig)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)

    def body(cfg: CurveConfig, spec: ModelSpec, train: TrainConfig, bootstrap: BootstrapConfig) -> None:
        store = cli.store_from(args)
        gold = load_gold(store, cfg.gold)
        say(f"gold: {gold.description}")
        results = run_curve(cfg, spec, train, store, gold, progress=not args.quiet, bootstrap=bootstrap)
        say(markdown_curve(results, bootstrap=bootstrap))
        say(f"\nplot: {plot_curve(results, store, spec.kind)}")

    return cli.run(body, args, "learning_curve", configs=(CurveConfig, ModelSpec, TrainConfig, BootstrapConfig))


if __name__ == "__main__":
    sys.exit(main())
