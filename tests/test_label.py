"""The labeling client against the real fault-injecting chat server on loopback, and answer parsing."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time

import pyarrow as pa
import pytest

from finner import schemas
from finner.label import (
    FEW_SHOT,
    ChatClient,
    Companies,
    LabelConfig,
    chat_url,
    label_rows,
    messages_for,
    parse_answer,
    pick_latest,
    response_format,
    system_prompt,
)
from finner.testing.chat_server import FaultyServerConfig, serve_chat, stats
from tests.conftest import run_module

TITLES = [
    "Dun & Bradstreet Acquires Avention For $150M",
    "Fast Money Picks For April 27",
    "Apple Shares Rise After Earnings Beat (AAPL)",
    "Tesla And Ford Fall As Dow Jones Drops",
]
# Client settings that keep fault tests fast: short timeout, tiny backoff.
FAST = dict(timeout_s=0.5, backoff_base_s=0.01, backoff_max_s=0.05)


def run(coro):
    return asyncio.run(coro)


async def label(url: str, titles: list[str], **overrides) -> pa.Table:
    client = ChatClient(LabelConfig(endpoint=url, **{**FAST, **overrides}))
    try:
        return await label_rows([f"id{i}" for i in range(len(titles))], titles, client)
    finally:
        await client.close()


# -- prompt and schema -----------------------------------------------------------------------


def test_prompt_has_role_task_format_and_examples():
    prompt = system_prompt()
    assert "financial expert" in prompt and "Dow Jones" in prompt and '"normalized_result"' in prompt
    for title, answer in FEW_SHOT:
        assert json.dumps(title) in prompt and answer.model_dump_json() in prompt
        assert all(company in title for company in answer.result)  # the examples obey our own rule
    assert any(not a.result for _, a in FEW_SHOT) and any("(" in t for t, _ in FEW_SHOT)
    assert messages_for("Tesla Falls")[-1] == {"role": "user", "content": "Tesla Falls"}


def test_response_formats_per_server_kind():
    schema = Companies.model_json_schema()
    assert response_format("tgi") == {"type": "json_object", "value": schema}
    assert response_format("llamacpp") == {"type": "json_object", "schema": schema}
    openai = response_format("openai")
    assert openai["type"] == "json_schema" and openai["json_schema"]["schema"] == schema
    with pytest.raises(ValueError, match="--response-format: expected one of"):
        LabelConfig(endpoint="http://x", response_format="xml")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("content", "status", "error"),
    [
        ('{"result": ["Apple"], "normalized_result": ["Apple Inc."]}', schemas.LABEL_OK, None),
        ('{"result": [], "normalized_result": []}', schemas.LABEL_OK, None),
        ("Sure! Apple", schemas.LABEL_INVALID, "not JSON"),
        ('{"result": ["Apple"], "normalized_result": ["Apple', schemas.LABEL_INVALID, "not JSON"),
        ('{"companies": ["Apple"]}', schemas.LABEL_INVALID, "schema violation"),
        ('{"result": "Apple", "normalized_result": []}', schemas.LABEL_INVALID, "schema violation"),
        ('{"result": ["Apple"], "normalized_result": []}', schemas.LABEL_INVALID, "1 entries but normalized_result has 0"),
        ('{"result": ["Microsoft"], "normalized_result": ["Microsoft"]}', schemas.LABEL_INVALID, "not written in the headline"),
    ],
)
def test_parse_answer(content, status, error):
    parsed = parse_answer(content, "Apple Shares Rise")
    assert parsed.status == status
    assert (parsed.error is None) if error is None else (error in parsed.error)


# -- the client against the real server -------------------------------------------------------


@pytest.mark.parametrize("kind", ["tgi", "openai", "llamacpp"])
def test_clean_server_labels_every_row_ok_in_each_format(kind):
    with serve_chat() as url:
        table = run(label(url, TITLES, response_format=kind))
        seen = stats(url)
    assert table.schema == schemas.LLM_LABELS
    rows = table.to_pylist()
    assert [r["status"] for r in rows] == [schemas.LABEL_OK] * 4
    assert rows[0]["result"] == ["Dun & Bradstreet"] and rows[1]["result"] == []
    assert rows[3]["result"] == ["Tesla", "Ford"]  # the index is not a company
    assert all(r["prompt_tokens"] > 100 and r["completion_tokens"] > 0 and r["attempts"] == 1 for r in rows)
    assert seen["formats"] == {kind: 4}  # the form reaches the server verbatim (openai is not rewritten)


@pytest.mark.parametrize("fault", ["rate_limited", "server_error", "unavailable", "reset", "hang", "broken_body"])
def test_transient_faults_are_retried_then_fail_with_the_last_error(fault):
    config = FaultyServerConfig(fault_rate=1.0, faults=(fault,), retry_after_s=0.05, hang_s=2.0)
    with serve_chat(config) as url:
        table = run(label(url, TITLES[:2], max_retries=2))
        seen = stats(url)
    assert seen["requests"] == 6  # 2 rows x (1 attempt + 2 retries)
    for row in table.to_pylist():
        assert row["status"] == schemas.LABEL_FAILED and row["attempts"] == 3 and row["raw"] is None
        assert row["error"]
    expected = {"rate_limited": "HTTP 429", "server_error": "HTTP 500", "unavailable": "HTTP 503", "hang": "timeout"}
    if fault in expected:
        assert expected[fault] in table["error"][0].as_py()


def test_unprocessable_request_is_not_retried():
    with serve_chat(FaultyServerConfig(fault_rate=1.0, faults=("bad_request",))) as url:
        table = run(label(url, TITLES[:1], max_retries=5))
        assert stats(url)["requests"] == 1
    row = table.to_pylist()[0]
    assert row["status"] == schemas.LABEL_FAILED and row["attempts"] == 1 and "HTTP 422" in row["error"]


def test_retry_after_is_honoured():
    config = FaultyServerConfig(fault_rate=1.0, faults=("rate_limited",), retry_after_s=0.3)
    with serve_chat(config) as url:
        table = run(label(url, TITLES[:1], max_retries=2, backoff_max_s=1.0))
        arrived = stats(url)["request_times"]
    assert table["attempts"].to_pylist() == [3] and len(arrived) == 3
    # Each retry waits at least Retry-After, although the jittered backoff alone is ~0.01 s.
    assert all(later - earlier >= 0.3 for earlier, later in zip(arrived, arrived[1:]))


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("malformed_json", "not JSON"),
        ("truncated_json", "finish_reason=length"),
        ("wrong_schema", "schema violation"),
        ("mismatched_lengths", "normalized_result has"),
        ("not_in_headline", "not written in the headline"),
    ],
)
def test_bad_answers_are_invalid_output_with_raw_kept(fault, error):
    with serve_chat(FaultyServerConfig(fault_rate=1.0, faults=(fault,))) as url:
        table = run(label(url, TITLES[:1]))
        assert stats(url)["requests"] == 1  # a bad answer is a result, not retried
    row = table.to_pylist()[0]
    assert row["status"] == schemas.LABEL_INVALID and error in row["error"] and row["raw"]


def test_sliding_window_bounds_requests_in_flight():
    config = FaultyServerConfig(latency_median_s=0.1, latency_sigma=0.0)
    with serve_chat(config) as url:
        table = run(label(url, TITLES * 5, max_in_flight=4))
        seen = stats(url)
    assert seen["max_in_flight"] == 4  # the window is used, never exceeded
    assert seen["requests"] == 20 and set(seen["by_headline"].values()) == {5}  # each row once, no retry
    assert seen["connections"] <= 4  # one pooled session per client, not a connection per request
    assert set(table["status"].to_pylist()) == {schemas.LABEL_OK}


def test_requests_per_second_cap():
    with serve_chat() as url:
        started = time.perf_counter()
        run(label(url, TITLES * 3, requests_per_second=20))
        elapsed = time.perf_counter() - started
        assert stats(url)["requests"] == 12
    assert elapsed >= 11 / 20  # 12 request starts spaced at least 1/20 s apart: a lower bound only


def test_token_only_from_env_and_never_in_rows(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value_123")
    with serve_chat(FaultyServerConfig(fault_rate=1.0, faults=("server_error",))) as url:
        table = run(label(url, TITLES[:1], max_retries=0))
        seen = stats(url)
    assert seen["auth"] == {"bearer": 1}
    assert "hf_secret_value_123" not in json.dumps(table.to_pylist(), default=str)


def test_no_token_without_hf_token_even_when_logged_in(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    (tmp_path / "token").write_text("hf_from_the_login_file")  # what `hf auth login` leaves behind
    with serve_chat() as url:
        run(label(url, TITLES[:1]))
        assert stats(url)["auth"] == {"none": 1}


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("http://h:8000", "http://h:8000/v1/chat/completions"),
        ("http://h:8000/", "http://h:8000/v1/chat/completions"),
        ("http://h:8000/v1", "http://h:8000/v1/chat/completions"),
        ("https://x.endpoints.huggingface.cloud/v1/chat/completions", "https://x.endpoints.huggingface.cloud/v1/chat/completions"),
        ("http://h/proxy/?key=1", "http://h/proxy/v1/chat/completions?key=1"),
    ],
)
def test_endpoint_base_url_becomes_the_chat_completions_url(endpoint, url):
    assert chat_url(endpoint) == url


def test_unreachable_endpoint_fails_rows_without_raising():
    table = run(label("http://127.0.0.1:9", TITLES[:2], max_retries=1))
    assert table["status"].to_pylist() == [schemas.LABEL_FAILED] * 2
    assert "connection error" in table["error"][0].as_py()


# -- reading labels written over several runs -------------------------------------------------


def test_pick_latest_prefers_ok_then_latest():
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    rows = [
        {"id": "a", "status": schemas.LABEL_FAILED, "labeled_at": t0},
        {"id": "a", "status": schemas.LABEL_OK, "labeled_at": t0 + dt.timedelta(hours=1), "result": ["X"]},
        {"id": "a", "status": schemas.LABEL_INVALID, "labeled_at": t0 + dt.timedelta(hours=2)},
        {"id": "b", "status": schemas.LABEL_FAILED, "labeled_at": t0},
        {"id": "b", "status": schemas.LABEL_INVALID, "labeled_at": t0 + dt.timedelta(hours=1), "raw": "late"},
        {"id": "c", "status": schemas.LABEL_OK, "labeled_at": t0},
    ]
    table = pa.Table.from_pylist(rows, schema=schemas.LLM_LABELS)
    latest = {r["id"]: r for r in pick_latest(table).to_pylist()}
    assert sorted(latest) == ["a", "b", "c"]
    assert latest["a"]["status"] == schemas.LABEL_OK and latest["a"]["result"] == ["X"]
    assert latest["b"]["raw"] == "late" and latest["c"]["status"] == schemas.LABEL_OK


def test_job_without_an_endpoint_says_what_to_do(tmp_path):
    done = run_module("jobs.label", "--store", str(tmp_path / "store"))
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith("error: no endpoint")
    assert run_module("jobs.label", "--help").returncode == 0
