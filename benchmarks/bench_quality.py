"""Quality on real text, with its uncertainty: the hand-labelled real headlines' test part, subject
companies, exact spans.

    python benchmarks/bench_quality.py                  # the whole protocol on a fresh store
    python benchmarks/bench_quality.py --quick          # the same protocol, small: a few hundred feed rows and steps
    python benchmarks/bench_quality.py --store DIR      # reuse a store: labels, curation and finished trainings are kept
    python benchmarks/bench_quality.py --dev-only --seeds 0 --rows feed  # a choice tried on dev: (a) only, no test part read

The protocol, by itself on a fresh store: ingest the real feed (`../shared/data`), label it with the
built-in labeller through its chat-completions server, curate; then, once per seed of `SEEDS`,
(a) GLiNER on the packaged MiniLM encoder trained through Ray Train on the labeller's labels of the
whole feed, every year (`jobs.train --rows all --seed S`, `--max-steps` steps; less the title twins
of the gold and of the sample's valid and test rows; the checkpoint
kept is the best on the sample's valid split, validated every `--max-steps`/3 steps), its
threshold chosen on the gold's dev part, and reported again without the subject rules (`finner.roles`:
brokers, regulators, calendar words; its threshold chosen again on dev), what it learned by itself;
(b) that model fine-tuned further on the dev part's human
labels (all of dev), each dev headline beside one of the feed's labelled headlines, its epoch chosen
on the gold's `dev2` part, which it does not train on, and its threshold by `PLUS_DEV_FOLDS`-fold
cross-validation over dev (each fold predicted by (a) fine-tuned the same way on the other folds):
`dev2` holds 2017–2020 only, dev every year as the feed does; and (a)'s seed models as majority
votes of `VOTE_SIZE` consecutive seeds (`finner.models.ensemble`: a span is kept where most of
them predict it, each at its own threshold), one model's cost per member: with `--seeds 0 1 2`
one vote, with nine seeds three, reported as one row over votes as a row over seeds is. Every choice is made on a
dev part (or the sample's valid split); the test part is read once, at the end. `--dev-only` stops before it:
(a) alone, each seed's F1 on the whole dev part at its threshold chosen there (optimistic, and the
same for every choice compared), to try a choice without reading the test part.

Both modes then score the labeller, (a) at that threshold and (a)'s vote on the gold's `dev2` part, the
second dev part: drawn later, from 2017–2020 (years `--rows feed` never trains on; `all` trains on
their other headlines), and no labeller rule was ever fitted to it (the labeller's rules were
written on `dev`, where it scores far above its test F1),
so `dev2`'s model − labeller, with its interval, is what a choice aimed at the margin is judged on.

Every F1 comes with a seeded 95% paired bootstrap interval over the test headlines; a row trained
with several seeds reports the mean over seeds, their sd and each seed's F1, and its interval is
that of the mean. `model - labeller` and `labels + dev - labeller` are the mean differences with
the interval of the difference (the same resamples for both sides). Rows go to the store's
`metrics` table (stage `bench_quality`). Ends with `BENCH real_test_f1_<row>` lines (the mean over
seeds), `_sd`, `_ci_low`, `_ci_high`, and `BENCH real_test_f1_model_minus_labeller` with its
`_ci_low` and `_ci_high` (and the same for `model_plus_dev` and `model_vote`).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"

from finner.training_data import ALL_ROWS, FEED_ROWS  # noqa: E402 (after the path)
from jobs.pipeline import REAL_FEED_ROWS  # noqa: E402

SEEDS = (0, 1, 2)  # the flagship rows' training seeds
ROWS = REAL_FEED_ROWS  # (a)'s training headlines (`jobs.train --rows`): the `--real` pipeline's
STEPS = 3000  # (a)'s training steps: 0.8 of a pass over the real feed's ~15k labelled headlines at batch 4
QUICK_STEPS, QUICK_ROWS = 40, 480  # --quick: (a) on the feed's first rows only
# (a): the `--real` pipeline's whole-feed model (a fresh head on the MiniLM encoder; jobs.pipeline DEMO_FIT_FLAGS)
ON_LABELS = ["--offline", "--learning-rate", "5e-5", "--head-learning-rate", "1e-3", "--epochs", "1000"]  # steps, not epochs, end it
PLUS_DEV = {"epochs": 3, "learning_rate": 2e-5, "head_learning_rate": 1e-4, "batch_size": 8, "warmup_ratio": 0.1}  # (b): a trained head, small steps
QUICK_PLUS_DEV_EPOCHS, QUICK_PLUS_DEV_ROWS = 1, 80  # --quick: (b) on dev's first rows only
PLUS_DEV_FOLDS, QUICK_PLUS_DEV_FOLDS = 5, 2  # (b)'s threshold: cross-validated over dev
STAGE = "bench_quality"  # metrics.stage of the rows written here
LABELLER, ON_LABELS_ROW, PLUS_DEV_ROW = "labeller", "model_on_labels", "model_on_labels_plus_dev"
NO_RULES_ROW = "model_on_labels_no_rules"  # (a) without the subject rules (`finner.roles`): what it learned by itself
VOTE_ROW = "model_on_labels_vote"  # (a)'s seed models as majority votes (`finner.models.ensemble.MajorityVote`)
VOTE_SIZE = 3  # the seeds of one vote: consecutive ones (0-2, 3-5, ...), so --seeds 0..8 gives three votes


def build_store(root: str) -> None:
    """Ingest, label and curate the real feed through the jobs themselves (each resumes)."""
    from jobs import curate, ingest, label

    for job, argv in (
        (ingest, ["--path", str(SHARED / "benzinga_headlines.parquet")]),
        (label, ["--test-endpoint", "--listings", str(SHARED / "company_listings.csv"), "--quiet"]),
        (curate, ["--quiet"]),
    ):
        if job.main(["--store", root, *argv]) != 0:
            raise SystemExit(f"{job.__name__} failed; see {root}/logs")


def train_on_labels(store, seed: int, steps: int, rows: int, source: str = ROWS) -> dict:
    """(a) with one seed, through Ray Train (the training job finds a finished run of the same rows
    and settings and does nothing); returns its train summary."""
    from finner import artifacts
    from jobs import train

    name = f"gliner-llm-{source}-seed{seed}" + (f"-steps{steps}" if steps != STEPS else "") + (f"-rows{rows}" if rows else "")  # a trial keeps the protocol's models
    argv = ["--store", store.root, "--rows", source, "--name", name, "--seed", str(seed), "--max-steps", str(steps), "--max-train-rows", str(rows), *ON_LABELS]
    if train.main(argv) != 0:
        raise SystemExit(f"training {name} failed; see {store.root}/logs/train.log")
    summary = store.get_json(artifacts.train_summary_key(name))
    if summary["gold_overlap"]["real"].get("test"):
        raise SystemExit(f"{name} trained on {summary['gold_overlap']['real']['test']} title twins of the real gold's test part")
    return summary


def train_plus_dev(store, seed: int, start: str, rows, valid, **options) -> str:
    """(b) with one seed: (a)'s checkpoint `start` fine-tuned further in this process on `rows`,
    its best epoch on `valid` kept (or reused); returns the best checkpoint's path."""
    from finner.ids import stable_hash
    from finner.models.registry import load_checkpoint
    from finner.train import fit_locally, seed_everything

    out = store.artifact(STAGE, f"{PLUS_DEV_ROW}-{stable_hash([start, rows.column('id').to_pylist(), valid.column('id').to_pylist(), options, seed], length=12)}")
    best = os.path.join(out, "best")
    if not os.path.isdir(best):
        seed_everything(seed)
        fit_locally(load_checkpoint("gliner", start), rows, valid, out, seed=seed, **options)
    return best


