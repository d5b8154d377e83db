"""Quality on real text: the hand-labelled real headlines' test part, subject companies, exact spans.

    python benchmarks/bench_quality.py [--quick] [--store DIR]
    python benchmarks/bench_quality.py --store ./finner-real   # after `python -m jobs.pipeline --real --store ./finner-real`

Builds a store from the real feed (`../shared/data`: ingest, label with the built-in labeller through
its chat-completions server, curate) and scores every row on the test part:
(a) GLiNER on the packaged MiniLM encoder fine-tuned on the labeller's labels of the feed's train
years: the store's `models/gliner-llm-feed` when the `--real` pipeline trained it there (the whole
feed through Ray Train), else fine-tuned here (in-process); (b) that model fine-tuned further on the
gold dev part's human labels, each dev headline beside one of the feed's labelled headlines (so it
keeps what the feed taught it), the epoch and the threshold chosen on `DEV_HELD_OUT` dev headlines
it does not train on. (a)'s threshold is chosen on the whole dev part. The store is kept (`--store`),
so a second run reuses the labels and the trained models. Ends with `BENCH real_test_f1_<row>` lines.
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
FROM_SCRATCH = {"learning_rate": 5e-5, "head_learning_rate": 1e-3, "batch_size": 8, "warmup_ratio": 0.05}  # (a) when trained here
DEV_HELD_OUT = 40  # dev headlines (b) does not train on: its epoch and threshold are chosen on them
PLUS_DEV = {"epochs": 3, "learning_rate": 2e-5, "head_learning_rate": 1e-4, "batch_size": 8, "warmup_ratio": 0.1}  # (b): a trained head, small steps


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


def train(store, name: str, rows, valid, start: str | None = None, **options) -> str:
    """Fine-tune (or reuse) a GLiNER on `rows` (from checkpoint `start`, else a fresh head on the
    offline encoder), the best epoch chosen on `valid`; returns its path."""
    import torch

    from finner.models.registry import ModelSpec, build_model, load_checkpoint
    from finner.train import fit_locally

    out = store.artifact("bench_quality", name)
    best = os.path.join(out, "best")
    if not os.path.isdir(best):
        torch.manual_seed(0)
        model = load_checkpoint("gliner", start) if start else build_model(ModelSpec("gliner", offline=True))
        fit_locally(model, rows, valid, out, **options)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="(a) fine-tuned here on 800 training headlines for 1 epoch, even where the store has the pipeline's model")
    parser.add_argument("--store", default=str(REPO / "finner-data-real"), help="store of the real feed (kept between runs)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of (a) when fine-tuned here")
    args = parser.parse_args()

    import pyarrow as pa

    from finner import artifacts
    from finner.evaluate import choose_threshold, llm_predictions
    from finner.gold import DEV, TEST, load_gold
    from finner.learning_curve import CurveConfig, real_training_sets
    from finner.metrics import exact_prf
    from finner.models.registry import load_checkpoint
    from finner.models.spacy_baseline import SpacyBaseline
    from finner.store import Store
    from finner.training_data import FEED_ROWS, GOLD_LABELS, LLM_LABELS, SAMPLE_ROWS, VALID_SPLIT, feed_train_rows, training_rows

    started = time.perf_counter()
    store = Store(args.store)
    build_store(store.root)
    gold = load_gold(store, "real")
    subjects = gold.subjects()
    dev, test = subjects.split(DEV), subjects.split(TEST)
    feed = feed_train_rows(store, limit=800 if args.quick else 0)
    valid = training_rows(store, LLM_LABELS, SAMPLE_ROWS, VALID_SPLIT).read(store)
    epochs = 1 if args.quick else args.epochs
    print(f"feed: {feed.num_rows} labelled train-year headlines; gold dev {dev.num_rows}, test {test.num_rows}", flush=True)

    rows = {
        "labeller": llm_predictions(store, test.column("id").to_pylist()),
        "spacy": SpacyBaseline.load().predict(test.column("title").to_pylist()),
    }
    pipeline_name = artifacts.model_name("gliner", LLM_LABELS, "", FEED_ROWS)
    pipeline_run = store.get_json(artifacts.train_summary_key(pipeline_name))
    if not args.quick and pipeline_run and os.path.isdir(pipeline_run["path"]):
        on_labels, version = pipeline_run["path"], pipeline_run["fingerprint"]
        how = f"the --real pipeline's {pipeline_name} ({pipeline_run['train_rows']} headlines)"
    else:
        version = f"{feed.num_rows}-{epochs}"
        on_labels = train(store, f"model_on_labels-{version}", feed, valid, epochs=epochs, **FROM_SCRATCH)
        how = f"fine-tuned here on {feed.num_rows} headlines, {epochs} epoch(s)"
    dev_sets = real_training_sets(store, gold, CurveConfig(gold="real", valid_rows=DEV_HELD_OUT))  # the learning curve's dev split
    human, dev_valid = dev_sets.train[GOLD_LABELS].cast(feed.schema), dev_sets.valid[GOLD_LABELS]
    beside = feed.take(random.Random(0).sample(range(feed.num_rows), min(human.num_rows, feed.num_rows)))
    plus_dev = train(store, f"model_on_labels_plus_dev-{version}", pa.concat_tables([human, beside]), dev_valid, start=on_labels, **PLUS_DEV)
    print(f"model_on_labels: {how}; model_on_labels_plus_dev: it, fine-tuned on {human.num_rows} dev headlines (+{beside.num_rows} of its labels)", flush=True)
    for row, path, choose_on in (("model_on_labels", on_labels, dev), ("model_on_labels_plus_dev", plus_dev, dev_valid)):
        model = load_checkpoint("gliner", path)
        model.threshold = choose_threshold(model, choose_on).threshold
        print(f"{row}: threshold {model.threshold} (best on {choose_on.num_rows} dev headlines)", flush=True)
        rows[row] = model.predict(test.column("title").to_pylist())
    gold_spans = test.column("spans").to_pylist()
    scores = {row: exact_prf(gold_spans, predicted) for row, predicted in rows.items()}
    for row, prf in scores.items():
        print(f"{row:<26} P {prf.precision:.3f}  R {prf.recall:.3f}  F1 {prf.f1:.3f}")
    print(f"({time.perf_counter() - started:.0f} s; test part: {test.num_rows} headlines, {sum(map(len, gold_spans))} subject spans)")
    for row, prf in scores.items():
        print(f"BENCH real_test_f1_{row} {prf.f1:.4f}")
    print(f"BENCH real_test_f1_model_minus_labeller {scores['model_on_labels'].f1 - scores['labeller'].f1:.4f}")


if __name__ == "__main__":
    main()
