"""Arrow schemas of every table in the store, and the names that go with them.

One place declares what each stage reads and writes, so a stage that changes a column
breaks loudly in `Store.write` instead of silently downstream.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

# A labelled stretch of a headline: character offsets, end exclusive, as Python slices.
SPAN = pa.struct(
    [
        pa.field("start", pa.int32(), nullable=False),
        pa.field("end", pa.int32(), nullable=False),
        pa.field("text", pa.string()),
        pa.field("label", pa.string()),
        pa.field("normalized", pa.string()),
        pa.field("score", pa.float32()),
        pa.field("role", pa.string()),  # gold only: subject or broker (ROLES)
    ]
)
SPANS = pa.list_(SPAN)
# A span over word tokens, both ends inclusive (the convention of gliner's training data).
TOKEN_SPAN = pa.struct(
    [pa.field("start", pa.int32(), nullable=False), pa.field("end", pa.int32(), nullable=False)]
)
STRINGS = pa.list_(pa.string())
TIMESTAMP = pa.timestamp("s", tz="UTC")

HEADLINES = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("title", pa.string(), nullable=False),
        pa.field("date", TIMESTAMP, nullable=False),
        pa.field("symbol", pa.string()),
        pa.field("publisher", pa.string()),
    ]
)

REJECTS = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("row", pa.int64(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("raw", pa.string()),
    ]
)

LLM_LABELS = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("result", STRINGS),
        pa.field("normalized_result", STRINGS),
        pa.field("raw", pa.string()),
        pa.field("error", pa.string()),
        pa.field("prompt_tokens", pa.int32()),
        pa.field("completion_tokens", pa.int32()),
        pa.field("latency_s", pa.float64()),
        pa.field("attempts", pa.int16()),
        pa.field("model", pa.string()),
        pa.field("prompt_version", pa.string()),
        pa.field("response_format", pa.string()),
        pa.field("label_version", pa.string()),  # hash of prompt, model and response format: what the label belongs to
        pa.field("labeled_at", TIMESTAMP),
    ]
)

SPANS_TABLE = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("title", pa.string(), nullable=False),
        pa.field("date", TIMESTAMP, nullable=False),
        pa.field("symbol", pa.string()),
        pa.field("spans", SPANS),
        pa.field("tokens", STRINGS),
        pa.field("token_spans", pa.list_(TOKEN_SPAN)),
        pa.field("not_found", STRINGS),
        pa.field("clusters", STRINGS),
    ]
)

SAMPLE = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("title", pa.string(), nullable=False),
        pa.field("date", TIMESTAMP, nullable=False),
        pa.field("symbol", pa.string()),
        pa.field("split", pa.string(), nullable=False),
        pa.field("cluster", pa.string()),
        pa.field("spans", SPANS),
        pa.field("tokens", STRINGS),
        pa.field("token_spans", pa.list_(TOKEN_SPAN)),
        pa.field("llm_status", pa.string()),
    ]
)

GOLD = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("split", pa.string()),
        pa.field("title", pa.string()),
        pa.field("date", TIMESTAMP),
        pa.field("symbol", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("spans", SPANS),
        pa.field("annotator", pa.string()),
        pa.field("submitted_at", TIMESTAMP),
    ]
)

PREDICTIONS = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("spans", SPANS),
        pa.field("companies", STRINGS),
        pa.field("normalized", STRINGS),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("scored_at", TIMESTAMP),
    ]
)

METRICS = pa.schema(
    [
        pa.field("stage", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("setting", pa.string()),
        pa.field("split", pa.string()),
        pa.field("match", pa.string()),
        pa.field("precision", pa.float64()),
        pa.field("recall", pa.float64()),
        pa.field("f1", pa.float64()),
        pa.field("tp", pa.int64()),
        pa.field("fp", pa.int64()),
        pa.field("fn", pa.int64()),
        pa.field("n_headlines", pa.int64()),
        pa.field("created_at", TIMESTAMP),
        # 95% paired-bootstrap interval of `f1` over the row's headlines (finner.bootstrap); null in rows written before
        pa.field("f1_ci_low", pa.float64()),
        pa.field("f1_ci_high", pa.float64()),
        # a row averaging several trainings of one model: their seeds and the sd of their F1 (`f1` is the mean; counts pooled)
        pa.field("f1_sd", pa.float64()),
        pa.field("seeds", pa.list_(pa.int64())),
    ]
)
METRICS_KEY = ("stage", "model", "setting")  # a run's rows replace the earlier rows of the same key

# `jobs.train --record-rows`: which rows each Ray Train worker trained on, by epoch and batch.
TRAINED_ROWS = pa.schema(
    [
        pa.field("model", pa.string(), nullable=False),
        pa.field("run", pa.string(), nullable=False),  # the run's fingerprint
        pa.field("rank", pa.int32(), nullable=False),
        pa.field("epoch", pa.int32(), nullable=False),
        pa.field("batch", pa.int32(), nullable=False),  # 1-based, within the epoch and worker
        pa.field("id", pa.string(), nullable=False),
    ]
)

# `jobs.relabel`: a teacher model's labels of the feed's training headlines (`jobs.train --labels teacher`).
TEACHER_SPANS = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("title", pa.string(), nullable=False),
        pa.field("date", TIMESTAMP, nullable=False),
        pa.field("spans", SPANS),
        pa.field("teacher", pa.string(), nullable=False),  # the teacher's fingerprint (`finner.relabel`)
    ]
)

# Every table the store knows, by the name it lives under.
TABLES: dict[str, pa.Schema] = {
    "headlines": HEADLINES,
    "rejects": REJECTS,
    "llm_labels": LLM_LABELS,
    "spans": SPANS_TABLE,
    "sample": SAMPLE,
    "gold": GOLD,
    "predictions": PREDICTIONS,
    "metrics": METRICS,
    "trained_rows": TRAINED_ROWS,
    "teacher_spans": TEACHER_SPANS,
}

# Values that cross stage boundaries.
COMPANY = "company"  # span label in our tables (Argilla shows it as "Company")
LABEL_OK, LABEL_INVALID, LABEL_FAILED = "ok", "invalid_output", "failed"  # llm_labels.status
SPLITS = ("train", "valid", "test")  # sample.split
GOLD_SUBMITTED, GOLD_DISCARDED = "submitted", "discarded"  # gold.status
NO_COMPANY_CLUSTER = "<none>"  # sample.cluster of headlines without a company
UNLABELED_CLUSTER = "<no valid label>"  # sample.cluster of headlines whose LLM label is invalid or failed
# gold span roles: a broker or analyst firm acting on another company's stock, and every other company
ROLE_SUBJECT, ROLE_BROKER = "subject", "broker"
ROLES = (ROLE_SUBJECT, ROLE_BROKER)

Span = dict[str, Any]  # one element of a SPANS column


def make_span(title: str, start: int, end: int, *, normalized: str | None = None, score: float | None = None, role: str | None = None) -> Span:
    """A company span of `title` shaped like `SPAN`, its text taken from the title itself (so text and
    offsets never disagree): the one constructor every labeller, model and gold reader uses."""
    return {
        "start": int(start),
        "end": int(end),
        "text": title[start:end],
        "label": COMPANY,
        "normalized": normalized,
        "score": None if score is None else float(score),
        "role": role,
    }