def beside_feed(feed, seed: int, count: int):
    """`count` of the feed's labelled headlines, drawn with `seed`, for human-labelled ones to train beside."""
    return feed.take(random.Random(seed).sample(range(feed.num_rows), min(count, feed.num_rows)))


def plus_dev_threshold(store, seed: int, start: str, human, feed, folds: int, **options):
    """(b)'s threshold, chosen over dev's headlines of every year: each of `folds` folds of dev is
    predicted by (a) fine-tuned as (b) on the other folds (`choose_pooled_threshold`)."""
    import pyarrow as pa

    from finner.evaluate import choose_pooled_threshold
    from finner.models.registry import load_checkpoint

    order = list(range(human.num_rows))
    random.Random(0).shuffle(order)
    parts = []
    for k in range(folds):
        held = sorted(order[k::folds])
        rest, part = sorted(set(order) - set(held)), human.take(held)
        parts.append((load_checkpoint("gliner", train_plus_dev(store, seed, start, pa.concat_tables([human.take(rest), beside_feed(feed, seed, len(rest))]), part, **options)), part))
    return choose_pooled_threshold(parts)


def labeller_result(store, part, bootstrap):
    """The built-in labeller's row on a gold part: its labels of those headlines, read from the store."""
    from finner.evaluate import ZERO_SHOT, evaluate, llm_predictions

    return evaluate(LABELLER, ZERO_SHOT, part, llm_predictions(store, part.column("id").to_pylist()), bootstrap=bootstrap)[0]


