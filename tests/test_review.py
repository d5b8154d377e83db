"""Review round trip against a real argilla-server started on loopback by our own launcher.

The sample is built from real Benzinga headlines; "LLM" spans are the companies the
gazetteer labeler finds in them (string search over the real listings). A reviewer then
answers through the same REST endpoint the Argilla UI uses, with its own API key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections import Counter
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.argilla_reviewer import answer
from tests.argilla_reviewer import reviewer as new_reviewer
from tests.conftest import REPO, run_module
from finner import artifacts, schemas
from finner.errors import FinnerError
from finner.ids import headline_id
from finner.review import (
    AGREEMENT, ARGILLA_LABEL, DISAGREEMENT, LLM_INVALID, LLM_ONLY, MODEL_QUESTION, SPAN_QUESTION,
    Connection, ReviewConfig, connect, find_dataset, gold_spans, iter_records, pull, push, review_reason,
    status_lines, to_argilla_spans,
)
from finner.review_server.launcher import LocalArgilla, LocalArgillaConfig
from finner.source import parse_date
from finner.store import Store
from finner.listing_labeller import Gazetteer
from finner.tokens import char_to_token_span, word_tokens

LLM_MODEL = "test-llm-7b"
COMPACT_MODEL = "gliner-finner-v1"
UNICODE_ROWS = (35, 759, 908, 1517, 1898, 3691, 4091)  # Eberspächer, Appétit, Barron’s, €, Aaron’s, €1.1B, ESPAÑOL
# Not in the feed: a headline with characters outside the BMP, whose UTF-16 length differs.
ASTRAL_TITLE = "Nestlé 🚀 Beats; Société Générale 📉 Cuts Outlook"


def _spans(title: str, strings: list[str], score: float | None = None) -> list[dict]:
    """Char spans of `strings` found left to right in `title` (how finner.spans aligns LLM output)."""
    spans, cursor = [], 0
    for text in strings:
        start = title.find(text, cursor)
        if start < 0:
            continue
        spans.append({"start": start, "end": start + len(text), "text": text, "label": schemas.COMPANY,
                      "normalized": text, "score": score})
        cursor = start + len(text)
    return spans


def build_sample(headlines_path, listings_path, n: int = 300) -> tuple[pa.Table, pa.Table, pa.Table]:
    """(sample, llm_labels, predictions) tables from real headlines, conforming to the schemas."""
    feed = pq.read_table(headlines_path).to_pylist()
    stride = len(feed) // n
    picked = sorted(set(range(0, stride * (n - len(UNICODE_ROWS) - 1), stride)) | set(UNICODE_ROWS))
    rows = [feed[i] for i in picked] + [{"title": ASTRAL_TITLE, "date": "2021-03-04 09:30:00-05:00", "symbol": "NSRGY"}]
    gazetteer = Gazetteer.from_listings(listings_path)
    sample, labels, predictions = [], [], []
    for i, row in enumerate(rows):
        title = " ".join(row["title"].split())
        date = parse_date(row["date"])
        hid = headline_id(title, date.isoformat(), row["symbol"])
        found, normalized = gazetteer.label(title)
        if title == ASTRAL_TITLE:
            found, normalized = ["Nestlé", "Société Générale"], ["Nestle", "Societe Generale"]
        spans = _spans(title, found)
        status = schemas.LABEL_INVALID if i % 41 == 7 else schemas.LABEL_OK
        tokens = word_tokens(title)
        sample.append({
            "id": hid, "title": title, "date": date, "symbol": row["symbol"],
            "split": "train" if i % 5 < 3 else ("valid" if i % 5 == 3 else "test"),
            "cluster": normalized[0] if normalized else schemas.NO_COMPANY_CLUSTER,
            "spans": spans if status == schemas.LABEL_OK else None,
            "tokens": [t for t, _, _ in tokens],
            "token_spans": [dict(zip(("start", "end"), char_to_token_span(tokens, s["start"], s["end"]))) for s in spans]
            if status == schemas.LABEL_OK else None,
            "llm_status": status,
        })
        if i % 10:  # one headline in ten has no model name recorded: the configured agent is used
            labels.append({"id": hid, "status": status, "result": found, "normalized_result": normalized, "model": LLM_MODEL})
        if i % 2 == 0:  # the compact model scored half; it misses the last company of every third one
            model_spans = _spans(title, found[:-1] if (i // 2) % 3 == 0 else found, score=0.9)
            predictions.append({"id": hid, "spans": model_spans, "companies": [s["text"] for s in model_spans],
                                "model_version": COMPACT_MODEL})
    return (
        pa.Table.from_pylist(sample, schema=schemas.SAMPLE),
        pa.Table.from_pylist(labels, schema=pa.schema([schemas.LLM_LABELS.field(c) for c in ("id", "status", "result", "normalized_result", "model")])),
        pa.Table.from_pylist(predictions, schema=pa.schema([schemas.PREDICTIONS.field(c) for c in ("id", "spans", "companies", "model_version")])),
    )


def _fill(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Add the columns a test does not care about as nulls."""
    for f in schema:
        if f.name not in table.column_names:
            table = table.append_column(f, pa.nulls(len(table), f.type))
    return table.select(schema.names)


