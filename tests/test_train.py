"""Fine-tuning: training rows from the store, best-epoch keeping, and the Ray Train job end to end
(both models on the local encoder, real headlines labelled by our gazetteer labeler, 2 workers)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from finner import schemas
from finner.errors import FinnerError
from finner.artifacts import RAY_RUNS_DIR, scoring_default
from finner.metrics import exact_prf
from finner.models.train_config import FRESH_HEAD_COMPANY_WEIGHT, FRESH_HEAD_LEARNING_RATE, TrainConfig
from finner.train import KeepBest, examples, fit_locally
from finner.training_data import gold_labelled, llm_labelled
from tests.conftest import REPO, run_module, kill_group
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
    assert train.num_rows == 30 and "failed-train" not in train.column("id").to_pylist()
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
    assert help_run.returncode == 0 and "--encoder" in help_run.stdout and "--num-workers" in help_run.stdout
    missing = run_module("jobs.train", "--store", str(tmp_path / "empty"), "--offline")
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1] == "error: no `sample` table in the store: run the curation stage (jobs.curate) first"


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
@pytest.mark.parametrize("kind", ["gliner", "spanmarker"])
def test_fine_tune_on_ray_with_two_workers_keeps_the_best_epoch(kind, ray_session, store, real_headlines_path, company_listings_path, capsys):
    from finner.models.registry import load_checkpoint
    from jobs.train import main

    write_sample(store, real_headlines_path, company_listings_path, train=160, valid=48)
    argv = ["--store", store.root, "--kind", kind, "--offline", "--num-workers", "2", *FAST[kind]]
    assert main(argv) == 0

    summary = store.get_json(f"train-{kind}-llm")
    epochs = store.get_json(f"train-{kind}-llm-epochs")["epochs"]
    assert [e["epoch"] for e in epochs] == list(range(int(FAST[kind][1]) + 1))
    best = max(reversed(epochs), key=lambda e: e["valid_f1"])  # of equal scores Ray keeps the later
    assert summary["best"]["epoch"] == best["epoch"] and summary["best"]["valid_f1"] == best["valid_f1"]
    assert summary["train_rows"] == 160 and summary["valid_rows"] == 48  # the failed LLM labels are left out
    # fine-tuning beats the untrained model (epoch 0)
    assert best["epoch"] >= 1 and best["valid_f1"] > epochs[0]["valid_f1"], epochs

    # The published checkpoint is the best epoch's: reloaded, it predicts what that epoch was scored on.
    valid = examples(llm_labelled(store, "valid"))
    model = load_checkpoint(kind, summary["path"])
    predicted = model.predict([title for _, title, _ in valid])
    prf = exact_prf([spans for _, _, spans in valid], predicted)
    assert (prf.tp, prf.fp, prf.fn) == (best["valid_tp"], best["valid_fp"], best["valid_fn"])
    assert load_checkpoint(kind, summary["path"]).predict([title for _, title, _ in valid]) == predicted
    if kind == "gliner":
        assert scoring_default(store) == summary["path"]  # where the scoring job finds it

    capsys.readouterr()
    assert main(argv) == 0  # same data and settings: nothing to do
    assert "already trained" in capsys.readouterr().out


def test_company_weight_defaults_to_up_weighting_only_fresh_heads():
    assert TrainConfig().company_span_weight(fresh_head=True) == FRESH_HEAD_COMPANY_WEIGHT > 1
    assert TrainConfig().company_span_weight(fresh_head=False) == 1.0
    assert TrainConfig(company_weight=3.0).company_span_weight(fresh_head=True) == 3.0
    with pytest.raises(FinnerError, match="--company-weight: must be more than 0"):
        TrainConfig(company_weight=0.0)


def test_a_resumed_run_continues_the_learning_rate_schedule():
    warm = TrainConfig(epochs=20, warmup_ratio=0.1)
    assert [round(warm.learning_rate_fraction(done), 4) for done in (1, 2, 11, 19)] == [0.5, 1.0, 0.5, round(1 / 18, 4)]
    assert TrainConfig(epochs=20, warmup_ratio=0.0).learning_rate_fraction(5) == 0.75
    rest = TrainConfig(epochs=4, learning_rate=1e-4, warmup_ratio=0.0).remaining(1, fresh_head=True)
    assert (rest.epochs, rest.warmup_ratio) == (3, 0.0)
    assert rest.learning_rate == pytest.approx(0.75e-4)
    assert rest.head_learning_rate == pytest.approx(0.75 * FRESH_HEAD_LEARNING_RATE)  # the fresh-head default, kept
    assert rest.company_weight == FRESH_HEAD_COMPANY_WEIGHT


def recorded_epoch(store) -> int:
    """The latest epoch whose checkpoint Ray Train has recorded in the run's snapshot (what a
    re-run restores), -1 before the first; Ray writes the snapshot after registering a report."""
    for path in Path(store.artifact(RAY_RUNS_DIR, "runs")).glob("gliner-llm-*/checkpoint_manager_snapshot.json"):
        try:
            latest = json.loads(path.read_text()).get("latest_checkpoint_result")
        except (OSError, json.JSONDecodeError):  # being replaced
            continue
        if latest:
            return int(latest["metrics"]["epoch"])
    return -1


@pytest.mark.slow
def test_a_killed_training_run_resumes_after_its_last_finished_epoch(store, real_headlines_path, company_listings_path):
    """SIGKILL the training job (driver, local Ray and workers) once it has finished an epoch: the
    re-run takes up the latest checkpoint Ray recorded instead of starting over."""
    write_sample(store, real_headlines_path, company_listings_path, train=80, valid=24)
    argv = ["--store", store.root, "--kind", "gliner", "--offline", *FAST["gliner"]]
    job = subprocess.Popen([sys.executable, "-m", "jobs.train", *argv], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 600
    while recorded_epoch(store) < 1 and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert job.poll() is None, "the job ended before it could be killed"
    assert recorded_epoch(store) >= 1, "Ray recorded no epoch-1 checkpoint in time"
    kill_group(job)
    before = store.get_json("train-gliner-llm-epochs")["epochs"]
    assert not store.get_json("train-gliner-llm"), "the killed run must not have finished"

    rerun = run_module("jobs.train", *argv)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    history = store.get_json("train-gliner-llm-epochs")
    done = history["resumed_after_epoch"]
    assert done is not None and 1 <= done <= before[-1]["epoch"], (done, before)
    assert f"(resumed after epoch {done} of a killed run)" in rerun.stdout
    assert [e["epoch"] for e in history["epochs"]] == [0, 1, 2, 3]
    assert history["epochs"][: done + 1] == before[: done + 1]  # the finished epochs are kept, not re-run
    assert store.get_json("train-gliner-llm")["best"]["valid_f1"] == max(e["valid_f1"] for e in history["epochs"])
    assert os.listdir(store.artifact(RAY_RUNS_DIR, "runs")) == []  # the killed run's Ray copy is gone too
