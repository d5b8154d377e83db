"""The whole pipeline submitted with `ray job submit` to a real local Ray head, as on a cluster.

Real parts only: a Ray head started by `ray start --head` (tests/ray_cluster.py), the chat-completions
test server (the gazetteer over the real company listings) on loopback, a local Argilla whose records
are answered through its REST API like a reviewer in the UI, and ~300 real Benzinga headlines.
GLiNER only, on the packaged offline encoder, one epoch: the point is the wiring, not the scores.
"""

from __future__ import annotations

import re
from collections import Counter

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from finner import schemas
from finner.evaluate import FINE_TUNED, ZERO_SHOT
from finner.review import SPAN_QUESTION, Connection, ReviewConfig, connect, find_dataset, iter_records
from finner.review_server.launcher import LocalArgilla, LocalArgillaConfig
from finner.store import Store
from finner.testing.chat_server import FaultyServerConfig, serve_chat, stats
from tests.argilla_reviewer import answer, reviewer

pytestmark = pytest.mark.slow

FEED_ROWS = 150
RUNTIME_ENV = "runtime_env/pipeline.yaml"
REVIEW = ReviewConfig()  # the pipeline's review stages run with the defaults
PIPELINE_TIMEOUT_S = 600


@pytest.fixture
def feed(real_headlines_path, tmp_path):
    """~150 real headlines spread over 2010-2020 (every k-th row; 2009 is in no split)."""
    table = pq.read_table(real_headlines_path)
    table = table.filter(pc.invert(pc.starts_with(table["date"], "2009")))
    stride = table.num_rows // FEED_ROWS
    table = table.take(list(range(0, stride * FEED_ROWS, stride)))
    path = tmp_path / "feed.parquet"
    pq.write_table(table, path)
    return path


@pytest.fixture
def endpoint(company_listings_path):
    with serve_chat(FaultyServerConfig(listings=str(company_listings_path))) as url:
        yield url


def pipeline_args(store_root, feed, endpoint, listings, *flow: str) -> list[str]:
    return [
        "--store", str(store_root), "--path", str(feed), "--endpoint", endpoint, "--listings", str(listings),
        "--models", "gliner", "--epochs", "1", "--offline", "--train-workers", "1",
        "--stage-args", "curate=--fraction 1", *flow,
    ]  # fmt: skip


def submit_pipeline(cluster, args: list[str], env_vars: dict[str, str] | None = None):
    run = cluster.run("jobs.pipeline", *args, runtime_env=RUNTIME_ENV, env_vars=env_vars, timeout=PIPELINE_TIMEOUT_S)
    assert run.status == "SUCCEEDED", run.logs[-8000:]
    assert "Traceback" not in run.logs, run.logs  # nothing failed quietly in an actor either
    return run


def stage_done(logs: str, stage: str) -> bool:
    return re.search(rf"^\[{re.escape(stage)}\] done in ", logs, re.MULTILINE) is not None


def check_labelled_once(store: Store, endpoint: str) -> list[str]:
    """Every headline has exactly one llm_labels row (ok: the server is faultless) and was sent once."""
    headlines = store.read("headlines")
    ids = sorted(headlines["id"].to_pylist())
    labels = store.read("llm_labels")
    assert sorted(labels["id"].to_pylist()) == ids
    assert set(labels["status"].to_pylist()) == {schemas.LABEL_OK}
    # The server counts requests per title; a few titles recur (another day or ticker, another id).
    assert stats(endpoint)["by_headline"] == Counter(headlines["title"].to_pylist()), "a headline was sent more than once"
    return ids


def check_predictions(store: Store, ids: list[str]) -> None:
    predictions = store.read("predictions")
    assert sorted(predictions["id"].to_pylist()) == ids  # every headline scored, once
    assert len(set(predictions["model_version"].to_pylist())) == 1


