"""The scoring job as a user runs it: real local Ray, real headlines, killed with SIGKILL midway and
re-run: every headline ends up scored exactly once."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter

import pyarrow.compute as pc
import pytest

from finner.score import ScoreConfig, Scorer, model_version, untrained_checkpoint
from finner.store import Store
from finner.testing.feeds import write_scaled_feed
from tests.conftest import REPO, run_module, kill_group
from tests.voters import voters

ROWS, BATCH, COMMIT_BATCHES = 96, 8, 2  # a block (and a commit) of two batches: the cut the job makes


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return untrained_checkpoint(str(tmp_path_factory.mktemp("gliner")))


def score_args(store: Store, checkpoint: str) -> list[str]:
    return ["--store", store.root, "--model", checkpoint, "--batch-rows", str(BATCH), "--commit-batches", str(COMMIT_BATCHES), "--threads", "2", "--no-report"]


def parts(store: Store) -> int:
    return len(store.files("predictions"))


@pytest.mark.slow
def test_killed_job_resumes_without_rescoring(store, checkpoint, real_headlines_path, company_listings_path, tmp_path):
    feed = write_scaled_feed(real_headlines_path, company_listings_path, ROWS, tmp_path / "feed.parquet")
    assert run_module("jobs.ingest", "--store", store.root, "--path", str(feed), "--quiet").returncode == 0
    ids = store.read("headlines", columns=["id"])["id"].to_pylist()
    version = model_version(ScoreConfig(model=(checkpoint,)))

    job = subprocess.Popen(
        [sys.executable, "-m", "jobs.score", *score_args(store, checkpoint)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + 400
    while parts(store) < 2 and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job.poll() is None, "the job finished before it could be killed: raise ROWS"
    kill_group(job)
    scored_before = store.ids("predictions")
    assert 0 < len(scored_before) < len(ids), "the kill should land midway"

    rerun = run_module("jobs.score", *score_args(store, checkpoint), "--quiet")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{len(scored_before)} already scored" in rerun.stdout
    assert f"scored {len(ids) - len(scored_before)} headlines" in rerun.stdout

    predictions = store.read("predictions", filter=pc.field("model_version") == version)
    counts = Counter(predictions["id"].to_pylist())
    assert set(counts) == set(ids), "every headline is scored"
    assert max(counts.values()) == 1, f"scored twice: {[i for i, n in counts.items() if n > 1][:5]}"
    throughput = store.get_json("score_throughput")
    assert throughput["rows"] == len(ids) - len(scored_before) and throughput["per_actor_headlines_per_s"] > 0

    again = run_module("jobs.score", *score_args(store, checkpoint), "--quiet")
    assert again.returncode == 0 and "scored 0 headlines" in again.stdout and f"{len(ids)} already scored" in again.stdout
    assert store.read("predictions").num_rows == len(ids)


@pytest.mark.slow
def test_a_vote_scores_the_feed_as_the_scorer_does(store, checkpoint, real_headlines_path, company_listings_path, tmp_path):
    """`--model A B C` through the job (preparation tasks, actor, writing tasks): the vote's spans
    under the vote's model version."""
    feed = write_scaled_feed(real_headlines_path, company_listings_path, 40, tmp_path / "feed.parquet")
    assert run_module("jobs.ingest", "--store", store.root, "--path", str(feed), "--quiet").returncode == 0
    models = voters(checkpoint, tmp_path)
    done = run_module("jobs.score", "--store", store.root, "--model", *models, "--runtime", "torch", "--batch-rows", str(BATCH), "--threads", "2", "--no-report", "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    config = ScoreConfig(model=models, runtime="torch")
    predictions = store.read("predictions")
    assert set(predictions["model_version"].to_pylist()) == {model_version(config)}
    headlines = store.read("headlines", columns=["id", "title"])
    expected = dict(zip(headlines["id"].to_pylist(), Scorer(config).predict(headlines["title"].to_pylist())))
    written = {row["id"]: [(s["start"], s["end"]) for s in row["spans"]] for row in predictions.to_pylist()}
    assert sum(map(len, written.values())) > 10, "the comparison would be vacuous"
    assert written == {i: [(s["start"], s["end"]) for s in spans] for i, spans in expected.items()}


def test_job_errors_are_one_line(store, checkpoint, tmp_path):
    no_headlines = run_module("jobs.score", "--store", store.root, "--model", checkpoint)
    assert no_headlines.returncode == 2
    assert no_headlines.stderr.strip().splitlines()[-1].startswith("error: the store has no headlines table")
    no_model = run_module("jobs.score", "--store", store.root)
    assert no_model.returncode == 2 and "no fine-tuned GLiNER checkpoint" in no_model.stderr
    # Refused in the Ray task that checks the runtime: still its one line, not the task's traceback.
    assert run_module("jobs.ingest", "--store", store.root, "--quiet").returncode == 0
    cpu_path = run_module("jobs.score", "--store", store.root, "--model", checkpoint, "--gpus", "yes", "--runtime", "onnx", "--no-report")
    assert cpu_path.returncode == 2, cpu_path.stderr[-2000:]
    assert cpu_path.stderr.strip().splitlines()[-1] == "error: --runtime onnx is the CPU path; use --runtime torch or auto on GPUs"
