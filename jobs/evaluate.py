"""Score every configured model, zero-shot and fine-tuned, on the gold test split and print the
case study's table; rows go to the `metrics` table, every match with its counts to
reports/evaluate_details.md and a bar chart to plots/evaluate_f1_<split>.png.

    python -m jobs.evaluate                                 # hub checkpoints (network); gold: reviews, else the demo truth
    python -m jobs.evaluate --offline --gold embedded       # offline demo: zero-shot heads untrained
    python -m jobs.evaluate --encoder /models/my-encoder    # offline, on any local encoder directory
    python -m jobs.evaluate --models spacy llm --settings zero-shot
    python -m jobs.evaluate --gold real --offline           # the hand-labelled real headlines shipped with finner
    python -m jobs.evaluate --gold real --models llm --settings zero-shot --labeller-endpoint http://127.0.0.1:8000 --labeller-model smollm2
    python -m jobs.evaluate --models llm --labels-version 3 # the LLM row on llm_labels as it was at its version 3

Fine-tuned rows use the best checkpoints the training job (jobs.train) wrote to the store; a model
whose training headlines share a title with the scored gold part is refused. Every F1 carries a
seeded 95% paired-bootstrap interval over the scored headlines (`--bootstrap-seed`, `--resamples`),
and every row is compared with the labeller's on the same headlines, with the interval of the difference.
"""

from __future__ import annotations

import sys

from finner.artifacts import REPORTS_DIR, put_artifact
from finner.bootstrap import BootstrapConfig
from finner.config import add_config_args
from finner.evaluate import (
    WITH_BROKERS,
    EvaluateConfig,
    ReadVersions,
    comparisons,
    contenders,
    labeller_model,
    markdown_comparisons,
    markdown_details,
    markdown_table,
    plot_f1,
    run_evaluation,
    write_metrics,
)
from finner.gold import load_gold
from finner.pipeline import cli
from finner.progress import say


def main(argv: list[str] | None = None) -> int:
    p = cli.parser("python -m jobs.evaluate", __doc__.split("\n\n")[0])
    add_config_args(p, EvaluateConfig)
    add_config_args(p, BootstrapConfig)
    p.add_argument("--no-plot", action="store_true", help="skip the PNG bar chart")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_args(p, ReadVersions)
    args = p.parse_args(argv)

    def body(cfg: EvaluateConfig, bootstrap: BootstrapConfig, versions: ReadVersions) -> None:
        store = cli.store_from(args).at(llm_labels=versions.labels_version)
        gold = load_gold(store, cfg.gold)
        say(f"gold: {gold.description}")
        results = run_evaluation(store, gold, cfg.splits, contenders(cfg, store, gold, progress=not args.quiet), bootstrap)
        write_metrics(store, results)
        for split in cfg.splits:
            for scored in (split, split + WITH_BROKERS):
                if any(r.split == scored for r in results):
                    say()
                    say(markdown_table(results, match=cfg.match, split=scored))
        baseline = labeller_model(results)
        differences = comparisons(results, baseline, bootstrap) if baseline else []
        if differences:
            say()
            say(markdown_comparisons(differences, match=cfg.match))
        report = "\n\n".join(filter(None, [markdown_details(results), *(markdown_comparisons(differences, m) for m in dict.fromkeys(c.match for c in differences))]))
        details = put_artifact(store, report.encode(), REPORTS_DIR, "evaluate_details.md")
        say(f"\nevery match with precision, recall and counts: {details}")
        if not args.no_plot:
            for split in cfg.splits:
                say(f"plot: {plot_f1(results, store, split=split, name=f'evaluate_f1_{split}.png')}")

    return cli.run(body, args, "evaluate", configs=(EvaluateConfig, BootstrapConfig, ReadVersions))


if __name__ == "__main__":
    sys.exit(main())