# -- fast checks of the pure parts ---------------------------------------------------------------

def test_suggestions_come_from_an_ids_latest_row_not_its_last(tmp_path):
    from finner.review import _aligned

    store = Store(str(tmp_path / "store"))
    early, late = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), dt.datetime(2026, 2, 1, tzinfo=dt.timezone.utc)
    for version, at in (("v2", late), ("v1", early)):  # the older model's row is committed last
        row = pa.Table.from_pylist([{"id": "h1", "spans": [], "companies": [], "model_version": version, "scored_at": at}])
        store.append("predictions", _fill(row, schemas.PREDICTIONS))
    found = _aligned(store, "predictions", {"model_version": "version"}, pa.chunked_array([["h2", "h1"]]), latest="scored_at")
    assert found["version"].to_pylist() == [None, "v2"]


def test_overlapping_spans_are_dropped_and_scores_kept_only_when_complete():
    spans = [{"start": 0, "end": 9, "score": 0.8}, {"start": 0, "end": 5, "score": 0.7}, {"start": 12, "end": 16, "score": None}]
    values, scores, dropped = to_argilla_spans(spans)
    assert values == [{"label": ARGILLA_LABEL, "start": 0, "end": 9}, {"label": ARGILLA_LABEL, "start": 12, "end": 16}]
    assert (scores, dropped) == (None, 1)
    assert to_argilla_spans([{"start": 3, "end": 4, "score": 0.5}])[1] == [0.5]
    assert to_argilla_spans(None) == ([], None, 0)


def test_review_reason_puts_invalid_and_disagreement_first():
    a, b = {"start": 0, "end": 3}, {"start": 5, "end": 9}
    assert review_reason(schemas.LABEL_INVALID, None, [a]) == LLM_INVALID
    assert review_reason(schemas.LABEL_OK, [a, b], [a]) == DISAGREEMENT
    assert review_reason(schemas.LABEL_OK, [a], None) == LLM_ONLY
    assert review_reason(schemas.LABEL_OK, [b, a], [a, b]) == AGREEMENT


def test_gold_spans_slice_code_points():
    title = ASTRAL_TITLE
    start = title.index("Société")
    assert gold_spans(title, [{"label": ARGILLA_LABEL, "start": start, "end": start + 16}])[0]["text"] == "Société Générale"


def test_span_outside_title_is_named_before_anything_is_sent(store, real_headlines_path, company_listings_path):
    sample = build_sample(real_headlines_path, company_listings_path, n=20)[0].to_pylist()
    row = next(r for r in sample if r["spans"])
    row["spans"][0]["end"] = len(row["title"]) + 3
    store.write("sample", pa.Table.from_pylist(sample, schema=schemas.SAMPLE))
    with pytest.raises(FinnerError, match=f"table 'sample', row id={row['id']}, column 'spans': "):
        push(store, None, ReviewConfig())  # fails before it needs a server


