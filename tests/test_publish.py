"""Publishing as a user runs it: a small store made by the real jobs (real headlines labelled by the
gazetteer and curated, GLiNER fine-tuned a few steps through Ray Train, evaluated on a slice of the
real gold, the feed scored by the Ray job), then `python -m jobs.publish model|dataset` into folders
that a separate process loads back offline (`HF_HUB_OFFLINE=1`) with gliner and
`datasets.load_from_disk`: the same spans as the store's checkpoint, every row of the store."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from finner import artifacts, schemas
from finner.gold import REAL_GOLD
from finner.models.base import chosen_threshold
from finner.models.registry import load_checkpoint
from finner.publish import CARD_FILE, TRAIN_SUMMARY_FILE
from finner.roles import RULES_VERSION
from finner.sample import SampleConfig
from finner.store import Store
from finner.testing.labelled_feed import write_labelled_feed
from tests.conftest import REPO, run_module

pytestmark = pytest.mark.slow

FEED_ROWS = 120
GOLD_ROWS = 16  # per part (dev, test) of the real gold
TRAIN = ["--offline", "--epochs", "1", "--max-steps", "8", "--batch-size", "2", "--learning-rate", "5e-5", "--head-learning-rate", "1e-3", "--warmup-ratio", "0"]
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


@pytest.fixture(scope="module")
def store(tmp_path_factory, real_headlines_path, company_listings_path) -> Store:
    root = tmp_path_factory.mktemp("publish")
    table = pq.read_table(real_headlines_path)
    table = table.filter(pc.invert(pc.starts_with(table["date"], "2009")))
    stride = table.num_rows // FEED_ROWS
    pq.write_table(table.take(list(range(0, stride * FEED_ROWS, stride))), root / "feed.parquet")
    store = Store(str(root / "store"))
    write_labelled_feed(store, root / "feed.parquet", company_listings_path, sample=SampleConfig(fraction=1.0))
    gold_rows = [json.loads(line) for line in REAL_GOLD.read_text().splitlines() if line.strip()]
    gold = [r for part in ("dev", "test") for r in [r for r in gold_rows if r["split"] == part][:GOLD_ROWS]]
    (root / "gold.jsonl").write_text("".join(json.dumps(r) + "\n" for r in gold))

    ok(run_module("jobs.train", "--store", store.root, *TRAIN))
    ok(run_module("jobs.evaluate", "--store", store.root, "--gold", str(root / "gold.jsonl"), "--models", "gliner", "--settings", "fine-tuned",
                  "--offline", "--no-plot", "--quiet"))  # fmt: skip
    ok(run_module("jobs.score", "--store", store.root, "--runtime", "torch", "--threads", "2", "--batch-rows", "64", "--no-report", "--quiet"))
    # Two reviewed headlines, as `jobs.review pull` writes them (one submitted with its LLM spans, one discarded).
    sample = store.read("sample").to_pylist()[:2]
    review = [{"id": r["id"], "split": r["split"], "title": r["title"], "date": r["date"], "symbol": r["symbol"], "spans": r["spans"] if i == 0 else None,
               "status": schemas.GOLD_SUBMITTED if i == 0 else schemas.GOLD_DISCARDED, "annotator": "tester", "submitted_at": r["date"]}
              for i, r in enumerate(sample)]  # fmt: skip
    store.write("gold", pa.Table.from_pylist(review, schema=schemas.GOLD))
    return store


LOAD_MODEL = """
import json, sys
from gliner import GLiNER
titles, threshold = json.loads(sys.stdin.read())
out = []
for folder in sys.argv[1:]:
    model = GLiNER.from_pretrained(folder, local_files_only=True)
    found = model.inference(titles, ["company"], threshold=threshold, flat_ner=True)
    out.append([[(e["start"], e["end"], round(e["score"], 6)) for e in row] for row in found])