def predict_each(by_seed: dict, part) -> dict:
    """Each seed's model's spans for a gold part's titles, once for every row scored from them."""
    titles = part.column("title").to_pylist()
    return {seed: model.predict(titles) for seed, model in by_seed.items()}


def seeds_result(row: str, part, predicted: dict, bootstrap):
    """One trained row on a gold part: each seed's predictions (`predict_each`) scored, as one row over the seeds."""
    from finner.evaluate import FINE_TUNED, evaluate, over_seeds

    return over_seeds({seed: evaluate(row, FINE_TUNED, part, spans, bootstrap=bootstrap)[0] for seed, spans in predicted.items()}, bootstrap)


def vote_result(part, predicted: dict, bootstrap):
    """(a)'s seed models as majority votes on a gold part (over their `predict_each` predictions),
    `VOTE_SIZE` consecutive seeds a vote (seeds left over after the last full vote do not vote):
    one vote scored alone, several as one row over votes (mean, sd, each vote's F1 under its first
    seed); None with too few seeds for one."""
    from finner.evaluate import FINE_TUNED, evaluate, over_seeds
    from finner.models.ensemble import majority_spans

    seeds, titles = sorted(predicted), part.column("title").to_pylist()
    groups = [seeds[first : first + VOTE_SIZE] for first in range(0, len(seeds) - VOTE_SIZE + 1, VOTE_SIZE)]
    votes = {group[0]: evaluate(VOTE_ROW, FINE_TUNED, part, majority_spans(titles, [predicted[s] for s in group]), bootstrap=bootstrap)[0] for group in groups}
    if len(votes) < 2:
        return next(iter(votes.values()), None)
    return over_seeds(votes, bootstrap)


