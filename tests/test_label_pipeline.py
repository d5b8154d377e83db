"""The label job on a real local Ray against the real fault-injecting server: nothing lost, nothing paid twice.

5,000 real Benzinga headlines, 20% of calls failing in mixed ways; a run SIGKILLed mid-way and
resumed. Short timeouts and backoffs keep it quick.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.compute as pc
import pytest

from finner import schemas
from finner.label import LabelConfig, current_label_version, latest_labels
from finner.pipeline import cli
from finner.artifacts import LABEL_COST_KEY as COST_KEY
from finner.artifacts import LABEL_ESTIMATE_KEY as ESTIMATE_KEY
from finner.pipeline.label import LabelRunConfig, run_labeling
from finner.source import SourceConfig, ingest
from finner.store import Store
from finner.testing.chat_server import FaultyServerConfig, reset_stats, serve_chat, stats
from finner.listing_labeller import Gazetteer
from tests.conftest import REPO, kill_group

pytestmark = pytest.mark.slow
FAST_CLIENT = dict(timeout_s=0.5, backoff_base_s=0.02, backoff_max_s=0.1, max_in_flight=32)


@pytest.fixture(scope="module")
def ray_local():
    import ray

    cli.init_ray()
    yield
    ray.shutdown()


def headlines_store(root: Path, source: Path, rows: int) -> Store:
    store = Store(str(root))
    ingest(SourceConfig(path=str(source), limit=rows), store, progress=False)
    return store


def titles_by_id(store: Store) -> dict[str, str]:
    table = store.read("headlines", columns=["id", "title"])
    return dict(zip(table["id"].to_pylist(), table["title"].to_pylist()))


def test_5000_rows_with_20_percent_mixed_faults_end_with_a_status_each(tmp_path, real_headlines_path, company_listings_path, ray_local):
    store = headlines_store(tmp_path / "store", real_headlines_path, 5000)
    titles = titles_by_id(store)
    assert len(titles) > 4900
    server = FaultyServerConfig(listings=str(company_listings_path), fault_rate=0.2, retry_after_s=0.05, slow_s=0.2, hang_s=1.5)
    run = LabelRunConfig(actors=2, batch_rows=100)
    with serve_chat(server) as url:
        label = LabelConfig(endpoint=url, max_retries=3, **FAST_CLIENT)
        first = run_labeling(store, label, run, progress=False)
        seen = stats(url)

        table = store.read("llm_labels")
        ids = table["id"].to_pylist()
        assert len(ids) == len(set(ids)) == len(titles) and set(ids) == set(titles)  # none missing, none twice
        statuses = Counter(table["status"].to_pylist())
        assert set(statuses) <= {schemas.LABEL_OK, schemas.LABEL_INVALID, schemas.LABEL_FAILED}
        assert statuses[schemas.LABEL_OK] > 0.8 * len(ids) and statuses[schemas.LABEL_INVALID] > 0 and statuses[schemas.LABEL_FAILED] > 0
        assert first.statuses == statuses and first.rows == len(ids)
        # Every call is accounted for; an attempt that timed out before the server read it is counted by the client only.
        assert pc.sum(table["attempts"]).as_py() == first.requests >= seen["requests"] > 0.97 * first.requests
        assert sum(seen["faults"].values()) > 0.15 * seen["requests"] and len(seen["faults"]) == 13
        invalid = table.filter(pc.equal(table["status"], schemas.LABEL_INVALID))
        assert pc.all(pc.is_valid(invalid["error"])).as_py() and invalid["raw"].null_count < invalid.num_rows
        cost = store.get_json(COST_KEY)
        assert cost["statuses"] == {k: statuses[k] for k in cost["statuses"]} and cost["prompt_tokens"] == first.prompt_tokens

        # Resume: only rows that are not ok go out again, and the table gains one ok-or-latest row per id.
        ok_titles = {titles[i] for i, s in zip(ids, table["status"].to_pylist()) if s == schemas.LABEL_OK}
        retried_titles = {titles[i] for i, s in zip(ids, table["status"].to_pylist()) if s != schemas.LABEL_OK}
        reset_stats(url)
        second = run_labeling(store, label, run, progress=False)
        again = stats(url)["by_headline"]
    assert second.rows == len(ids) - statuses[schemas.LABEL_OK] and second.already_ok == statuses[schemas.LABEL_OK]
    assert not {t for t in again if t in ok_titles and t not in retried_titles}
    latest = latest_labels(store, current_label_version(store))
    assert sorted(latest["id"].to_pylist()) == sorted(titles)
    assert Counter(latest["status"].to_pylist())[schemas.LABEL_OK] > statuses[schemas.LABEL_OK]


def test_killed_run_resumes_to_the_same_table_without_resending_ok_rows(tmp_path, real_headlines_path, company_listings_path):
    store = headlines_store(tmp_path / "store", real_headlines_path, 2000)
    titles = titles_by_id(store)
    gazetteer = Gazetteer.from_listings(company_listings_path)
    # Transient faults only, with retries to spare: an uninterrupted run ends all ok with the gazetteer's answers.
    server = FaultyServerConfig(
        listings=str(company_listings_path),
        latency_median_s=0.03,
        latency_sigma=0.5,
        fault_rate=0.2,
        faults=("rate_limited", "unavailable", "reset"),
        retry_after_s=0.05,
    )
    job = ["--store", store.root, "--max-retries", "10", "--timeout-s", "2", "--backoff-base-s", "0.02", "--backoff-max-s", "0.1"]
    job += ["--actors", "1", "--max-in-flight", "8", "--batch-rows", "40", "--commit-rows", "40", "--quiet"]
    with serve_chat(server) as url:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobs.label", "--endpoint", url, *job],
            cwd=REPO,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 240
            while len(store.files("llm_labels")) < 5 and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert proc.poll() is None, "the job finished before it could be killed"
        finally:
            kill_group(proc)  # the job and the Ray processes it started
        settled = _settled_request_count(url)
        before = store.read("llm_labels")
        ok_before = set(pc.filter(before["id"], pc.equal(before["status"], schemas.LABEL_OK)).to_pylist())
        assert 0 < len(ok_before) < len(titles)

        reset_stats(url)
        resumed = subprocess.run([sys.executable, "-m", "jobs.label", "--endpoint", url, *job], cwd=REPO, capture_output=True, text=True, timeout=400)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        sent_again = stats(url)["by_headline"]
    assert settled > 0
    remaining_titles = {titles[i] for i in titles if i not in ok_before}
    resent_ok = [i for i in ok_before if titles[i] in sent_again and titles[i] not in remaining_titles]
    assert not resent_ok, f"{len(resent_ok)} ok rows were sent again"
    assert f"{len(ok_before)} already ok" in resumed.stdout

    table = store.read("llm_labels")
    assert len(table) == len(set(table["id"].to_pylist())) == len(titles)  # nothing twice, nothing missing
    latest = latest_labels(store, current_label_version(store))
    assert latest.num_rows == len(titles)
    headlines = store.read("headlines", columns=["id", "symbol"])
    symbols = dict(zip(headlines["id"].to_pylist(), headlines["symbol"].to_pylist()))
    for row in latest.to_pylist():  # the endpoint sees the title and the feed's ticker
        assert row["status"] == schemas.LABEL_OK
        assert (row["result"], row["normalized_result"]) == tuple(map(list, gazetteer.label(titles[row["id"]], symbols[row["id"]])))


def _settled_request_count(url: str) -> int:
    """The server's request count once nothing arrives any more (no orphan worker still sends)."""
    count = stats(url)["requests"]
    for _ in range(20):
        time.sleep(0.5)
        now = stats(url)["requests"]
        if now == count:
            return now
        count = now
    raise AssertionError("requests kept arriving after the job was killed")


