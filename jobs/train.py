"""Fine-tune GLiNER or SpanMarker on Ray Train; keep the epoch with the best validation F1 in the store.

    python -m jobs.train                                     # GLiNER from the hub, on the sample's LLM labels
    python -m jobs.train --kind spanmarker --labels gold     # SpanMarker on the reviewed gold labels
    python -m jobs.train --offline --num-workers 2           # no network: on the packaged MiniLM encoder
    python -m jobs.train --encoder /models/my-encoder        # no network: on any local encoder directory
    python -m jobs.train --rows feed --eval-every 2000       # weak supervision: every LLM-labelled train-year headline
    python -m jobs.train --rows all                          # the same, every year (only the held-out rows' twins left out)
    python -m jobs.train --labels teacher --rows all         # self-training: a trained model's labels of them (jobs.relabel)

Reads the `sample` table's train/valid splits, the train split less title twins of its valid/test
rows and of the shipped real gold (and the `gold` table with `--labels gold`); with
`--rows feed`, every headline of the train years the LLM labelled (the `spans` table) except title
twins of held-out headlines (validation and test years, the sample's valid/test rows, the gold sets),
validated on the sample's valid split. The rows stream from the store through Ray Data. Writes the
best checkpoint to `<store>/models/<name>` (default name `<kind>-<labels>`, `-feed` added for the
feed), every validation's metrics to `_meta/train-<name>-epochs.json` as training goes, and a run
summary to `_meta/train-<name>.json` (with its `--seed`, and how many of its training title keys fall in
each part of the real and the reviewed gold: jobs.evaluate refuses a model that trained on the part it scores). One GPU per worker when the cluster has GPUs, else CPU workers.
"""

from __future__ import annotations

import sys

from finner.config import add_config_args
from finner.models.registry import ModelSpec
from finner.models.train_config import TrainConfig
from finner.pipeline import cli
from finner.pipeline.train import TrainJobConfig, train_on_ray
from finner.progress import say


def main(argv: list[str] | None = None) -> int:
    p = cli.parser("python -m jobs.train", __doc__.split("\n\n")[0])
    add_config_args(p, ModelSpec)
    add_config_args(p, TrainJobConfig)
    add_config_args(p, TrainConfig)
    args = p.parse_args(argv)

    def body(spec: ModelSpec, job: TrainJobConfig, config: TrainConfig) -> None:
        store = cli.store_from(args)
        summary = train_on_ray(spec, config, job, store)
        for evaluation in summary.evaluations:
            say(
                f"  step {evaluation['step']:>6}  epoch {evaluation['epoch']:>6.2f}  valid F1 {evaluation['valid_f1']:.3f}"
                f"  (P {evaluation['valid_precision']:.3f}  R {evaluation['valid_recall']:.3f})"
            )
        say(summary.line())

    return cli.run(body, args, "train", configs=(ModelSpec, TrainJobConfig, TrainConfig))


if __name__ == "__main__":
    sys.exit(main())