print(json.dumps(out))
"""


def test_published_model_loads_offline_and_predicts_as_the_stores_checkpoint(store, tmp_path):
    summary = store.get_json(artifacts.train_summary_key("gliner-llm"))
    out = tmp_path / "model"
    stdout = ok(run_module("jobs.publish", "--store", store.root, "model", "--out", str(out), "--dataset-id", "me/finner-headlines", env={"HF_TOKEN": ""}))
    assert f"wrote the model folder {out}" in stdout and "not pushed" in stdout
    assert {"gliner_config.json", CARD_FILE, TRAIN_SUMMARY_FILE, "finner_threshold.json"} <= {p.name for p in out.iterdir()}
    assert not [p for p in out.parent.iterdir() if ".tmp-" in p.name], "no staging folder is left behind"
    assert str(REPO.parent) not in (out / "gliner_config.json").read_text(), "no local path in the published config"

    titles = store.read("headlines", columns=["title"])["title"].to_pylist()[:48]
    threshold = chosen_threshold(summary["path"])
    assert threshold is not None and chosen_threshold(str(out)) == threshold, "the threshold chosen on gold dev travels with the weights"
    loaded = subprocess.run([sys.executable, "-c", LOAD_MODEL, str(out), summary["path"]], input=json.dumps([titles, threshold]),
                            capture_output=True, text=True, cwd=tmp_path, env={**os.environ, **OFFLINE}, timeout=300)  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    published, stored = json.loads(loaded.stdout)
    assert published == stored and sum(map(len, stored)) > 10, "plain gliner: the same spans as the store's checkpoint"
    ours, theirs = load_checkpoint("gliner", str(out)), load_checkpoint("gliner", summary["path"])
    assert ours.predict(titles) == theirs.predict(titles), "finner's load (its words, threshold and subject rules): the same spans"

    card = (out / CARD_FILE).read_text()
    meta = card.split("---")[1]
    for line in ("library_name: gliner", "pipeline_tag: token-classification", "base_model: sentence-transformers/all-MiniLM-L6-v2",
                 "- me/finner-headlines", "model-index:", "type: f1"):  # fmt: skip
        assert line in meta, line
    metrics = store.read("metrics", filter=(pc.field("model") == "gliner") & (pc.field("split") == "test") & (pc.field("match") == "exact")).to_pylist()
    (row,) = metrics
    f1 = f"{row['f1']:.3f} (95% CI {row['f1_ci_low']:.3f}-{row['f1_ci_high']:.3f})"  # evaluate stores every F1's interval
    assert f"| test | exact | {row['precision']:.3f} | {row['recall']:.3f} | {f1} | {GOLD_ROWS} |" in card
    assert f"value: {round(row['f1'], 4)}" in meta
    assert RULES_VERSION in card and f"Span-score threshold {threshold}" in card
    assert f"{summary['train_rows']} training and {summary['valid_rows']} validation headlines" in card
    label_version = store.get_json(artifacts.CURATE_KEY)["summary"]["label_version"]
    assert f"label version `{label_version or '(unversioned)'}`" in card and "human labels used in training: 0" in card


LOAD_DATASET = """
import json, sys
import datasets
splits = datasets.load_from_disk(sys.argv[1])
print(json.dumps({name: [{k: row[k] for k in ("id", "llm_spans", "predicted_spans", "gold_status", "gold_spans", "review_split")} for row in split]
                  for name, split in splits.items()}, default=str))
"""


def test_published_dataset_loads_offline_with_every_row(store, tmp_path):
    out = Path(store.root) / "publish" / "dataset"  # the default folder; a second run replaces the first whole
    for _ in range(2):
        stdout = ok(run_module("jobs.publish", "--store", store.root, "dataset", env={"HF_TOKEN": ""}))
    assert sorted(p.name for p in out.parent.iterdir()) == ["dataset"], "no staging or old folder left behind"
    headlines = store.read("headlines", columns=["id"])["id"].to_pylist()
    assert f"({len(headlines)} feed, 2 gold)" in stdout
    loaded = subprocess.run([sys.executable, "-c", LOAD_DATASET, str(out)], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, **OFFLINE}, timeout=300)  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    splits = json.loads(loaded.stdout)
    feed = {row["id"]: row for row in splits["feed"]}
    assert sorted(feed) == sorted(headlines)
    predictions = {r["id"]: r["spans"] for r in store.read("predictions", columns=["id", "spans"]).to_pylist()}
    assert len(predictions) == len(headlines) and all(_spans(feed[i]["predicted_spans"]) == _spans(s) for i, s in predictions.items())
    spans = {r["id"]: r["spans"] for r in store.read("spans", columns=["id", "spans"]).to_pylist()}
    assert spans and all(_spans(feed[i]["llm_spans"]) == _spans(s) for i, s in spans.items())
    assert sum(bool(row["predicted_spans"]) for row in feed.values()) > 0 and sum(bool(row["llm_spans"]) for row in feed.values()) > 10
    gold = {row["id"]: row for row in splits["gold"]}
    reviewed = {r["id"]: r for r in store.read("gold").to_pylist()}
    assert sorted(gold) == sorted(reviewed), "the gold split: every reviewed headline, submitted or discarded"
    assert all(gold[i]["gold_status"] == r["status"] and _spans(gold[i]["gold_spans"]) == _spans(r["spans"]) for i, r in reviewed.items())
    assert all(row["review_split"] for row in gold.values())
    card = (out / CARD_FILE).read_text()
    assert "task_categories:" in card and "- token-classification" in card and "`feed` (" in card


def _spans(spans: list[dict] | None) -> list[tuple]:
    return [(s["start"], s["end"], s["text"]) for s in spans or []]


class _Unauthorized(http.server.BaseHTTPRequestHandler):
    """A hub that refuses every token, as huggingface.co does a revoked one."""

    def _refuse(self) -> None:
        body = b'{"error": "Invalid credentials in Authorization header"}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_HEAD = _refuse

    def log_message(self, *args) -> None:
        pass


def test_a_refused_push_is_one_error_line_and_the_folder_stays(store, tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unauthorized)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {"HF_TOKEN": "hf_not_a_real_token", "HF_ENDPOINT": f"http://127.0.0.1:{server.server_port}"}
        done = run_module("jobs.publish", "--store", store.root, "model", "--out", str(tmp_path / "model"), "--repo-id", "me/finner-gliner", env=env)
    finally:
        server.shutdown()
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip().splitlines()[-1]]
    assert done.stderr.startswith("error: pushing to me/finner-gliner failed: ") and "hf_not_a_real_token" not in done.stderr + done.stdout
    assert (tmp_path / "model" / CARD_FILE).is_file()