def test_built_in_endpoint_labels_as_the_listing_labeller(tmp_path, real_headlines_path, company_listings_path):
    """`jobs.label --test-endpoint`: the job serves the product's own endpoint (`finner.listing_server`)
    and every headline gets the listing labeller's answer."""
    store = headlines_store(tmp_path / "store", real_headlines_path, 200)
    job = ["--store", store.root, "--test-endpoint", "--listings", str(company_listings_path), "--actors", "1", "--quiet"]
    done = subprocess.run([sys.executable, "-m", "jobs.label", *job], cwd=REPO, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-2000:]
    labels = latest_labels(store, current_label_version(store))
    headlines = store.read("headlines", columns=["id", "title", "symbol"]).to_pylist()
    gazetteer = Gazetteer.from_listings(company_listings_path)
    expected = {h["id"]: gazetteer.label(h["title"], h["symbol"])[0] for h in headlines}
    assert set(labels["status"].to_pylist()) == {schemas.LABEL_OK} and set(labels["model"].to_pylist()) == {"gazetteer"}
    assert dict(zip(labels["id"].to_pylist(), labels["result"].to_pylist())) == expected
    assert sum(bool(r) for r in expected.values()) > 100  # real headlines, most of them naming a listed company


def test_estimate_labels_a_sample_and_extrapolates(tmp_path, real_headlines_path, ray_local):
    store = headlines_store(tmp_path / "store", real_headlines_path, 3000)
    total = store.read("headlines", columns=["id"]).num_rows
    server = FaultyServerConfig(latency_median_s=0.05, latency_sigma=0.0)
    run = LabelRunConfig(actors=2, estimate=True, estimate_rows=60, usd_per_hour=10.0, usd_per_million_prompt_tokens=1.0)
    with serve_chat(server) as url:
        summary = run_labeling(store, LabelConfig(endpoint=url, max_in_flight=4, requests_per_second=30), run, progress=False)
        seen = stats(url)
    assert seen["requests"] == 60
    # The requests/s cap is global: two actors share 30/s, so 60 requests span at least ~2 s (and both
    # actors get work, small as the sample is: otherwise one actor at 15/s would take 4 s).
    assert 59 / 30 * 0.95 <= max(seen["answer_times"]) - seen["first_request_at"] < 3.5
    assert summary.rows == 60 and len(store.read("llm_labels")) == 60  # the sample's labels are kept
    estimate = store.get_json(ESTIMATE_KEY)["estimate"]
    assert estimate["rows"] == total and estimate["sample_rows"] == 60
    # Little's law would give 3000 x ~0.05 s / 8 in flight (~19 s); the 30/s cap is slower and wins.
    assert estimate["elapsed_s"] == pytest.approx(total / 30, rel=0.01)
    per_row_tokens = summary.prompt_tokens / 60
    assert estimate["prompt_tokens"] == pytest.approx(per_row_tokens * total, rel=0.01)
    expected_usd = estimate["elapsed_s"] / 3600 * 10.0 + estimate["prompt_tokens"] / 1e6
    assert estimate["usd"] == pytest.approx(expected_usd, abs=0.01)
    assert store.get_json(COST_KEY) is None  # an estimate is not a run's cost


