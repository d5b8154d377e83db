"""jobs.evaluate end to end on the labelled demo sample: the printed table, metrics rows, the chart."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from finner import schemas
from finner.artifacts import trained_model_path
from finner.evaluate import FINE_TUNED, THRESHOLDS, ZERO_SHOT
from finner.gold import embedded_truth
from finner.metrics import EXACT, exact_prf
from finner.models.base import chosen_threshold
from finner.models.registry import load_checkpoint
from finner.spans import find_spans
from finner.testing.chat_server import serve_chat, stats
from finner.listing_labeller import Gazetteer
from finner.testing.labelled_demo import TICKERS, write_labelled_demo
from jobs import evaluate as job
from tests.conftest import run_module


@pytest.fixture
def demo(store):
    write_labelled_demo(store)
    return store


def test_zero_shot_spacy_and_llm_rows(demo, capsys):
    ids = demo.read("sample").column("id").to_pylist()
    labels = [{"id": i, "status": schemas.LABEL_OK, "model": "stand-in"} for i in ids]
    demo.write("llm_labels", pa.Table.from_pylist(labels, schema=schemas.LLM_LABELS))  # names the LLM row
    argv = ["--store", demo.root, "--models", "spacy", "llm", "--settings", "zero-shot", "--gold", "embedded", "--quiet"]
    assert job.main(argv) == 0
    out = capsys.readouterr().out
    assert "gold: embedded demo feed's generated ground truth" in out
    assert "| Model | F1 (zero-shot) | F1 (fine-tuned) |" in out
    metrics = demo.read("metrics")
    assert metrics.schema == schemas.METRICS
    assert sorted(set(metrics.column("model").to_pylist())) == ["llm (stand-in)", "spacy"]
    assert set(metrics.column("split").to_pylist()) == {"test"}
    exact = {r["model"]: r for r in metrics.filter(pc.equal(metrics["match"], EXACT)).to_pylist()}
    # the stand-in LLM is the truth minus bare tickers: never wrong, misses exactly the tickers
    truth = embedded_truth()
    test_spans = [s for row in demo.read("sample").to_pylist() if row["split"] == "test" for s in truth[row["id"]]]
    tickers = sum(s["text"] in TICKERS for s in test_spans)
    llm = exact["llm (stand-in)"]
    assert (llm["tp"], llm["fp"], llm["fn"]) == (len(test_spans) - tickers, 0, tickers)
    assert 0 < tickers < len(test_spans)
    # spaCy is a real model: it scores something, and worse than the labels it is compared with
    assert 0 < exact["spacy"]["f1"] < llm["f1"]
    assert f"| llm (stand-in) | {100 * llm['f1']:.1f}% [{100 * llm['f1_ci_low']:.1f}%, {100 * llm['f1_ci_high']:.1f}%] | N/A |" in out
    assert llm["f1_ci_low"] < llm["f1"] <= llm["f1_ci_high"] and exact["spacy"]["f1_ci_low"] < exact["spacy"]["f1"] < exact["spacy"]["f1_ci_high"]
    # spaCy's row minus the labeller's, with the paired interval of the difference
    assert "F1 minus llm (stand-in)'s on the same headlines (exact match)" in out
    (difference,) = [line for line in out.splitlines() if line.startswith("| spacy | zero-shot | test | ")]
    low, high = (float(x) for x in difference.split("| [")[1].rstrip("] |").split(", "))
    assert low < 100 * (exact["spacy"]["f1"] - llm["f1"]) < high < 0
    with open(demo.artifact("plots", "evaluate_f1_test.png"), "rb") as f:
        assert f.read(4) == b"\x89PNG"
    details = demo.artifact("reports", "evaluate_details.md")
    assert f"every match with precision, recall and counts: {details}" in out and "| TP | FP | FN |" not in out
    with open(details) as f:
        assert "| llm (stand-in) | zero-shot | test | exact | 100.0% |" in f.read()


def test_a_labeller_behind_an_endpoint_is_a_row(demo, capsys):
    """`--labeller-endpoint`: the gold titles labelled through a real chat-completions server (the
    test server, answering from the embedded gazetteer), its strings turned into spans as curation
    does, and scored like any model."""
    test = [r for r in demo.read("sample").to_pylist() if r["split"] == "test"]
    with serve_chat() as url:
        argv = ["--store", demo.root, "--models", "spacy", "--settings", "zero-shot", "--gold", "embedded", "--quiet", "--no-plot",
                "--labeller-endpoint", url, "--labeller-model", "gazetteer-endpoint", "--labeller-format", "tgi"]  # fmt: skip
        assert job.main(argv) == 0
        seen = stats(url)
    assert seen["requests"] == len(test)  # each gold title labelled once, nothing else
    out = capsys.readouterr().out
    assert f"- llm (gazetteer-endpoint) (zero-shot): labelled through {url}" in out
    gazetteer, truth = Gazetteer.embedded(), embedded_truth()
    expected = exact_prf([truth[r["id"]] for r in test], [find_spans(r["title"], *gazetteer.label(r["title"])).spans for r in test])
    metrics = demo.read("metrics")
    row = metrics.filter(pc.and_(pc.equal(metrics["model"], "llm (gazetteer-endpoint)"), pc.equal(metrics["match"], EXACT))).to_pylist()
    assert [(r["tp"], r["fp"], r["fn"]) for r in row] == [(expected.tp, expected.fp, expected.fn)]
    assert expected.tp > 0


def test_labels_version_scores_the_labels_before_a_relabel(demo, capsys):
    """`--labels-version N`: the LLM row scores `llm_labels` as it was at table version N (time
    travel), not the latest labels (nor the `spans` table curated from them)."""
    import datetime as dt

    sample, truth = demo.read("sample").to_pylist(), embedded_truth()
    test = [r for r in sample if r["split"] == "test"]

    def labels(found: bool, at: int) -> pa.Table:
        rows = [{"id": r["id"], "status": schemas.LABEL_OK, "model": "stand-in", "label_version": "p1",
                 "result": [s["text"] for s in truth[r["id"]]] if found else [], "normalized_result": [s["text"] for s in truth[r["id"]]] if found else [],
                 "labeled_at": dt.datetime(2026, 1, at, tzinfo=dt.timezone.utc)} for r in sample]  # fmt: skip
        return pa.Table.from_pylist(rows, schema=schemas.LLM_LABELS)

    demo.append("llm_labels", labels(found=True, at=1))
    before = demo.version("llm_labels")
    demo.append("llm_labels", labels(found=False, at=2))  # a relabel that finds nothing
    expected = exact_prf([truth[r["id"]] for r in test], [find_spans(r["title"], *[[s["text"] for s in truth[r["id"]]]] * 2).spans for r in test])

    def llm_row(*flags: str) -> dict:
        argv = ["--store", demo.root, "--models", "llm", "--settings", "zero-shot", "--gold", "embedded", "--quiet", "--no-plot", *flags]
        assert job.main(argv) == 0
        capsys.readouterr()
        metrics = demo.read("metrics")
        (row,) = metrics.filter(pc.and_(pc.equal(metrics["match"], EXACT), pc.equal(metrics["split"], "test"))).to_pylist()
        return row

    then = llm_row("--labels-version", str(before))
    assert (then["tp"], then["fp"], then["fn"]) == (expected.tp, expected.fp, expected.fn) and expected.tp > 0
    now = llm_row("--labels-version", str(demo.version("llm_labels")))
    assert now["tp"] == 0
    assert json.loads(Path(demo.root, "_meta", "evaluate_versions.json").read_text())["read"]["llm_labels"] == demo.version("llm_labels")
    missing = run_module("jobs.evaluate", "--store", demo.root, "--models", "llm", "--gold", "embedded", "--labels-version", "99")
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1].startswith("error: table 'llm_labels' has no version 99 (latest: ")


def test_a_model_trained_on_the_scored_part_is_refused(demo):
    """A train summary (as jobs.train writes it) counting training headlines in the gold's test
    part: jobs.evaluate scores nothing and says which model and part, in one line."""
    path = demo.artifact("models", "gliner-llm")
    summary = {"name": "gliner-llm", "path": path, "gold_overlap": {"embedded": {"test": 3, "valid": 0}}}
    demo.put_json("train-gliner-llm", summary)
    before = demo.exists("metrics")
    done = run_module("jobs.evaluate", "--store", demo.root, "--models", "gliner", "--settings", "fine-tuned", "--gold", "embedded", "--quiet")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "error: gliner-llm: 3 of its training headlines share a title with the test part of the embedded gold, so its score there "
        "would be a leak; retrain it (jobs.train --force) on this version, which leaves them out"
    ]
    assert demo.exists("metrics") == before
    summary["gold_overlap"]["embedded"] = {"test": 0, "valid": 5}  # the valid part touched is not the part scored
    demo.put_json("train-gliner-llm", summary)
    passed = run_module("jobs.evaluate", "--store", demo.root, "--models", "gliner", "--settings", "fine-tuned", "--gold", "embedded", "--quiet")
    assert passed.stderr.startswith("error: no checkpoint directory at ")  # past the check, to the (absent) model itself


def test_help_and_bad_flags():
    assert run_module("jobs.evaluate", "--help").returncode == 0
    bad = run_module("jobs.evaluate", "--models", "bert")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: --models: invalid choice: 'bert'")


def test_no_gold_is_one_clear_line(store):
    result = run_module("jobs.evaluate", "--store", store.root, "--models", "llm")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: no gold: the `gold` table has no submitted rows, and no `sample` table in the store: run the curation stage (jobs.curate) first"


TRAIN_STDOUT_LINES = 40  # the demo's train stage, issue 13


def check_quiet_training_output(train, store, rows: int, steps: int) -> None:
    """A run a person can read: the train stage prints a few lines and the path of its log, one
    progress bar in training steps on stderr; Ray's, the Trainer's and the workers' output is in
    `<store>/logs/train.log`."""
    lines = train.stdout.splitlines()
    log = Path(store.root) / "logs" / "train.log"
    assert len(lines) < TRAIN_STDOUT_LINES, train.stdout
    assert lines[0] == f"train: details in {log}"
    assert lines[-1].startswith(f"gliner-llm: trained on {rows} sample rows")
    bar = [line for line in train.stderr.replace("\r", "\n").splitlines() if line.strip()]
    assert bar and all(line.startswith("train gliner-llm: ") for line in bar), train.stderr
    assert f"| {steps}/{steps} " in bar[-1]
    written = log.read_text()
    for noise in ("RayTrainWorker", "TrainController", "'train_runtime'"):  # Ray's worker lines, the Trainer's summary
        assert noise in written and noise not in train.stdout
    assert "deprecat" not in written.lower()  # none of our calls into Ray, transformers or gliner is deprecated


@pytest.mark.slow
def test_fine_tuned_row_scores_the_training_jobs_checkpoint(store, capsys):
    """The training job as a user runs it (its quiet output checked on the way), then the evaluation
    of its checkpoint."""
    write_labelled_demo(store, per_split=12)
    train = run_module(
        "jobs.train", "--store", store.root, "--offline", "--epochs", "1", "--batch-size", "4",
        "--learning-rate", "5e-5", "--head-learning-rate", "1e-3", timeout=1200,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-2000:]
    check_quiet_training_output(train, store, rows=12, steps=3)  # 12 rows, batches of 4, one epoch
    argv = ["--store", store.root, "--models", "gliner", "--offline", "--gold", "embedded", "--quiet", "--no-plot"]
    assert job.main(argv) == 0
    out = capsys.readouterr().out
    path = trained_model_path(store, "gliner-llm")
    assert path and f"- gliner (fine-tuned): fine-tuned on llm labels of the sample ({path})" in out
    assert "- gliner (zero-shot): built on the local encoder" in out
    metrics = demo_rows(store, "gliner")
    assert set(metrics) == {ZERO_SHOT, FINE_TUNED}
    # the fine-tuned row is exactly the published checkpoint's predictions, scored
    test = [r for r in store.read("sample").to_pylist() if r["split"] == "test"]
    truth = embedded_truth()
    predicted = load_checkpoint("gliner", path).predict([r["title"] for r in test])
    expected = exact_prf([truth[r["id"]] for r in test], predicted)
    assert (metrics[FINE_TUNED]["tp"], metrics[FINE_TUNED]["fp"], metrics[FINE_TUNED]["fn"]) == (expected.tp, expected.fp, expected.fn)
    assert chosen_threshold(path) is None  # the demo truth has no dev part to choose on

    # A user's gold file with a dev part: the fine-tuned model's threshold is chosen there and kept
    # with the checkpoint, which then predicts at it (as jobs.score does).
    rows = [r for r in store.read("sample").to_pylist() if r["split"] in ("valid", "test")]
    gold_file = store.root + "/my_gold.jsonl"
    with open(gold_file, "w") as f:
        for i, r in enumerate(rows):
            spans = [{"start": s["start"], "end": s["end"], "text": s["text"], "role": "subject"} for s in truth[r["id"]]]
            f.write(json.dumps({"id": r["id"], "split": "dev" if r["split"] == "valid" else "test", "title": r["title"], "spans": spans}) + "\n")
    argv = ["--store", store.root, "--models", "gliner", "--settings", FINE_TUNED, "--gold", gold_file, "--quiet", "--no-plot"]
    time.sleep(1.1)  # metrics rows are stamped to the second: this run's rows come last
    assert job.main(argv) == 0
    out = capsys.readouterr().out
    chosen = chosen_threshold(path)
    assert chosen in THRESHOLDS and f"; threshold {chosen} chosen on the gold's dev part" in out
    test = [r for r in rows if r["split"] == "test"]
    again = exact_prf([truth[r["id"]] for r in test], load_checkpoint("gliner", path).predict([r["title"] for r in test]))
    scored = max((r for r in store.read("metrics").to_pylist() if r["model"] == "gliner" and r["match"] == EXACT and r["split"] == "test"), key=lambda r: r["created_at"])
    assert (scored["tp"], scored["fp"], scored["fn"]) == (again.tp, again.fp, again.fn)


def demo_rows(store, model: str) -> dict[str, dict]:
    """setting -> the exact-match metrics row of `model`."""
    metrics = store.read("metrics")
    rows = metrics.filter(pc.and_(pc.equal(metrics["model"], model), pc.equal(metrics["match"], EXACT))).to_pylist()
    return {r["setting"]: r for r in rows}