def print_dev2(store, dev2, by_seed: dict) -> None:
    """The labeller, (a) and (a)'s vote on the `dev2` part, at (a)'s thresholds chosen on dev: each
    F1 and the difference from the labeller (for (a), the mean over seeds), with their 95% intervals."""
    from finner.bootstrap import BootstrapConfig
    from finner.evaluate import comparisons
    from finner.metrics import EXACT

    bootstrap = BootstrapConfig()
    predicted = predict_each(by_seed, dev2)
    rows = [labeller_result(store, dev2, bootstrap), seeds_result(ON_LABELS_ROW, dev2, predicted, bootstrap), vote_result(dev2, predicted, bootstrap)]
    rows = [r for r in rows if r is not None]
    print(f"dev2 ({dev2.num_rows} headlines): " + ", ".join(f"{r.model} F1 {r.f1_text(EXACT)}" for r in rows))
    for c in comparisons(rows, LABELLER, bootstrap):
        if c.match == EXACT:
            print(f"dev2: {c.model} - labeller {c.difference.value:+.3f} [{c.difference.interval.low:+.3f}, {c.difference.interval.high:+.3f}]", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"(a) on the feed's first {QUICK_ROWS} training rows for {QUICK_STEPS} steps, (b) on dev's first {QUICK_PLUS_DEV_ROWS} for {QUICK_PLUS_DEV_EPOCHS} epoch")
    parser.add_argument("--store", default=str(REPO / "finner-data-real"), help="store of the real feed (kept between runs: labels, curation and trained models are reused)")
    parser.add_argument("--max-steps", type=int, default=None, help=f"(a)'s training steps (default {STEPS}, {QUICK_STEPS} with --quick): choose it on dev")
    parser.add_argument("--rows", choices=(FEED_ROWS, ALL_ROWS), default=ROWS, help="(a)'s training headlines (jobs.train --rows): choose it on dev")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="training seeds")
    parser.add_argument("--dev-only", action="store_true", help="(a) only, scored on the gold's dev part; the test part is not read")
    args = parser.parse_args()
    if args.max_steps is not None and args.max_steps < 1:
        parser.error("argument --max-steps: must be at least 1")
    if min(args.seeds) < 0:
        parser.error(f"argument --seeds: {min(args.seeds)} is below 0")

    import pyarrow as pa

    from finner.bootstrap import BootstrapConfig
    from finner.evaluate import ZERO_SHOT, choose_threshold, comparisons, evaluate, markdown_comparisons, write_metrics
    from finner.gold import DEV, DEV2, TEST, load_gold
    from finner.metrics import EXACT
    from finner.models.registry import load_checkpoint
    from finner.models.spacy_baseline import SpacyBaseline
    from finner.store import Store
    from finner.training_data import ROW_COLUMNS, feed_train_rows

    started = time.perf_counter()
    store = Store(args.store)
    build_store(store.root)
    gold = load_gold(store, "real")
    subjects = gold.subjects()
    dev, dev2, test = subjects.split(DEV), subjects.split(DEV2), subjects.split(TEST)
    steps = args.max_steps or (QUICK_STEPS if args.quick else STEPS)
    rows = QUICK_ROWS if args.quick else 0
    feed = feed_train_rows(store, limit=rows, every_year=args.rows == ALL_ROWS)
    print(f"feed: {feed.num_rows} labelled headlines (--rows {args.rows}); gold dev {dev.num_rows}, test {test.num_rows}; seeds {args.seeds}, {steps} steps", flush=True)
    human, plus_dev_valid = dev.select(ROW_COLUMNS).cast(feed.schema), dev2.select(ROW_COLUMNS)  # (b) trains on dev, its epoch is chosen on dev2
    human = human.slice(0, QUICK_PLUS_DEV_ROWS) if args.quick else human
    plus_dev_options = PLUS_DEV | ({"epochs": QUICK_PLUS_DEV_EPOCHS} if args.quick else {})
    folds = QUICK_PLUS_DEV_FOLDS if args.quick else PLUS_DEV_FOLDS
    models: dict[str, dict[int, object]] = {ON_LABELS_ROW: {}} if args.dev_only else {ON_LABELS_ROW: {}, NO_RULES_ROW: {}, PLUS_DEV_ROW: {}}
    dev_f1: dict[int, float] = {}
    for seed in args.seeds:
        summary = train_on_labels(store, seed, steps, rows, args.rows)
        print(f"seed {seed}: (a) {summary['train_rows']} training headlines (--rows {args.rows}), kept step {summary['best']['step']} (valid F1 {summary['best']['valid_f1']:.3f})", flush=True)
        paths = {ON_LABELS_ROW: summary["path"], NO_RULES_ROW: summary["path"]}
        if not args.dev_only:
            paths[PLUS_DEV_ROW] = train_plus_dev(store, seed, summary["path"], pa.concat_tables([human, beside_feed(feed, seed, human.num_rows)]), plus_dev_valid, **plus_dev_options)
        for row in models:
            model = load_checkpoint("gliner", paths[row])
            model.subject_rules = row != NO_RULES_ROW
            if row == PLUS_DEV_ROW:
                chosen, where = plus_dev_threshold(store, seed, summary["path"], human, feed, folds, **plus_dev_options), f"{human.num_rows} dev headlines, {folds}-fold"
            else:
                chosen, where = choose_threshold(model, dev), f"{dev.num_rows} dev headlines"
            model.threshold, f1 = chosen.threshold, chosen.prf.f1
            print(f"seed {seed}: {row} threshold {model.threshold} (exact F1 {f1:.3f} on {where})", flush=True)
            models[row][seed] = model
            if row == ON_LABELS_ROW:
                dev_f1[seed] = f1
    print(f"dev F1 of (a), mean of seeds {args.seeds}: {sum(dev_f1.values()) / len(dev_f1):.3f} ({dev.num_rows} dev headlines)")
    print_dev2(store, dev2, models[ON_LABELS_ROW])
    if args.dev_only:
        print("(the test part was not read)")
        return

    # The test part, read once: every row scored on the same headlines, the same resamples.
    bootstrap = BootstrapConfig()
    titles = test.column("title").to_pylist()
    predicted = {row: predict_each(by_seed, test) for row, by_seed in models.items()}
    results = [
        labeller_result(store, test, bootstrap),
        *evaluate("spacy", ZERO_SHOT, test, SpacyBaseline.load().predict(titles), bootstrap=bootstrap),
        *(seeds_result(row, test, predicted[row], bootstrap) for row in models),
    ]
    vote = vote_result(test, predicted[ON_LABELS_ROW], bootstrap)
    results += [vote] if vote else []
    write_metrics(store, results, stage=STAGE)
    differences = {c.model: c.difference for c in comparisons(results, LABELLER, bootstrap) if c.match == EXACT}  # means over seeds

    spans = sum(len(s or []) for s in test.column("spans").to_pylist())
    print(f"\ntest part: {test.num_rows} headlines, {spans} subject spans, exact match [95% paired-bootstrap interval]; read once")
    for r in results:
        prf = r.scores[EXACT]
        pooled = " (pooled over seeds)" if r.spreads else ""
        print(f"{r.model:<26} P {prf.precision:.3f}  R {prf.recall:.3f}{pooled}  F1 {r.f1_text(EXACT)}")
    print()
    print(markdown_comparisons(comparisons(results, LABELLER, bootstrap), match=EXACT))
    print(f"\n({time.perf_counter() - started:.0f} s)")
    for r in results:
        print(f"BENCH real_test_f1_{r.model} {r.f1(EXACT):.4f}")
        if EXACT in r.spreads:
            print(f"BENCH real_test_f1_{r.model}_sd {r.spreads[EXACT].sd:.4f}")
        print(f"BENCH real_test_f1_{r.model}_ci_low {r.intervals[EXACT].low:.4f}")
        print(f"BENCH real_test_f1_{r.model}_ci_high {r.intervals[EXACT].high:.4f}")
    for row, label in ((ON_LABELS_ROW, "model_minus_labeller"), (PLUS_DEV_ROW, "model_plus_dev_minus_labeller"), (VOTE_ROW, "model_vote_minus_labeller")):
        if row not in differences:
            continue
        diff = differences[row]
        print(f"BENCH real_test_f1_{label} {diff.value:.4f}")
        print(f"BENCH real_test_f1_{label}_ci_low {diff.interval.low:.4f}")
        print(f"BENCH real_test_f1_{label}_ci_high {diff.interval.high:.4f}")


if __name__ == "__main__":
    main()
