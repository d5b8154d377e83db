"""Fine-tuning: training rows from the store (the sample's, or the whole feed's without held-out
headlines and their title twins), best-checkpoint keeping and early stopping, and the Ray Train job
end to end through Ray Data shards (both models on the local encoder, real headlines labelled by our
gazetteer labeler, 2 workers), killed and resumed mid-epoch."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import finner.gold
from finner import schemas
from finner.errors import FinnerError
from finner.artifacts import RAY_RUNS_DIR, scoring_default
from finner.ids import title_key
from finner.metrics import exact_prf
from finner.models.train_config import FRESH_HEAD_COMPANY_WEIGHT, TrainConfig
from finner.store import Store
from finner.train import KeepBest, examples, fit_locally
from finner.training_data import describe, feed_train_rows, gold_labelled, gold_parts, llm_labelled, training_rows
from tests.conftest import REPO, run_module, kill_group
from finner.testing.labelled_feed import write_labelled_feed
from tests.train_data import write_sample


def spans_of(title: str, *names: str) -> list[dict]:
    out = []
    for name in names:
        start = title.index(name)
        out.append({"start": start, "end": start + len(name), "text": name, "label": schemas.COMPANY, "normalized": None, "score": None})
    return out


def test_examples_check_columns_and_span_bounds():
    ok = pa.table({"id": ["a"], "title": ["Apple Rises"], "spans": [spans_of("Apple Rises", "Apple")]})
    assert examples(ok) == [("a", "Apple Rises", spans_of("Apple Rises", "Apple"))]
    with pytest.raises(FinnerError, match=r"lacks column\(s\) \['spans'\]"):
        examples(pa.table({"title": ["Apple Rises"]}))
    bad = pa.table({"id": ["b"], "title": ["Apple"], "spans": [[{"start": 2, "end": 9, "text": "x", "label": "company", "normalized": None, "score": None}]]})
    with pytest.raises(FinnerError, match="training row 'b': span 2:9 is outside its title"):
        examples(bad)


def test_llm_labels_leave_out_failed_rows_and_other_splits(store, real_headlines_path, company_listings_path):
    sample = write_sample(store, real_headlines_path, company_listings_path, train=30, valid=10)
    train = llm_labelled(store, "train")
    # one of the 30 real headlines is a test headline of the shipped real gold: left out as its title twin
    gold_keys = {title_key(t) for t in finner.gold.load_gold(store, "real").table.column("title").to_pylist()}
    twins = [r["id"] for r in sample.to_pylist() if r["split"] == "train" and title_key(r["title"]) in gold_keys]
    assert len(twins) == 1 and not set(twins) & set(train.column("id").to_pylist())
    assert train.num_rows == 29 and "failed-train" not in train.column("id").to_pylist()
    assert llm_labelled(store, "valid").num_rows == 10
    assert sum(bool(s) for s in train.column("spans").to_pylist()) >= 20  # the gazetteer found companies in real headlines
    by_id = {r["id"]: r for r in sample.to_pylist()}
    for row in examples(train):
        assert by_id[row[0]]["title"] == row[1]


def test_gold_labels_take_titles_from_the_sample(store, real_headlines_path, company_listings_path):
    sample = write_sample(store, real_headlines_path, company_listings_path, train=4, valid=2).to_pylist()
    first, second = sample[0], sample[1]
    now = dt.datetime(2021, 1, 1, tzinfo=dt.timezone.utc)
    gold = [
        {"id": first["id"], "split": None, "title": None, "status": schemas.GOLD_SUBMITTED, "spans": [], "annotator": "a", "submitted_at": now},
        {"id": second["id"], "split": "train", "title": second["title"], "status": schemas.GOLD_DISCARDED, "spans": [], "annotator": "a", "submitted_at": now},
    ]
    store.write("gold", pa.Table.from_pylist(gold, schema=schemas.GOLD))
    train = gold_labelled(store, "train")
    assert train.to_pylist() == [{"id": first["id"], "title": first["title"], "spans": []}]


def test_reviewed_rows_train_without_twins_and_rows_count_their_title_keys_in_every_gold_part(store, real_headlines_path, company_listings_path):
    """Gold labels train on the reviewed train split less the title twins of its test part; any
    rows a model sees are counted against every gold part they share title keys with (what
    jobs.evaluate refuses to score)."""
    sample = write_sample(store, real_headlines_path, company_listings_path, train=4, valid=2).to_pylist()
    now = dt.datetime(2021, 1, 1, tzinfo=dt.timezone.utc)
    twin = sample[0]["title"].upper() + "!"
    gold = [
        {"id": sample[0]["id"], "split": "train", "title": sample[0]["title"], "status": schemas.GOLD_SUBMITTED, "spans": [], "annotator": "a", "submitted_at": now},
        {"id": sample[1]["id"], "split": "train", "title": sample[1]["title"], "status": schemas.GOLD_SUBMITTED, "spans": [], "annotator": "a", "submitted_at": now},
        {"id": "t", "split": "test", "title": twin, "status": schemas.GOLD_SUBMITTED, "spans": [], "annotator": "a", "submitted_at": now},
    ]
    store.write("gold", pa.Table.from_pylist(gold, schema=schemas.GOLD))
    stats = describe(store, training_rows(store, "gold", "sample", "train"), gold_parts(store))
    assert (stats.rows, stats.twins_removed) == (1, 1)  # the twin of the test row is left out
    assert stats.gold_overlap["review"] == {"train": 1, "test": 0}
    assert stats.gold_overlap["real"] == {"dev": 0, "dev2": 0, "test": 0}
    unfiltered = describe(store, training_rows(store, "gold", "sample", "test"), gold_parts(store))  # rows that touch the test part
    assert unfiltered.gold_overlap["review"] == {"train": 1, "test": 1}


def test_keep_best_keeps_the_latest_of_the_best_checkpoints(tmp_path):
    keep = KeepBest(str(tmp_path))
    for epoch, f1 in enumerate([0.1, 0.5, 0.5, 0.2]):
        checkpoint = tmp_path / f"c{epoch}"
        checkpoint.mkdir()
        (checkpoint / "weights").write_text(str(epoch))
        keep({"epoch": epoch, "valid_f1": f1}, str(checkpoint))
    assert (tmp_path / "best" / "weights").read_text() == "2"  # ties go to the later epoch, as in Ray Train
    assert [e["valid_f1"] for e in json.loads((tmp_path / "history.json").read_text())] == [0.1, 0.5, 0.5, 0.2]


def test_train_job_help_and_missing_sample(tmp_path):
    help_run = run_module("jobs.train", "--help")
    assert help_run.returncode == 0
    assert all(flag in help_run.stdout for flag in ("--encoder", "--num-workers", "--rows", "--eval-every", "--patience", "--max-steps"))
    missing = run_module("jobs.train", "--store", str(tmp_path / "empty"), "--offline")
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1] == "error: no `sample` table in the store: run the curation stage (jobs.curate) first"


# -- the feed's training rows ----------------------------------------------------------------------

TRAIN_YEARS, HELD_OUT_YEARS = range(2010, 2017), range(2017, 2021)  # curation's default splits


@pytest.fixture(scope="module")
def feed_store(tmp_path_factory, real_headlines_path, company_listings_path) -> Store:
    """The real feed ingested, labelled by the gazetteer and curated."""
    store = Store(str(tmp_path_factory.mktemp("feed") / "store"))
    write_labelled_feed(store, real_headlines_path, company_listings_path)
    return store


@pytest.fixture
def planted_gold(feed_store, tmp_path, monkeypatch) -> list[str]:
    """A real gold set holding three of the feed's first train-year headlines: two as they are, one
    as a title twin (other case, other punctuation). Returns their titles as the feed has them."""
    spans = feed_store.read("spans", columns=["id", "title", "date"]).to_pylist()
    first = [row for row in spans if row["date"].year in TRAIN_YEARS][:6]
    planted = [first[0], first[2], first[4]]
    gold_titles = [planted[0]["title"], planted[1]["title"], planted[2]["title"].upper().replace(" ", " - ") + "!"]
    path = tmp_path / "gold.jsonl"
    path.write_text("".join(json.dumps({"id": f"g{i}", "split": "test", "title": t, "spans": []}) + "\n" for i, t in enumerate(gold_titles)))
    monkeypatch.setattr(finner.gold, "REAL_GOLD", path)
    assert title_key(gold_titles[2]) == title_key(planted[2]["title"]) != gold_titles[2].lower()
    return [row["title"] for row in planted]


def expected_feed_rows(store: Store, gold_titles: list[str], limit: int | None = None, years: range = TRAIN_YEARS) -> tuple[list[str], int]:
    """The feed's first `limit` training rows of `years` worked out here from the tables (ids, in
    table order), and how many rows of `years` read up to the last of them are title twins of
    held-out headlines (the held-out years' headlines held out only when training on the train years)."""
    held_years = HELD_OUT_YEARS if years == TRAIN_YEARS else ()
    held = {title_key(r["title"]) for r in store.read("headlines", columns=["title", "date"]).to_pylist() if r["date"].year in held_years}
    held |= {title_key(r["title"]) for r in store.read("sample", columns=["title", "split"]).to_pylist() if r["split"] != "train"}
    held |= {title_key(t) for t in gold_titles}
    kept, twins = [], 0
    for row in store.read("spans", columns=["id", "title", "date"]).to_pylist():
        if row["date"].year not in years:
            continue
        if title_key(row["title"]) in held:
            twins += 1
        elif len(kept) == limit:
            break
        else:
            kept.append(row["id"])
    return kept, twins


def test_feed_rows_leave_out_held_out_years_splits_gold_and_their_title_twins(feed_store, planted_gold):
    rows = training_rows(feed_store, "llm", "feed", "train")
    kept, twins = expected_feed_rows(feed_store, planted_gold)
    stats = describe(feed_store, rows)
    assert (stats.rows, stats.twins_removed) == (len(kept), twins)
    assert 5000 < stats.rows < 6080 and twins >= 3  # most of the 6,080 train-year headlines (some labels failed)
    table = feed_train_rows(feed_store)
    assert table.column("id").to_pylist() == kept  # the learning curve's rows: the same, in table order
    titles = set(table.column("title").to_pylist())
    assert not titles & set(planted_gold)
    first = training_rows(feed_store, "llm", "feed", "train", limit=10)
    assert [i for batch in first.batches(feed_store) for i in batch.column("id").to_pylist()] == kept[:10]
    assert describe(feed_store, first).twins_removed == expected_feed_rows(feed_store, planted_gold, 10)[1] >= 3  # the planted ones are among them
    with pytest.raises(FinnerError, match="use --labels llm"):
        training_rows(feed_store, "gold", "feed", "train")


def test_all_rows_add_every_year_and_still_leave_out_the_splits_and_gold_twins(feed_store, planted_gold):
    kept, twins = expected_feed_rows(feed_store, planted_gold, years=range(1900, 2100))
    stats = describe(feed_store, training_rows(feed_store, "llm", "all", "train"))
    assert (stats.rows, stats.twins_removed) == (len(kept), twins)
    train_years = describe(feed_store, training_rows(feed_store, "llm", "feed", "train")).rows
    assert stats.rows > 2.5 * train_years  # the real feed's other years: about 10k more headlines
    table = feed_train_rows(feed_store, every_year=True)
    assert table.column("id").to_pylist() == kept
    assert not set(table.column("title").to_pylist()) & set(planted_gold)
    held = {title_key(t) for t in feed_store.read("sample", filter=pc.field("split") != "train").column("title").to_pylist()}
    assert held and not {title_key(t) for t in table.column("title").to_pylist()} & held  # no twin of a validation row
    with pytest.raises(FinnerError, match="--rows all trains on the LLM's labels"):
        training_rows(feed_store, "gold", "all", "train")


def test_the_pipeline_trains_and_evaluates_on_rows_it_has_labels_for(store):
    """`jobs.pipeline --real` trains on the LLM's labels of the whole feed until reviewed gold
    exists; gold covers the sample only, so then the sample's rows (never `--labels gold --rows
    feed`, which the training job refuses), and the evaluation looks for the same model."""
    from jobs.pipeline import PipelineConfig, evaluate_argv, train_argv

    real = PipelineConfig(real=True).with_demo_defaults()

    def sources() -> tuple[list[str], list[str]]:
        (train,), (evaluate,) = train_argv(real, store)[:1], evaluate_argv(real, store)
        return train[train.index("--labels") : train.index("--rows") + 2], evaluate[evaluate.index("--train-labels") : evaluate.index("--train-rows") + 2]

    assert sources() == (["--labels", "llm", "--rows", "all"], ["--train-labels", "llm", "--train-rows", "all"])
    reviewed = {"id": "a", "split": "train", "title": "Apple Rallies", "status": schemas.GOLD_SUBMITTED, "spans": [], "annotator": "r", "submitted_at": dt.datetime(2024, 1, 2)}
    store.write("gold", pa.Table.from_pylist([reviewed], schema=schemas.GOLD))
    assert sources() == (["--labels", "gold", "--rows", "sample"], ["--train-labels", "gold", "--train-rows", "sample"])


def test_a_stream_resumed_at_its_position_hands_out_exactly_the_batches_not_yet_trained():
    from finner.train import Position, _batch_stream

    def epoch(number):  # 3 batches an epoch, the last epoch's order reshuffled
        return iter([(number, b) for b in ([0, 1, 2] if number < 2 else [2, 0, 1])])

    stream = _batch_stream(epoch, Position())
    batches = iter(stream)
    taken = [next(batches) for _ in range(3)]
    assert taken == [(0, 0), (0, 1), (0, 2)] and stream.position == Position(1, 0)  # an epoch's end points at the next
    taken.append(next(batches))
    assert stream.position == Position(1, 1) and stream.handed_out == 4
    resumed = iter(_batch_stream(epoch, stream.position))
    rest = [next(resumed) for _ in range(4)]
    assert rest == [(1, 1), (1, 2), (2, 2), (2, 0)]  # nothing taken twice, nothing left out
    with pytest.raises(FinnerError, match="epoch 0 has no training batches"):
        next(iter(_batch_stream(lambda number: iter([]), Position())))




def test_early_start_asks_for_its_epoch_before_the_trainer_does_and_hands_out_the_same_rows():
    import threading

    from finner.pipeline.train import EarlyStart

    asked = threading.Event()

    def epoch_rows(number):
        asked.set()
        yield from [(number, b) for b in range(3)]

    rows = EarlyStart(epoch_rows, 1)
    assert asked.wait(timeout=10)  # the first row is being fetched before anyone asks
    assert list(rows(1)) == [(1, 0), (1, 1), (1, 2)]
    assert list(rows(1)) == [(1, 0), (1, 1), (1, 2)]  # the same epoch again (the next run's turn): read afresh
    assert list(rows(0)) == [(0, 0), (0, 1), (0, 2)]

    def broken(number):
        raise FinnerError("the shard is gone")

    with pytest.raises(FinnerError, match="the shard is gone"):  # raised in the thread that uses the rows
        next(EarlyStart(broken, 0)(0))
@pytest.mark.slow
def test_patience_stops_training_after_validations_without_gain(tmp_path, capsys, real_headlines_path, company_listings_path):
    """With a vanishing learning rate a step changes nothing, so the first validation after step 0
    scores the same F1: no gain, and patience 1 stops the run there (of 3 epochs of 4 steps)."""
    from finner.models.registry import ModelSpec, build_model
    from tests.train_data import labelled_rows

    rows = pa.Table.from_pylist([{k: r[k] for k in ("id", "title", "spans")} for r in labelled_rows(real_headlines_path, company_listings_path, 12)])
    model = build_model(ModelSpec("gliner", offline=True))
    options = {"epochs": 3, "batch_size": 2, "eval_every": 2, "patience": 1, "learning_rate": 1e-12, "head_learning_rate": 1e-12}
    fit_locally(model, rows.slice(0, 8), rows.slice(8), str(tmp_path), **options)
    history = json.loads((tmp_path / "history.json").read_text())
    assert [e["step"] for e in history] == [0, 2]
    assert history[0]["valid_f1"] == history[1]["valid_f1"]
    assert (tmp_path / "best" / "gliner_config.json").exists() and not (tmp_path / "best" / "resume").exists()
    assert "train_runtime" not in capsys.readouterr().out  # an in-process fit keeps transformers' end-of-training dict off stdout


@pytest.mark.slow
def test_checkpoints_carry_the_training_state_except_after_the_last_step(tmp_path, real_headlines_path, company_listings_path):
    """Every checkpoint can resume training but the last one, which nothing resumes: it holds the
    model alone (the optimizer state is twice the model's size), and reads back as a finished run."""
    from finner.models.registry import ModelSpec, build_model
    from finner.train import RESUME_DIR, Resume, fine_tune, finished, in_memory_batches, steps_per_epoch, total_training_steps
    from tests.train_data import labelled_rows

    rows = examples(pa.Table.from_pylist([{k: r[k] for k in ("id", "title", "spans")} for r in labelled_rows(real_headlines_path, company_listings_path, 6)]))
    config = TrainConfig(epochs=2, batch_size=2, eval_every=2, learning_rate=1e-5, warmup_ratio=0.0)
    model, epoch_steps = build_model(ModelSpec("gliner", offline=True)), steps_per_epoch(4, 1, 2)
    kept: list[tuple[int, bool, Resume]] = []

    def report(metrics, checkpoint):
        kept.append((metrics["step"], os.path.isdir(os.path.join(checkpoint, RESUME_DIR)), Resume.read(checkpoint)))

    fine_tune(model, in_memory_batches(model, rows[:4], config), lambda: rows[4:], config, epoch_steps, str(tmp_path), report)
    total = total_training_steps(config, epoch_steps)
    assert [(step, has_state) for step, has_state, _ in kept] == [(0, True), (2, True), (4, False)]
    assert kept[1][2].optimizer["state"] and kept[-1][2].optimizer is None
    assert finished(kept[-1][2], config, total) and not finished(kept[1][2], config, total)


@pytest.mark.slow
def test_how_often_a_run_validates_does_not_change_what_it_learns(tmp_path, real_headlines_path, company_listings_path):
    """Validation predicts through a DataLoader, which draws its seed from torch's generator; were
    that draw left in place, dropout after each validation would differ, and one seed would train a
    different model for each `--eval-every` (a bench row could not change it without re-measuring)."""
    import torch

    from finner.models.registry import ModelSpec, build_model
    from finner.train import fine_tune, in_memory_batches, seed_everything, steps_per_epoch
    from tests.train_data import labelled_rows

    rows = examples(pa.Table.from_pylist([{k: r[k] for k in ("id", "title", "spans")} for r in labelled_rows(real_headlines_path, company_listings_path, 6)]))
    weights = []
    for eval_every in (1, 4):
        config = TrainConfig(epochs=2, batch_size=2, eval_every=eval_every, learning_rate=1e-4, warmup_ratio=0.0)
        seed_everything(config.seed)
        model = build_model(ModelSpec("gliner", offline=True))
        fine_tune(model, in_memory_batches(model, rows[:4], config), lambda: rows[4:], config, steps_per_epoch(4, 1, 2), str(tmp_path / str(eval_every)), lambda metrics, checkpoint: None)
        weights.append({k: v.clone() for k, v in model.model.state_dict().items()})
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


# Small settings so the runs finish in minutes on 2 CPU cores: fresh heads on the MiniLM encoder
# learn from a couple of hundred headlines in a few epochs (2 workers x batch 2). SpanMarker's
# head learns only with company spans up-weighted in its loss (the fresh-head default).
FAST = {
    "gliner": ["--epochs", "3", "--batch-size", "2", "--learning-rate", "5e-5", "--head-learning-rate", "1e-3", "--warmup-ratio", "0"],
    "spanmarker": ["--epochs", "3", "--batch-size", "2", "--learning-rate", "1e-4", "--head-learning-rate", "5e-3", "--warmup-ratio", "0"],
}


@pytest.fixture(scope="module")
def ray_session():
    import ray

    yield
    ray.shutdown()


@pytest.mark.slow
def test_fine_tune_on_ray_with_two_workers_keeps_the_best_epoch(ray_session, store, real_headlines_path, company_listings_path, capsys):
    """SpanMarker through Ray Train on 2 workers (GLiNER's 2-worker run is the feed test below):
    validated every epoch, better than untrained, and the best epoch is the one published."""
    from finner.models.registry import load_checkpoint
    from jobs.train import main

    kind = "spanmarker"

    write_sample(store, real_headlines_path, company_listings_path, train=64, valid=24)
    argv = ["--store", store.root, "--kind", kind, "--offline", "--num-workers", "2", *FAST[kind]]
    assert main(argv) == 0

    summary = store.get_json(f"train-{kind}-llm")
    evaluations = store.get_json(f"train-{kind}-llm-epochs")["evaluations"]
    # up to 64 rows (less title twins), 2 workers x 2 rows a step: one validation after each epoch
    epoch = math.ceil(summary["train_rows"] / 4)
    assert [(e["step"], e["epoch"]) for e in evaluations] == [(0, 0), (epoch, 1), (2 * epoch, 2), (3 * epoch, 3)]
    best = max(reversed(evaluations), key=lambda e: e["valid_f1"])  # of equal scores Ray keeps the later
    assert summary["best"]["step"] == best["step"] and summary["best"]["valid_f1"] == best["valid_f1"]
    # the failed LLM labels are left out, and so are title twins of the real gold's headlines
    assert summary["train_rows"] == llm_labelled(store, "train").num_rows == 64 - summary["twins_removed"] and summary["valid_rows"] == 24
    assert summary["twins_removed"] >= 1 and summary["gold_overlap"]["real"] == {"dev": 0, "dev2": 0, "test": 0} and summary["seed"] == 0
    # fine-tuning beats the untrained model (step 0)
    assert best["step"] >= epoch and best["valid_f1"] > evaluations[0]["valid_f1"], evaluations

    # The published checkpoint is the best one's (without its optimizer state): reloaded, it
    # predicts what that validation was scored on.
    assert not os.path.exists(os.path.join(summary["path"], "resume"))
    valid = examples(llm_labelled(store, "valid"))
    model = load_checkpoint(kind, summary["path"])
    predicted = model.predict([title for _, title, _ in valid])
    prf = exact_prf([spans for _, _, spans in valid], predicted)
    assert (prf.tp, prf.fp, prf.fn) == (best["valid_tp"], best["valid_fp"], best["valid_fn"])
    assert load_checkpoint(kind, summary["path"]).predict([title for _, title, _ in valid]) == predicted
    assert scoring_default(store) is None  # only a GLiNER becomes the scoring job's default

    capsys.readouterr()
    assert main(argv) == 0  # same data and settings: nothing to do
    assert "already trained" in capsys.readouterr().out


@pytest.mark.slow
def test_feed_rows_train_through_ray_data_on_two_workers_and_no_held_out_headline_reaches_one(ray_session, feed_store, planted_gold, capsys):
    """`--rows feed` on the real feed's train years, the first 48 rows: each of 2 workers trains on
    its own Ray Data shard, and the ids the workers record are exactly the expected rows, none of
    them a held-out headline or its title twin (the planted gold headlines come first in the table).
    Trained again (`--force`), the run is the same: the same batches for each worker, the same
    validations, the same kept step and F1."""
    from jobs.train import main

    argv = ["--store", feed_store.root, "--rows", "feed", "--max-train-rows", "48", "--num-workers", "2", "--record-rows", "--offline", "--seed", "7", *FAST["gliner"]]
    argv[argv.index("--epochs") + 1] = "1"
    argv[argv.index("--batch-size") + 1] = "4"
    assert main(argv) == 0
    out = capsys.readouterr().out
    kept, twins = expected_feed_rows(feed_store, planted_gold, 48)
    summary = feed_store.get_json("train-gliner-llm-feed")
    assert summary["rows"] == "feed" and summary["train_rows"] == 48 and summary["twins_removed"] == twins >= 3
    assert summary["seed"] == 7 and summary["train"]["seed"] == 7
    assert f"trained on 48 feed rows, seed 7 ({twins} title twins of held-out headlines left out)" in out
    assert summary["gold_overlap"]["real"] == {"test": 0}  # the planted gold: a test part only, none of it trained on

    trained = feed_store.read("trained_rows").to_pylist()
    assert {r["run"] for r in trained} == {summary["fingerprint"]}
    by_rank = Counter(r["rank"] for r in trained)
    assert by_rank == {0: 24, 1: 24}  # 12 batches of 4, 6 to each worker
    seen = [r["id"] for r in trained]
    assert sorted(seen) == sorted(kept)  # every row once, and only these
    titles = dict(zip(*(feed_store.read("headlines", columns=["id", "title"]).column(c).to_pylist() for c in ("id", "title"))))
    assert not {title_key(titles[i]) for i in seen} & {title_key(t) for t in planted_gold}
    assert [e["step"] for e in summary["evaluations"]] == [0, 2, 4, 6]  # 6 steps, one epoch: validated every 6/3 steps

    # The published checkpoint is the best validation's, without its optimizer state: reloaded, it
    # predicts what that validation scored (the sample's valid split); it is the scoring job's default.
    from finner.models.registry import load_checkpoint

    best = max(reversed(summary["evaluations"]), key=lambda e: e["valid_f1"])  # of equal scores Ray keeps the later
    assert summary["best"]["step"] == best["step"]
    assert not os.path.exists(os.path.join(summary["path"], "resume"))
    valid = examples(llm_labelled(feed_store, "valid"))
    prf = exact_prf([spans for _, _, spans in valid], load_checkpoint("gliner", summary["path"]).predict([title for _, title, _ in valid]))
    assert (prf.tp, prf.fp, prf.fn) == (best["valid_tp"], best["valid_fp"], best["valid_fn"])
    assert scoring_default(feed_store) == summary["path"]
    assert main(argv) == 0  # same rows and settings: nothing to do
    assert "already trained" in capsys.readouterr().out

    batches = lambda: sorted((r["rank"], r["epoch"], r["batch"], r["id"]) for r in feed_store.read("trained_rows").to_pylist())  # noqa: E731
    first_batches = batches()
    assert main([*argv, "--force"]) == 0
    again = feed_store.get_json("train-gliner-llm-feed")
    assert batches() == first_batches
    scored = lambda run: [(e["step"], e["valid_f1"], e["valid_tp"], e["valid_fp"], e["valid_fn"]) for e in run["evaluations"]]  # noqa: E731
    assert scored(again) == scored(summary)
    assert (again["best"]["step"], again["best"]["valid_f1"]) == (summary["best"]["step"], summary["best"]["valid_f1"])


def test_validation_interval_is_a_step_count_of_the_config_and_data_size():
    from finner.train import validation_interval

    assert validation_interval(TrainConfig(epochs=20), 750) == 750  # per epoch
    assert validation_interval(TrainConfig(epochs=2), 750) == 500  # at least 3 validations a run
    assert validation_interval(TrainConfig(epochs=20, max_steps=300), 750) == 100  # --max-steps short of an epoch
    assert validation_interval(TrainConfig(epochs=1), 2) == 1
    assert validation_interval(TrainConfig(eval_every=40, epochs=1), 6) == 40  # --eval-every as given


def test_company_weight_defaults_to_up_weighting_only_fresh_heads():
    assert TrainConfig().company_span_weight(fresh_head=True) == FRESH_HEAD_COMPANY_WEIGHT > 1
    assert TrainConfig().company_span_weight(fresh_head=False) == 1.0
    assert TrainConfig(company_weight=3.0).company_span_weight(fresh_head=True) == 3.0
    with pytest.raises(FinnerError, match="--company-weight: must be more than 0"):
        TrainConfig(company_weight=0.0)


def recorded_step(store) -> int:
    """The step of the latest checkpoint Ray Train has recorded in the run's snapshot (what a re-run
    restores), -1 before the first; Ray writes the snapshot after registering a report."""
    for path in Path(store.artifact(RAY_RUNS_DIR, "runs")).glob("gliner-llm-*/checkpoint_manager_snapshot.json"):
        try:
            latest = json.loads(path.read_text()).get("latest_checkpoint_result")
        except (OSError, json.JSONDecodeError):  # being replaced
            continue
        if latest:
            return int(latest["metrics"]["step"])
    return -1


@pytest.mark.slow
def test_a_killed_training_run_resumes_mid_epoch_without_repeating_a_step(store, real_headlines_path, company_listings_path):
    """SIGKILL the training job (driver, local Ray and workers) once Ray has recorded a checkpoint
    in the middle of the last epoch (2): the re-run takes it up, trains the rest of that epoch, and
    the rows each batch was cut from show every epoch trained on each row exactly once."""
    write_sample(store, real_headlines_path, company_listings_path, train=20, valid=8)
    argv = ["--store", store.root, "--kind", "gliner", "--offline", "--eval-every", "4", "--record-rows", *FAST["gliner"]]
    argv[argv.index("--epochs") + 1] = "2"
    job = subprocess.Popen([sys.executable, "-m", "jobs.train", *argv], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 900
    while recorded_step(store) < 12 and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.25)
    assert job.poll() is None, "the job ended before it could be killed"
    assert recorded_step(store) >= 12, "Ray recorded no checkpoint in epoch 2 in time"
    kill_group(job)
    before = store.get_json("train-gliner-llm-epochs")["evaluations"]
    assert not store.get_json("train-gliner-llm"), "the killed run must not have finished"

    rerun = run_module("jobs.train", *argv, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    history = store.get_json("train-gliner-llm-epochs")
    done = history["resumed_at_step"]
    # 20 rows, batches of 2: 10 steps an epoch; resumed in the middle of the second
    assert done is not None and done >= 12 and done % 10 and done in [e["step"] for e in before], (done, before)
    assert f"(resumed at step {done} of a killed run)" in rerun.stdout
    steps = [e["step"] for e in history["evaluations"]]
    assert steps == list(range(0, 21, 4))
    kept = [e for e in history["evaluations"] if e["step"] <= done]
    assert kept == [e for e in before if e["step"] <= done]  # the validations before the kill are kept, not re-run
    assert store.get_json("train-gliner-llm")["best"]["valid_f1"] == max(e["valid_f1"] for e in history["evaluations"])
    assert os.listdir(store.artifact(RAY_RUNS_DIR, "runs")) == []  # the killed run's Ray copy is gone too

    trained = store.read("trained_rows").to_pylist()
    train_ids = sorted(llm_labelled(store, "train").column("id").to_pylist())
    for epoch in range(2):
        assert sorted(r["id"] for r in trained if r["epoch"] == epoch) == train_ids, f"epoch {epoch}"
    assert len({(r["epoch"], r["batch"]) for r in trained}) == 20  # one batch a step
