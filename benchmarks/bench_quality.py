"""Quality on real text: the hand-labelled real headlines' test part, subject companies, exact spans.

    python benchmarks/bench_quality.py [--quick] [--store DIR]

Builds a store from the real feed (`../shared/data`: ingest, label with the built-in labeller through
its chat-completions server, curate), fine-tunes GLiNER on the packaged MiniLM encoder (a) on the
labeller's labels of the feed's train years and (b) on the same plus the gold dev part's human
labels, chooses each model's threshold on the dev part, and scores every row on the test part.
The store is kept (`--store`), so a second run reuses the labels and the trained models.
Ends with `BENCH real_test_f1_<row>` lines.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)


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


def train(store, name: str, rows, valid, epochs: int) -> str:
    """Fine-tune (or reuse) a GLiNER on `rows`, the best epoch chosen on `valid`; returns its path."""
    import torch

    from finner.models.registry import ModelSpec, build_model
    from finner.train import fit_locally

    out = store.artifact("bench_quality", name)
    best = os.path.join(out, "best")
    if not os.path.isdir(best):
        torch.manual_seed(0)
        model = build_model(ModelSpec("gliner", offline=True))
        fit_locally(model, rows, valid, out, epochs=epochs, learning_rate=5e-5, head_learning_rate=1e-3, batch_size=8, warmup_ratio=0.05)
    return best


def best_threshold(model, dev) -> float:
    """The span-score threshold with the highest exact F1 on the dev part."""
    from finner.metrics import exact_prf

    titles, gold = dev.column("title").to_pylist(), dev.column("spans").to_pylist()
    scored = []
    for threshold in THRESHOLDS:
        model.threshold = threshold
        scored.append((exact_prf(gold, model.predict(titles)).f1, threshold))
    return max(scored)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="800 training headlines, 1 epoch")
    parser.add_argument("--store", default=str(REPO / "finner-data-real"), help="store of the real feed (kept between runs)")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()

    import pyarrow as pa

    from finner.evaluate import llm_predictions
    from finner.gold import DEV, TEST, load_gold
    from finner.metrics import exact_prf
    from finner.models.registry import load_checkpoint
    from finner.models.spacy_baseline import SpacyBaseline
    from finner.store import Store
    from finner.training_data import LLM_LABELS, SAMPLE_ROWS, VALID_SPLIT, feed_train_rows, training_rows

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

    with_dev = pa.concat_tables([feed, dev.select(["id", "title", "spans"]).cast(feed.schema)])
    suffix = f"{feed.num_rows}-{epochs}"
    rows = {
        "labeller": llm_predictions(store, test.column("id").to_pylist()),
        "spacy": SpacyBaseline.load().predict(test.column("title").to_pylist()),
    }
    for row, train_rows in (("model_on_labels", feed), ("model_on_labels_plus_dev", with_dev)):
        model = load_checkpoint("gliner", train(store, f"{row}-{suffix}", train_rows, valid, epochs))
        model.threshold = best_threshold(model, dev)
        print(f"{row}: threshold {model.threshold} (best on dev)", flush=True)
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