def test_a_new_prompt_relabels_every_row_once_and_curation_reads_one_version(tmp_path, real_headlines_path, company_listings_path, ray_local):
    """Label, change the prompt, re-run: every headline is sent exactly once more; a third run sends
    nothing; both versions stay in `llm_labels` and curation reads the latest run's."""
    from finner.curate import curate

    store = headlines_store(tmp_path / "store", real_headlines_path, 300)
    titles = titles_by_id(store)
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("Return the companies the headline names, as JSON.\n{examples}\n")
    run = LabelRunConfig(actors=1, batch_rows=50)
    with serve_chat(FaultyServerConfig(listings=str(company_listings_path))) as url:
        patient = {**FAST_CLIENT, "timeout_s": 60.0}  # no retry on a busy machine: each request is one headline
        first = LabelConfig(endpoint=url, **patient)
        second = LabelConfig(endpoint=url, prompt_file=str(prompt), **patient)
        assert first.label_version() != second.label_version() and first.prompt_version() != second.prompt_version()

        done = run_labeling(store, first, run, progress=False)
        assert (done.rows, done.relabelled) == (len(titles), 0)
        reset_stats(url)
        again = run_labeling(store, second, run, progress=False)
        sent = stats(url)["by_headline"]
        assert (again.rows, again.relabelled, again.already_ok) == (len(titles), len(titles), 0)
        assert sent == dict(Counter(titles.values()))  # each headline once (a title the feed repeats, once per row)
        reset_stats(url)
        third = run_labeling(store, second, run, progress=False)
        assert (third.rows, third.already_ok) == (0, len(titles)) and stats(url)["requests"] == 0

    labels = store.read("llm_labels")
    assert Counter(labels["label_version"].to_pylist()) == {first.label_version(): len(titles), second.label_version(): len(titles)}
    assert set(labels["prompt_version"].to_pylist()) == {first.prompt_version(), second.prompt_version()}
    assert latest_labels(store, first.label_version()).num_rows == len(titles)
    summary = curate(store, progress=False)
    assert summary.label_version == second.label_version()  # the latest run's labels
    assert curate(store, progress=False, label_version=first.label_version()).label_version == first.label_version()