def test_pipeline_with_human_review_end_to_end(ray_cluster, feed, endpoint, company_listings_path, tmp_path):
    store_root = tmp_path / "store"
    args = pipeline_args(store_root, feed, endpoint, company_listings_path)
    with LocalArgilla(LocalArgillaConfig(home=str(tmp_path / "argilla"), port=0)) as argilla:
        secrets = {"ARGILLA_API_URL": argilla.url, "ARGILLA_API_KEY": argilla.api_key}
        first = submit_pipeline(ray_cluster, [*args, "--until", "review-push"], env_vars=secrets)
        for stage in ("ingest", "label", "curate", "review-push"):
            assert stage_done(first.logs, stage), first.logs[-8000:]
        assert "[train]" not in first.logs

        store = Store(str(store_root))
        headlines = store.read("headlines")
        rejects = store.read("rejects")
        assert headlines.num_rows + rejects.num_rows == FEED_ROWS and headlines.num_rows >= FEED_ROWS - 5
        assert pc.count_distinct(headlines["id"]).as_py() == headlines.num_rows
        ids = check_labelled_once(store, endpoint)
        assert sorted(store.read("spans")["id"].to_pylist()) == ids
        sample = {row["id"]: row for row in store.read("sample").to_pylist()}
        assert sorted(sample) == ids  # --fraction 1: every headline of 2010-2020 is sampled
        for row in sample.values():
            year = row["date"].year
            assert row["split"] == ("train" if year <= 2016 else "valid" if year <= 2018 else "test"), row
        assert set(Counter(r["split"] for r in sample.values())) == set(schemas.SPLITS)
        assert sum(bool(r["spans"]) for r in sample.values()) > FEED_ROWS // 4  # the gazetteer finds companies

        # Reviewers work in Argilla: accept the LLM suggestion mostly, correct some, discard one.
        client = connect(Connection(argilla.url, argilla.api_key))
        person = reviewer(client, argilla.url, "reviewer1", REVIEW.workspace)
        expected: dict[str, tuple[str, list[tuple[int, int]] | None]] = {}
        for split in schemas.SPLITS:
            dataset = find_dataset(client, REVIEW, split)
            questions = {str(q.id): q.name for q in dataset.settings.questions}
            records = list(iter_records(client, dataset))
            assert sorted(r["external_id"] for r in records) == sorted(h for h, r in sample.items() if r["split"] == split)
            for n, record in enumerate(sorted(records, key=lambda r: r["external_id"])):
                hid = record["external_id"]
                suggested = next((s["value"] for s in record["suggestions"] if questions[s["question_id"]] == SPAN_QUESTION), [])
                spans = [(v["start"], v["end"]) for v in suggested]
                assert spans == [(s["start"], s["end"]) for s in sample[hid]["spans"] or []]
                if split == "train" and n == 0:
                    expected[hid] = (schemas.GOLD_DISCARDED, None)
                elif n % 10 == 3:  # a correction: the reviewer marks only the first word as the company
                    first = re.match(r"\w+", sample[hid]["title"])
                    expected[hid] = (schemas.GOLD_SUBMITTED, [first.span()] if first else [])
                else:
                    expected[hid] = (schemas.GOLD_SUBMITTED, spans)
                answer(person, record["id"], *expected[hid])

        second = submit_pipeline(ray_cluster, [*args, "--from", "review-pull"], env_vars=secrets)
    for stage in ("review-pull", "train", "evaluate", "score"):
        assert stage_done(second.logs, stage), second.logs[-8000:]
    assert "[ingest]" not in second.logs and "[label]" not in second.logs
    assert "learning curve not asked for" in second.logs and "[report]" in second.logs
    assert "pipeline finished in " in second.logs

    gold = {row["id"]: row for row in store.read("gold").to_pylist()}
    assert sorted(gold) == ids
    for hid, (status, drawn) in expected.items():
        row, title = gold[hid], sample[hid]["title"]
        assert (row["status"], row["split"], row["title"], row["annotator"]) == (status, sample[hid]["split"], title, "reviewer1")
        if drawn is None:
            assert row["spans"] is None
        else:
            assert [(s["start"], s["end"], s["text"], s["label"]) for s in row["spans"]] == [(s, e, title[s:e], schemas.COMPANY) for s, e in drawn]
    assert Counter(r["status"] for r in gold.values()) == {schemas.GOLD_SUBMITTED: len(ids) - 1, schemas.GOLD_DISCARDED: 1}

    metrics = store.read("metrics").to_pylist()
    rows = {(r["model"], r["setting"]) for r in metrics}
    assert {("spacy", ZERO_SHOT)} <= rows
    assert any(model.startswith("gliner") and setting == FINE_TUNED for model, setting in rows), rows
    assert any(model.startswith("gliner") and setting == ZERO_SHOT for model, setting in rows), rows
    assert {r["split"] for r in metrics} == {"test"}
    test_gold = sum(r["split"] == "test" and r["status"] == schemas.GOLD_SUBMITTED for r in gold.values())
    assert all(r["n_headlines"] == test_gold for r in metrics)
    check_predictions(store, ids)
    assert check_labelled_once(store, endpoint) == ids  # the second submission labelled nothing again


def test_stopped_pipeline_resubmitted_redoes_nothing_finished(ray_cluster, feed, endpoint, company_listings_path, tmp_path):
    store_root = tmp_path / "store"
    args = pipeline_args(store_root, feed, endpoint, company_listings_path)
    # No ARGILLA_API_URL: the review stages are skipped and evaluation waits for gold.
    job = ray_cluster.submit("jobs.pipeline", *args, runtime_env=RUNTIME_ENV)
    logs = ray_cluster.wait_for_log(job, "[train]", timeout=PIPELINE_TIMEOUT_S)
    assert ray_cluster.stop_job(job) == "STOPPED"
    assert stage_done(logs, "label") and stage_done(logs, "curate")
    assert "human review skipped" in logs
    stopped = ray_cluster.logs(job)
    assert not stage_done(stopped, "train") and "[score]" not in stopped  # stopped while training

    store = Store(str(store_root))
    ids = check_labelled_once(store, endpoint)
    sample_before = store.read("sample").sort_by("id")
    assert not store.exists("predictions")

    # Up to the stage it was stopped in (scoring after it is the other test's): the training the
    # stop cut short runs to the end.
    again = submit_pipeline(ray_cluster, [*args, "--until", "train"])
    for stage in ("ingest", "label", "curate", "train"):
        assert stage_done(again.logs, stage), again.logs[-8000:]
    assert "[score]" not in again.logs and "pipeline finished in " in again.logs
    assert store.get_json("train-gliner-llm")["path"], "the resubmitted training published no model"
    # Finished work was not redone: nothing labelled again, no headline sent twice.
    assert "labeled 0 headlines" in again.logs and f"{len(ids)} already ok" in again.logs, again.logs[-8000:]
    assert check_labelled_once(store, endpoint) == ids
    assert store.read("sample").sort_by("id").equals(sample_before)