def test_hf_token_is_sent_only_to_spaces():
    assert Connection("https://me-argilla.hf.space", "k", "hf_x").headers() == {"Authorization": "Bearer hf_x"}
    assert Connection("http://127.0.0.1:6900", "k", "hf_x").headers() == {}


def test_unreachable_server_is_one_line_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    done = run_module("jobs.review", "--store", str(tmp_path), "status",
                      env={"ARGILLA_API_URL": f"http://127.0.0.1:{port}", "ARGILLA_API_KEY": "k"}, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot reach Argilla at http://127.0.0.1:{port}"), done.stderr


def test_missing_api_key_is_one_line_error(tmp_path):
    done = run_module("jobs.review", "--store", str(tmp_path), "pull", env={"ARGILLA_API_KEY": ""}, timeout=120)
    assert done.returncode == 2 and done.stderr.strip() == (
        "error: ARGILLA_API_KEY is not set; export the API key of your Argilla user (`python -m jobs.review serve` prints one)")


def test_missing_server_environment_is_named(tmp_path):
    with pytest.raises(FinnerError, match="argilla-server environment not found: /nonexistent/python"):
        LocalArgilla(LocalArgillaConfig(home=str(tmp_path), python="/nonexistent/python")).start()


# -- the round trip against a real server ---------------------------------------------------------

@pytest.fixture(scope="session")
def argilla(tmp_path_factory):
    server = LocalArgilla(LocalArgillaConfig(home=str(tmp_path_factory.mktemp("argilla")), port=0))
    with server:
        procs = list(server._procs)
        yield server
    assert all(p.poll() is not None for p in procs), "the launcher left a process running"


@pytest.fixture(scope="session")
def client(argilla):
    return connect(Connection(argilla.url, argilla.api_key))


@pytest.fixture(scope="session")
def tables(real_headlines_path, company_listings_path):
    return build_sample(real_headlines_path, company_listings_path)


@pytest.fixture(scope="session")
def review_store(tmp_path_factory, tables) -> Store:
    store = Store(str(tmp_path_factory.mktemp("review-store")))
    sample, labels, predictions = tables
    store.write("sample", sample)
    store.write("llm_labels", _fill(labels, schemas.LLM_LABELS))
    store.write("predictions", _fill(predictions, schemas.PREDICTIONS))
    return store


CFG = ReviewConfig(workspace="finner-review", dataset_name="headlines-{split}", llm_model="fallback-llm", batch_size=7)  # several upserts per split


@pytest.mark.slow
def test_push_review_pull_round_trip(argilla, client, review_store, tables):
    sample = {row["id"]: row for row in tables[0].to_pylist()}
    summary = push(review_store, client, CFG)
    assert dict(summary.pushed) == {s: sum(r["split"] == s for r in sample.values()) for s in schemas.SPLITS}
    assert summary.model_suggestions == len(tables[2])
    assert summary.reasons[LLM_INVALID] == sum(r["llm_status"] != schemas.LABEL_OK for r in sample.values())
    assert summary.reasons[DISAGREEMENT] > 0 and summary.reasons[AGREEMENT] > 0

    # What the server holds: suggestions with the right agent, disagreement first, metadata for filters.
    train = find_dataset(client, CFG, "train")
    records = list(iter_records(client, train))
    assert len(records) == summary.pushed["train"]
    questions = {str(q.id): q.name for q in train.settings.questions}
    priorities = [r["metadata"]["priority"] for r in records]
    assert priorities == sorted(priorities) and priorities[0] == 0
    labels = {row["id"]: row["model"] for row in tables[1].to_pylist()}
    for record in records:
        row = sample[record["external_id"]]
        assert record["fields"]["text"] == row["title"]
        assert record["metadata"]["split"] == "train" and record["metadata"]["headline_id"] == row["id"]
        suggestions = {questions[s["question_id"]]: s for s in record["suggestions"]}
        if row["llm_status"] == schemas.LABEL_OK:
            llm = suggestions[SPAN_QUESTION]
            assert llm["agent"] == labels.get(row["id"], "fallback-llm")
            assert [(v["start"], v["end"]) for v in llm["value"]] == [(s["start"], s["end"]) for s in row["spans"]]
        else:
            assert SPAN_QUESTION not in suggestions and record["metadata"]["review_reason"] == LLM_INVALID
        if MODEL_QUESTION in suggestions:
            assert suggestions[MODEL_QUESTION]["agent"] == COMPACT_MODEL

    # The SQL search engine answers the UI's filters (metadata, response status) and progress.
    import argilla as rg

    first = list(train.records(query=rg.Query(filter=rg.Filter(("metadata.priority", "==", 0)))))
    assert len(first) == priorities.count(0)
    assert train.progress()["total"] == len(records)

    # A reviewer works through the records: accept, correct, "no company", discard, draft, leave.
    reviewer = new_reviewer(client, argilla.url, "reviewer1", CFG.workspace)
    expected = {}
    ids = sorted(sample)
    by_id = {r["external_id"]: r for s in schemas.SPLITS for r in iter_records(client, find_dataset(client, CFG, s))}
    for n, hid in enumerate(ids):
        row, record_id = sample[hid], by_id[hid]["id"]
        spans = [(s["start"], s["end"]) for s in row["spans"] or []]
        title = row["title"]
        kind = n % 6
        if title == ASTRAL_TITLE or any(ord(c) > 127 for c in title):
            kind = 1  # every unicode headline gets a hand-drawn correction
        if kind == 0:  # accept the suggestion as is
            expected[hid] = (schemas.GOLD_SUBMITTED, spans)
        elif kind == 1:  # correct: draw the first capitalised word and any suggestion after it
            first_word = next((m for m in word_tokens(title) if m[0][:1].isupper()), None)
            drawn = [(first_word[1], first_word[2])] if first_word else []
            drawn += [s for s in spans if not drawn or s[0] >= drawn[-1][1]]
            if title == ASTRAL_TITLE:
                drawn = [(0, 6), (title.index("Société"), title.index("Société") + len("Société Générale"))]
            expected[hid] = (schemas.GOLD_SUBMITTED, drawn)
        elif kind == 2:  # "no company": submitted with no spans
            expected[hid] = (schemas.GOLD_SUBMITTED, [])
        elif kind == 3:
            expected[hid] = (schemas.GOLD_DISCARDED, None)
        elif kind == 4:  # a draft is not an answer yet
            answer(reviewer, record_id, "draft", spans)
            continue
        else:
            continue
        status, drawn = expected[hid]
        answer(reviewer, record_id, status, drawn)
    t_answered = dt.datetime.now(dt.timezone.utc)

    # The UI's searches run on the SQL engine: pending-for-everyone, full text, metadata facets.
    # (with_responses=False: the SDK 2.8 cannot parse a discarded response without values.)
    pending_train = [h for h in ids if h not in expected and sample[h]["split"] == "train"]
    drafts_train = [h for n, h in enumerate(ids) if h in pending_train and n % 6 == 4]
    assert len(list(train.records(query=rg.Query(filter=rg.Filter(("response.status", "==", "pending")))))) == len(pending_train) - len(drafts_train)
    tesla = {r.id for r in train.records(query=rg.Query(query="tesla"), with_responses=False)}
    assert tesla == {h for h in pending_train + [h for h in expected if sample[h]["split"] == "train"]
                     if "tesla" in {w.casefold() for w, _, _ in word_tokens(sample[h]["title"])}} and tesla
    ui_search = reviewer.post(f"/api/v1/me/datasets/{train.id}/records/search", params={"limit": 5}, json={
        "filters": {"and": [{"type": "terms", "scope": {"entity": "response", "property": "status"}, "values": ["pending"]}]},
        "sort": [{"scope": {"entity": "metadata", "metadata_property": "priority"}, "order": "desc"}],
    })
    assert ui_search.status_code == 200, ui_search.text
    hits = [item["record"] for item in ui_search.json()["items"]]
    assert ui_search.json()["total"] == len(pending_train) - len(drafts_train) and len(hits) == 5  # a draft is not pending
    assert [h["metadata"]["priority"] for h in hits] == [2] * 5 and all(h["external_id"] in pending_train for h in hits)
    reason = next(m for m in train.settings.metadata if m.name == "review_reason")
    facets = client.http_client.get(f"/api/v1/metadata-properties/{reason.id}/metrics").json()
    assert {v["term"]: v["count"] for v in facets["values"]} == dict(Counter(r["metadata"]["review_reason"] for r in records))

    pulled = pull(review_store, client, CFG)
    gold = review_store.read("gold")
    assert gold.schema == schemas.GOLD
    rows = gold.to_pylist()
    assert [r["id"] for r in rows] == sorted(expected, key=lambda h: (sample[h]["split"], h))
    for r in rows:
        status, drawn = expected[r["id"]]
        title = sample[r["id"]]["title"]
        assert (r["status"], r["split"], r["title"], r["annotator"]) == (status, sample[r["id"]]["split"], title, "reviewer1")
        if drawn is None:
            assert r["spans"] is None
        else:
            assert [(s["start"], s["end"], s["text"], s["label"]) for s in r["spans"]] == [
                (s, e, title[s:e], schemas.COMPANY) for s, e in drawn]
        assert t_answered - dt.timedelta(minutes=10) <= r["submitted_at"] <= t_answered + dt.timedelta(seconds=1)
    astral = next(r for r in rows if r["title"] == ASTRAL_TITLE)
    assert [s["text"] for s in astral["spans"]] == ["Nestlé", "Société Générale"]
    pending = len(sample) - len(expected)
    assert sum(len(r.pending) for r in pulled.reviews.values()) == pending
    assert f"{sum(len(r.pending) for s, r in pulled.reviews.items() if s == 'train')} pending" in pulled.line()

    # Pulling again gives the same table.
    pull(review_store, client, CFG)
    assert review_store.read("gold").equals(gold)

    # Status: counts per split and the LLM scored against gold so far.
    lines = status_lines(client, CFG)
    assert len(lines) == 3
    for split, line in zip(schemas.SPLITS, lines):
        n_sub = sum(1 for h, (s, _) in expected.items() if s == schemas.GOLD_SUBMITTED and sample[h]["split"] == split)
        assert line.startswith(f"{split}: {summary.pushed[split]} records, ") and f"{n_sub} submitted" in line
        assert "LLM vs gold so far: P=" in line

    # Re-push after review: the ledger knows the server holds every batch as it is, so nothing is sent.
    again = push(review_store, client, CFG)
    assert not again.pushed and again.unchanged == summary.pushed
    assert again.reasons == summary.reasons and again.model_suggestions == summary.model_suggestions
    assert review_store.get_json(artifacts.REVIEW_PUSH_KEY)["unchanged"] == dict(summary.pushed)
    assert "already held unchanged" in again.line()

    # A push stopped after its first batches resumes: the ledger as it stood then sends only the rest.
    key = artifacts.review_push_ledger_key(CFG.workspace, CFG.name_of("train"))
    ledger = review_store.get_json(key)
    review_store.put_json(key, {**ledger, "batches": ledger["batches"][:3]})
    resumed = push(review_store, client, CFG)
    assert resumed.pushed == {"train": summary.pushed["train"] - 3 * CFG.batch_size}
    assert review_store.get_json(key) == ledger

    # --resend sends everything again: same records, suggestions updated in place, answers kept.
    resent = push(review_store, client, dataclasses.replace(CFG, resend=True))
    assert resent.pushed == summary.pushed and not resent.unchanged
    assert len(list(iter_records(client, train))) == summary.pushed["train"]
    pull(review_store, client, CFG)
    assert review_store.read("gold").equals(gold)

    # The pipeline's own entry point does the same with the environment's connection settings.
    env = {"ARGILLA_API_URL": argilla.url, "ARGILLA_API_KEY": argilla.api_key}
    done = run_module("jobs.review", "--store", review_store.root, "pull", "--workspace", CFG.workspace,
                      "--dataset-name", CFG.dataset_name, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("gold: train: ")
    assert review_store.read("gold").equals(gold)


@pytest.mark.slow
def test_wrong_api_key_is_one_line_error(argilla, tmp_path):
    done = run_module("jobs.review", "--store", str(tmp_path), "status",
                      env={"ARGILLA_API_URL": argilla.url, "ARGILLA_API_KEY": "not-the-key"}, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: Argilla at {argilla.url} rejected the API key (check ARGILLA_API_KEY)"


def _processes_in(folder) -> list[int]:
    """Pids of processes whose working directory is `folder` (the launcher starts them there)."""
    pids = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and Path(os.readlink(proc / "cwd")) == Path(folder).resolve():
                pids.append(int(proc.name))
    return pids


@pytest.mark.slow
def test_serve_prints_connection_stops_on_sigterm_and_keeps_data(tmp_path):
    """`python -m jobs.review serve` as a user runs it; a restart on the same home keeps the data."""
    home = tmp_path / "argilla"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve = subprocess.Popen([sys.executable, "-m", "jobs.review", "serve", "--home", str(home), "--port", str(port),
                              "--api-key", "serve.key"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = [serve.stdout.readline() for _ in range(4)]
        assert banner[0].startswith(f"Argilla is running at http://127.0.0.1:{port}"), (banner, serve.stderr.read() if serve.poll() is not None else "")
        assert banner[2].strip() == f"export ARGILLA_API_URL=http://127.0.0.1:{port} ARGILLA_API_KEY=serve.key"
        import argilla as rg

        rg.Workspace(name="kept", client=connect(Connection(f"http://127.0.0.1:{port}", "serve.key"))).create()
        assert len(_processes_in(home)) == 2  # redis-server and the argilla server
        ui = httpx.get(f"http://127.0.0.1:{port}/", follow_redirects=True, timeout=30)
        assert ui.status_code == 200 and "<html" in ui.text.lower()  # the stock web UI is served too
    finally:
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=60) == 0
    assert _processes_in(home) == []
    with LocalArgilla(LocalArgillaConfig(home=str(home), port=0, api_key="serve.key")) as again:
        assert connect(Connection(again.url, again.api_key)).workspaces("kept") is not None
    with pytest.raises(FinnerError, match="rejects the API key"):
        LocalArgilla(LocalArgillaConfig(home=str(home), port=0, api_key="another.key")).start()
    assert _processes_in(home) == []


@pytest.mark.slow
def test_ctrl_c_stops_serve_and_its_children_within_5_s(tmp_path):
    """Ctrl-C in a terminal signals the whole process group: `jobs.review serve`, Redis and the
    Argilla server are all gone within 5 s, even while a client (a browser tab) is mid-request."""
    home = tmp_path / "argilla"
    serve = subprocess.Popen([sys.executable, "-m", "jobs.review", "serve", "--home", str(home), "--port", "0"], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        banner = serve.stdout.readline()
        assert banner.startswith("Argilla is running at http://127.0.0.1:"), banner + (serve.stdout.read() if serve.poll() is not None else "")
        port = int(banner.split()[4].rsplit(":", 1)[1])
        children = _processes_in(home)
        assert len(children) == 2 and all(os.getpgid(pid) == serve.pid for pid in children)  # redis-server, the server
        with socket.create_connection(("127.0.0.1", port)) as tab:
            # A request whose body is still on its way: the server cannot finish it before shutting down.
            tab.sendall(b"POST /api/v1/workspaces HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Argilla-Api-Key: finner.apikey\r\n"
                        b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"name"')
            time.sleep(0.5)
            sent = time.monotonic()
            os.killpg(serve.pid, signal.SIGINT)
            while (serve.poll() is None or _group_alive(serve.pid)) and time.monotonic() - sent < 5:
                time.sleep(0.05)
            stopped_s = time.monotonic() - sent
        said = serve.stdout.read() if serve.poll() is not None else ""
        assert serve.poll() == 0 and not _group_alive(serve.pid) and _processes_in(home) == [], f"exit {serve.poll()} after {stopped_s:.1f}s: {said}"
        assert stopped_s < 5
    finally:
        if _group_alive(serve.pid):
            os.killpg(serve.pid, signal.SIGKILL)
        serve.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
