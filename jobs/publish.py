"""Publish a fine-tuned model or the labelled dataset as a Hugging Face folder with its card; push it with --repo-id.

    python -m jobs.publish model                          # the scoring job's GLiNER -> <store>/publish/models/<name>
    python -m jobs.publish model --name spanmarker-llm --out ./my-model
    python -m jobs.publish dataset                        # feed + reviewed gold + predictions -> <store>/publish/dataset
    HF_TOKEN=hf_... python -m jobs.publish model --repo-id me/finner-gliner --license apache-2.0
    HF_TOKEN=hf_... python -m jobs.publish dataset --repo-id me/finner-headlines --private

The model folder loads with `GLiNER.from_pretrained(folder)` (or `SpanMarkerModel.from_pretrained`),
the dataset folder with `datasets.load_from_disk(folder)`; both carry a README.md card. Without
--repo-id nothing leaves the machine; with it the token comes from $HF_TOKEN only.
"""

from __future__ import annotations

import argparse
import sys

from finner.config import add_config_args
from finner.pipeline import cli
from finner.progress import say
from finner.publish import DatasetCardConfig, ModelCardConfig, PublishConfig, publish_dataset, publish_model


def main(argv: list[str] | None = None) -> int:
    p = cli.parser("python -m jobs.publish", __doc__.split("\n\n")[0])
    commands = p.add_subparsers(dest="command", required=True, metavar="{model,dataset}")
    for name, text, cls in [
        ("model", "a fine-tuned model of the store as a hub model folder with its model card", ModelCardConfig),
        ("dataset", "the feed, its reviews and predictions as a DatasetDict with its dataset card", DatasetCardConfig),
    ]:
        sub = commands.add_parser(name, help=text, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        add_config_args(sub, cls)
        add_config_args(sub, PublishConfig)
    args = p.parse_args(argv)

    def body(config: PublishConfig, cards: ModelCardConfig | DatasetCardConfig) -> None:
        store = cli.store_from(args)
        published = publish_model(store, config, cards) if isinstance(cards, ModelCardConfig) else publish_dataset(store, config, cards)
        for line in published.lines():
            say(line)

    cards_config = ModelCardConfig if args.command == "model" else DatasetCardConfig
    return cli.run(body, args, "publish", configs=(PublishConfig, cards_config))


if __name__ == "__main__":
    sys.exit(main())
