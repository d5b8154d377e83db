"""Human review round trip with Argilla: push the sample with suggestions, pull the gold table.

Reviewers correct pre-filled spans (5-10 s a headline instead of 30 s from scratch), so:

* **push** sends each split of the `sample` table to its own Argilla dataset, one record per
  headline keyed by our headline id (re-pushing updates records instead of duplicating them).
  The LLM's spans are the suggestion of the `span_label` question (agent = the LLM model);
  when a compact model has scored the headlines (`predictions`), its spans are a second
  suggestion on an optional `model_span_label` question. Records are tagged and pushed
  **disagreement first**: LLM output invalid, or LLM and compact model disagree, come before
  the rest (metadata `priority` 0, `review_reason` says why), so a reviewer sorting by
  `priority` spends the first hour where the labels are least certain. A ledger in the store
  names the batches each dataset already holds, so a re-run or a push resumed after a stop sends
  only what changed (a whole-feed sample is ~45k records, tens of minutes to send).
* **pull** turns submitted responses into the `gold` table (discarded records are kept as
  discarded; records nobody answered yet are reported, never read as "no company"). The
  table is rebuilt from the server each time, so pulling twice gives the same table.
* **status** counts pending/submitted/discarded per split and scores the LLM's suggestions
  against the gold collected so far.

Connection settings come from the environment: ARGILLA_API_URL, ARGILLA_API_KEY, and HF_TOKEN
for a private Hugging Face Space (sent only to *.hf.space hosts).
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc

from finner import artifacts, schemas
from finner.config import Config, help_text
from finner.errors import FinnerError
from finner.gold import GUIDELINE
from finner.ids import stable_hash
from finner.metrics import exact_prf
from finner.progress import progress_bar
from finner.schemas import make_span
from finner.store import Store

TEXT_FIELD = "text"
SPAN_QUESTION = "span_label"
# Argilla allows one suggestion per question and one span question per field, so the compact
# model's spans live on a copy of the headline with its own optional question.
MODEL_FIELD = "model_text"
MODEL_QUESTION = "model_span_label"
ARGILLA_LABEL = "Company"  # what reviewers see; stored as schemas.COMPANY, role subject
BROKER_LABEL = "Broker"  # a company with role broker (see the guideline)
PAGE_SIZE = 500  # records per page when reading a dataset back

# Why a record is reviewed when it is (metadata `review_reason`), most informative first.
LLM_INVALID, DISAGREEMENT, LLM_ONLY, AGREEMENT = "llm_invalid", "disagreement", "llm_only", "agreement"
PRIORITY = {LLM_INVALID: 0, DISAGREEMENT: 0, LLM_ONLY: 1, AGREEMENT: 2}

# What reviewers read in the UI's guidelines panel: the labelling guideline the shipped gold set
# was made with, then how this review works.
GUIDELINES = GUIDELINE.read_text(encoding="utf-8") + """
## In this review

- The boxes are pre-filled by an LLM (and, where shown, a compact model). Accept them when they are right; \
fix the boundaries, delete wrong ones and add missing ones otherwise. Mark a broker acting on another \
company's stock with the `Broker` label, every other company with `Company`.
- A headline with no company is submitted with **no spans**: that is an answer ("no company").
- Records with `priority` 0 are the ones where the LLM failed or the two models disagree: sort by \
`priority` to review them first.
"""


@dataclass(frozen=True)
class ReviewConfig(Config):
    workspace: str = field(default="argilla", metadata=help_text("Argilla workspace holding the review datasets (created when missing)"))
    dataset_name: str = field(default="finner-{split}", metadata=help_text("dataset name per split; `{split}` is replaced by train/valid/test"))
    splits: tuple[str, ...] = field(default=schemas.SPLITS, metadata=help_text("splits to push/pull, one dataset each"))
    llm_model: str = field(default="llm", metadata=help_text("suggestion agent when `llm_labels` has no model name for a headline"))
    model_suggestions: bool = field(default=True, metadata=help_text("show the compact model's spans (`predictions` table, when present) as a second suggestion"))
    batch_size: int = field(default=200, metadata=help_text("records per upsert request", at_least=1))
    resend: bool = field(default=False, metadata=help_text("send every record, even the batches the store's ledger says the dataset holds unchanged (after records were edited or deleted on the server)"))

    def name_of(self, split: str) -> str:
        return self.dataset_name.format(split=split)


# -- connection ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Connection:
    """Where the Argilla server is and how to authenticate (read from the environment)."""

    api_url: str
    api_key: str
    hf_token: str | None = None

    @classmethod
    def from_env(cls) -> "Connection":
        key = os.environ.get("ARGILLA_API_KEY")
        if not key:
            raise FinnerError("ARGILLA_API_KEY is not set; export the API key of your Argilla user (`python -m jobs.review serve` prints one)")
        return cls(os.environ.get("ARGILLA_API_URL", "http://localhost:6900").rstrip("/"), key, os.environ.get("HF_TOKEN") or None)

    def headers(self) -> dict[str, str]:
        """The HF token authorises requests to a private Space; never send it anywhere else."""
        host = urlparse(self.api_url).hostname or ""
        return {"Authorization": f"Bearer {self.hf_token}"} if self.hf_token and host.endswith(".hf.space") else {}


def connect(conn: Connection, retries: int = 1, timeout: int = 60):
    """An `argilla.Argilla` client, or a one-line FinnerError saying what is wrong."""
    import argilla as rg
    import httpx
    from argilla._exceptions import ArgillaCredentialsError

    try:
        return rg.Argilla(api_url=conn.api_url, api_key=conn.api_key, retries=retries, timeout=timeout, headers=conn.headers())
    except ArgillaCredentialsError as err:
        raise FinnerError(f"Argilla at {conn.api_url} rejected the API key (check ARGILLA_API_KEY)") from err
    except httpx.TransportError as err:
        raise FinnerError(f"cannot reach Argilla at {conn.api_url} ({type(err).__name__}: {err}); start one with `python -m jobs.review serve` or set ARGILLA_API_URL") from err
    except Exception as err:  # the SDK wraps HTTP failures in its own types
        raise FinnerError(f"Argilla at {conn.api_url} did not answer as an Argilla server: {err}".splitlines()[0]) from err


@contextlib.contextmanager
def server_errors(conn: Connection) -> Iterator[None]:
    """Turn an SDK/HTTP failure in the middle of push/pull/status into one line naming the server."""
    import httpx
    from argilla._exceptions import ArgillaError

    try:
        yield
    except httpx.TransportError as err:
        raise FinnerError(f"lost the connection to Argilla at {conn.api_url} ({type(err).__name__}: {err}); re-run the same command") from err
    except (ArgillaError, httpx.HTTPStatusError) as err:
        raise FinnerError(f"Argilla at {conn.api_url} refused the request: {str(err).strip().splitlines()[0]}") from err


# -- dataset settings ---------------------------------------------------------------------------

def build_settings(with_model_question: bool):
    import argilla as rg

    questions = [
        rg.SpanQuestion(name=SPAN_QUESTION, field=TEXT_FIELD, labels=[ARGILLA_LABEL, BROKER_LABEL], allow_overlapping=False,
                        title="Companies named in the headline", required=True),
    ]
    fields = [rg.TextField(name=TEXT_FIELD, title="Headline", use_markdown=False)]
    if with_model_question:
        fields.append(rg.TextField(name=MODEL_FIELD, title="The same headline, as the compact model marks it", required=False))
        questions.append(rg.SpanQuestion(
            name=MODEL_QUESTION, field=MODEL_FIELD, labels=[ARGILLA_LABEL], allow_overlapping=False, required=False,
            title="Compact model's companies (for comparison; not used as gold)",
        ))
    return rg.Settings(
        guidelines=GUIDELINES,
        fields=fields,
        questions=questions,
        metadata=[
            rg.TermsMetadataProperty(name="headline_id", title="Headline id"),
            rg.TermsMetadataProperty(name="date", title="Date (UTC)"),
            rg.TermsMetadataProperty(name="symbol", title="Ticker of the feed"),
            rg.TermsMetadataProperty(name="split", title="Split"),
            rg.TermsMetadataProperty(name="cluster", title="Company cluster"),
            rg.TermsMetadataProperty(name="review_reason", title="Why review this first"),
            rg.IntegerMetadataProperty(name="priority", title="Priority (0 = review first)"),
        ],
        allow_extra_metadata=False,
    )


def workspace_of(client, name: str):
    import argilla as rg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        workspace = client.workspaces(name)
    return workspace if workspace is not None else rg.Workspace(name=name, client=client).create()


def find_dataset(client, cfg: ReviewConfig, split: str):
    """The split's dataset, or None when it was never pushed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SDK warns "not found" instead of returning quietly
        return client.datasets(name=cfg.name_of(split), workspace=workspace_of(client, cfg.workspace))


def ensure_dataset(client, cfg: ReviewConfig, split: str, with_model_question: bool):
    import argilla as rg

    dataset = find_dataset(client, cfg, split)
    if dataset is None:
        dataset = rg.Dataset(name=cfg.name_of(split), workspace=workspace_of(client, cfg.workspace),
                             settings=build_settings(with_model_question), client=client).create()
    return dataset


def has_question(dataset, name: str) -> bool:
    return any(q.name == name for q in dataset.settings.questions)


# -- push ---------------------------------------------------------------------------------------

def to_argilla_spans(spans: list[dict] | None) -> tuple[list[dict], list[float] | None, int]:
    """Our spans -> Argilla span values, dropping overlaps (the question forbids them).

    Returns (values, per-span scores when every span has one, number of spans dropped).
    """
    kept: list[dict] = []
    for span in sorted(spans or [], key=lambda s: (s["start"], -(s["end"] - s["start"]))):
        if kept and span["start"] < kept[-1]["end"]:
            continue
        kept.append(span)
    scores = [s.get("score") for s in kept]
    values = [{"label": BROKER_LABEL if s.get("role") == schemas.ROLE_BROKER else ARGILLA_LABEL, "start": int(s["start"]), "end": int(s["end"])} for s in kept]
    return values, ([float(x) for x in scores] if kept and None not in scores else None), len(spans or []) - len(kept)


def check_spans(headline_id: str, title: str, spans: list[dict] | None, table: str) -> None:
    """Offsets must lie inside the title: Argilla would reject the whole batch, far from the cause."""
    for span in spans or []:
        if not 0 <= span["start"] < span["end"] <= len(title):
            raise FinnerError(f"table {table!r}, row id={headline_id}, column 'spans': [{span['start']}, {span['end']}) "
                              f"is not inside the {len(title)}-character title")


def review_reason(llm_status: str | None, llm_spans: list[dict] | None, model_spans: list[dict] | None) -> str:
    if llm_status not in (None, schemas.LABEL_OK) or llm_spans is None:
        return LLM_INVALID
    if model_spans is None:
        return LLM_ONLY
    same = {(s["start"], s["end"]) for s in llm_spans} == {(s["start"], s["end"]) for s in model_spans}
    return AGREEMENT if same else DISAGREEMENT


@dataclass
class PushSummary:
    pushed: Counter = field(default_factory=Counter)  # split -> records sent
    unchanged: Counter = field(default_factory=Counter)  # split -> records not sent: the dataset holds them as they are
    reasons: Counter = field(default_factory=Counter)  # review_reason -> records
    dropped_overlaps: int = 0
    model_suggestions: int = 0
    label_version: str | None = None  # the labels the curated sample carries


    def line(self) -> str:
        per_split = ", ".join(f"{s}={n}" for s, n in self.pushed.items()) or "nothing"
        reasons = ", ".join(f"{r}={n}" for r, n in sorted(self.reasons.items(), key=lambda kv: PRIORITY[kv[0]]))
        held = f"; {sum(self.unchanged.values())} already held unchanged ({', '.join(f'{s}={n}' for s, n in self.unchanged.items())})" if self.unchanged else ""
        return (f"pushed {sum(self.pushed.values())} records ({per_split}){held} with suggestions from label version {self.label_version}; review order: {reasons}; "
                f"{self.model_suggestions} compact-model suggestions; {self.dropped_overlaps} overlapping LLM spans dropped")

    def record(self) -> dict:
        """What `artifacts.REVIEW_PUSH_KEY` keeps of the latest push."""
        return {"sent": dict(self.pushed), "unchanged": dict(self.unchanged), "label_version": self.label_version}


# Columns push() puts beside the sample's, aligned with its rows (null where the table has none).
AGENT, MODEL_SPANS, MODEL_VERSION = "_llm_model", "_model_spans", "_model_version"


def _row_reason(row: dict) -> str:
    """`review_reason` of a sample row with `push`'s aligned columns."""
    return review_reason(row["llm_status"], row["spans"], row[MODEL_SPANS] if row[MODEL_VERSION] else None)


def build_records(rows: list[dict], cfg: ReviewConfig, with_model_question: bool, summary: PushSummary) -> list:
    """One `rg.Record` per sample row (with `push`'s aligned columns), in the order given."""
    import argilla as rg

    records = []
    for row in rows:
        reason = _row_reason(row)
        suggestions = []
        if row["spans"] is not None and reason != LLM_INVALID:
            values, scores, dropped = to_argilla_spans(row["spans"])
            summary.dropped_overlaps += dropped
            suggestions.append(rg.Suggestion(question_name=SPAN_QUESTION, value=values, score=scores,
                                             agent=row[AGENT] or cfg.llm_model, type="model"))
        if row[MODEL_VERSION] and with_model_question:
            values, scores, _ = to_argilla_spans(row[MODEL_SPANS])
            suggestions.append(rg.Suggestion(question_name=MODEL_QUESTION, value=values, score=scores,
                                             agent=row[MODEL_VERSION], type="model"))
            summary.model_suggestions += 1
        metadata = {
            "headline_id": row["id"],
            "date": row["date"].astimezone(timezone.utc).date().isoformat(),
            "symbol": row["symbol"],
            "split": row["split"],
            "cluster": row["cluster"],
            "review_reason": reason,
            "priority": PRIORITY[reason],
        }
        fields = {TEXT_FIELD: row["title"], **({MODEL_FIELD: row["title"]} if with_model_question else {})}
        records.append(rg.Record(id=row["id"], fields=fields, suggestions=suggestions,
                                 metadata={k: v for k, v in metadata.items() if v is not None}))
        summary.reasons[reason] += 1
    return records


def _aligned(store: Store, table: str, columns: dict[str, str], ids: pa.ChunkedArray, latest: str, read: bool = True) -> dict[str, pa.Array]:
    """`columns` (table column -> name) of `table`'s row for each of `ids`, the one with the latest
    `latest` time where it has several (appends land in commit order, which says nothing of their
    times), null where none (all null unless `read`). Only the rows of `ids` are read: the sample's,
    not the feed's."""
    found = store.read(table, columns=["id", latest, *columns], filter=pc.field("id").isin(ids)) if read and store.exists(table) else None
    if found is None or found.num_rows == 0:
        return {name: pa.nulls(len(ids), schemas.TABLES[table].field(column).type) for column, name in columns.items()}
    found = found.sort_by([(latest, "descending")])  # index_in finds the first: make it the latest
    at = pc.index_in(ids, value_set=found["id"])
    return {name: found[column].take(at) for column, name in columns.items()}


def _priorities(sample: pa.Table, chunk_rows: int) -> pa.Array:
    """Each row's review priority, disagreement first; checks every row's spans on the way (before
    anything is sent: Argilla would reject the whole batch, far from the cause)."""
    priorities = []
    for batch in sample.to_batches(max_chunksize=chunk_rows):
        for row in batch.to_pylist():
            check_spans(row["id"], row["title"], row["spans"], "sample")
            if row[MODEL_VERSION]:
                check_spans(row["id"], row["title"], row[MODEL_SPANS], "predictions")
            priorities.append(PRIORITY[_row_reason(row)])
    return pa.array(priorities, pa.int8())


def push(store: Store, client, cfg: ReviewConfig) -> PushSummary:
    """Upsert every sample headline of the configured splits into its split's dataset, disagreement
    first (then by id, so the order is stable), `cfg.batch_size` records at a time: the sample
    stays an Arrow table and only one batch is ever Python objects."""
    if not store.exists("sample"):
        raise FinnerError(f"no `sample` table in {store.root}: run the curation stage first")
    sample = store.read("sample")
    unknown = sorted(set(pc.unique(sample["split"]).drop_null().to_pylist()) - set(schemas.SPLITS))
    if unknown:
        raise FinnerError(f"table 'sample', column 'split': unknown value(s) {unknown}; expected {list(schemas.SPLITS)}")
    ids = sample["id"]
    extra = _aligned(store, "llm_labels", {"model": AGENT}, ids, latest="labeled_at")
    extra |= _aligned(store, "predictions", {"spans": MODEL_SPANS, "model_version": MODEL_VERSION}, ids, latest="scored_at", read=cfg.model_suggestions)
    for name, column in extra.items():
        sample = sample.append_column(name, column)
    sample = sample.append_column("_priority", _priorities(sample, cfg.batch_size))
    with_predictions = sample[MODEL_VERSION].null_count < sample.num_rows
    curated = store.get_json(artifacts.CURATE_KEY) or {}
    summary = PushSummary(label_version=curated.get("summary", {}).get("label_version"))
    for split in cfg.splits:
        rows = sample.filter(pc.equal(sample["split"], split))
        if not rows.num_rows:
            continue
        dataset = ensure_dataset(client, cfg, split, with_model_question=with_predictions)
        with_model_question = has_question(dataset, MODEL_QUESTION)
        ordered = rows.sort_by([("_priority", "ascending"), ("id", "ascending")])
        batch_size = min(cfg.batch_size, client.api.records.MAX_RECORDS_PER_UPSERT_BULK)
        ledger = PushLedger(store, artifacts.review_push_ledger_key(cfg.workspace, dataset.name), str(dataset.id), cfg.resend)
        for batch in progress_bar(ordered.to_batches(max_chunksize=batch_size), total=math.ceil(ordered.num_rows / batch_size),
                                  desc=f"push {dataset.name}", unit=" batches"):
            batch_rows = batch.to_pylist()
            records = build_records(batch_rows, cfg, with_model_question, summary)
            digest = ledger.track([with_model_question, cfg.llm_model, batch_rows])
            if digest in ledger:
                summary.unchanged[split] += batch.num_rows
                continue
            upsert(client, dataset, records)
            ledger.add(digest)
            summary.pushed[split] += batch.num_rows
        ledger.keep_only_current()
    store.put_json(artifacts.REVIEW_PUSH_KEY, summary.record())
    return summary


class PushLedger:
    """The batches one Argilla dataset holds as this store last sent them (`_meta`), by content digest.

    Written after every upsert, so a push stopped half-way resumes where it stopped; a batch whose
    rows, suggestions or order changed has a new digest and is sent again. Tied to the dataset's
    server id: a dataset deleted and created anew starts empty.
    """

    def __init__(self, store: Store, key: str, dataset_id: str, resend: bool = False):
        self.store, self.key, self.dataset_id = store, key, dataset_id
        kept = store.get_json(key) or {}
        self.held = set(kept.get("batches", [])) if kept.get("dataset_id") == dataset_id and not resend else set()
        self.current: list[str] = []  # this push's batches, in order

    def track(self, content) -> str:
        """The digest of one batch's content, remembered as part of this push."""
        digest = stable_hash(content, length=32)
        self.current.append(digest)
        return digest

    def __contains__(self, digest: str) -> bool:
        return digest in self.held

    def add(self, digest: str) -> None:
        self.held.add(digest)
        self._save(sorted(self.held))

    def keep_only_current(self) -> None:
        """Forget batches this push no longer has (older labels, older order): the ledger stays the size of the sample."""
        self._save(self.current)

    def _save(self, batches: list[str]) -> None:
        self.store.put_json(self.key, {"dataset_id": self.dataset_id, "batches": batches})


def upsert(client, dataset, records: list) -> None:
    """Upsert one batch by record id (Argilla's external id): a re-push updates, never duplicates.

    Goes one level below `dataset.records.log`: in argilla 2.8 that call re-reads the upserted
    records and crashes on a discarded response without values (`values=None`), i.e. on every
    re-push after a reviewer discarded something.
    """
    models = []
    for record in records:
        record.dataset = dataset
        models.append(record.api_model())
    client.api.records.bulk_upsert(dataset.id, models)


# -- pull ---------------------------------------------------------------------------------------

def iter_records(client, dataset) -> Iterator[dict]:
    """Every record of a dataset as the REST API returns it (responses with their timestamps)."""
    offset = 0
    while True:
        response = client.http_client.get(
            f"/api/v1/datasets/{dataset.id}/records",
            params={"offset": offset, "limit": PAGE_SIZE, "include": ["responses", "suggestions"]},
        )
        response.raise_for_status()
        items = response.json()["items"]
        yield from items
        if len(items) < PAGE_SIZE:
            return
        offset += len(items)


def _utc(stamp: str) -> datetime:
    """Server timestamps are naive UTC ISO strings; gold keeps whole seconds."""
    parsed = datetime.fromisoformat(stamp)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).replace(microsecond=0)


def gold_spans(title: str, values: list[dict] | None) -> list[dict]:
    """Argilla span values -> our spans, in order, with the covered text."""
    return [
        make_span(title, v["start"], v["end"], role=schemas.ROLE_BROKER if v.get("label") == BROKER_LABEL else schemas.ROLE_SUBJECT)
        for v in sorted(values or [], key=lambda v: (v["start"], v["end"]))
    ]


@dataclass
class SplitReview:
    """What one split's dataset holds right now."""

    gold: list[dict] = field(default_factory=list)
    llm: dict[str, list[dict]] = field(default_factory=dict)  # id -> LLM suggestion (our spans)
    pending: list[str] = field(default_factory=list)  # ids without a submitted/discarded response
    total: int = 0
    contested: int = 0  # records with several final answers (the latest one is kept)


def read_split(client, dataset, split: str, usernames: dict[str, str]) -> SplitReview:
    """The final answer per record: the latest submitted response, else the latest discard."""
    review = SplitReview()
    llm_question = next(str(q.id) for q in dataset.settings.questions if q.name == SPAN_QUESTION)
    for record in iter_records(client, dataset):
        review.total += 1
        headline_id, title = record["external_id"], record["fields"][TEXT_FIELD]
        for suggestion in record.get("suggestions") or []:
            if suggestion["question_id"] == llm_question:
                review.llm[headline_id] = gold_spans(title, suggestion["value"])
        final = [r for r in record.get("responses") or [] if r["status"] in (schemas.GOLD_SUBMITTED, schemas.GOLD_DISCARDED)]
        if not final:
            review.pending.append(headline_id)
            continue
        review.contested += len(final) > 1
        best = max(final, key=lambda r: (r["status"] == schemas.GOLD_SUBMITTED, r["updated_at"], usernames.get(r["user_id"], "")))
        submitted = best["status"] == schemas.GOLD_SUBMITTED
        values = ((best.get("values") or {}).get(SPAN_QUESTION) or {}).get("value")
        metadata = record.get("metadata") or {}
        review.gold.append({
            "id": headline_id,
            "split": split,
            "title": title,
            "date": _utc(metadata["date"]) if metadata.get("date") else None,
            "symbol": metadata.get("symbol"),
            "status": best["status"],
            "spans": gold_spans(title, values) if submitted else None,
            "annotator": usernames.get(best["user_id"], best["user_id"]),
            "submitted_at": _utc(best["updated_at"]),
        })
    return review


def _usernames(client) -> dict[str, str]:
    return {str(user.id): user.username for user in client.users}


def read_reviews(client, cfg: ReviewConfig) -> dict[str, SplitReview | None]:
    """Every configured split's review state (None for a split never pushed)."""
    usernames = _usernames(client)
    reviews = {}
    for split in cfg.splits:
        dataset = find_dataset(client, cfg, split)
        reviews[split] = None if dataset is None else read_split(client, dataset, split, usernames)
    return reviews


@dataclass
class PullSummary:
    reviews: dict[str, SplitReview | None]

    def line(self) -> str:
        parts = []
        for split, review in self.reviews.items():
            if review is None:
                parts.append(f"{split}: no dataset")
                continue
            status = Counter(row["status"] for row in review.gold)
            parts.append(f"{split}: {status[schemas.GOLD_SUBMITTED]} submitted, {status[schemas.GOLD_DISCARDED]} discarded, "
                         f"{len(review.pending)} pending (not in gold)")
        contested = sum(r.contested for r in self.reviews.values() if r)
        return "gold: " + "; ".join(parts) + (f"; {contested} records with several answers (latest kept)" if contested else "")


def pull(store: Store, client, cfg: ReviewConfig) -> PullSummary:
    """Rebuild the `gold` table from the server (same server state -> same table)."""
    reviews = read_reviews(client, cfg)
    rows = sorted((row for r in reviews.values() if r for row in r.gold), key=lambda row: (row["split"], row["id"]))
    store.write("gold", pa.Table.from_pylist(rows, schema=schemas.GOLD))
    return PullSummary(reviews)


# -- status -------------------------------------------------------------------------------------

def status_lines(client, cfg: ReviewConfig) -> list[str]:
    """Per split: pending/submitted/discarded counts and how well the LLM's suggestions hold up."""
    lines = []
    for split, review in read_reviews(client, cfg).items():
        if review is None:
            lines.append(f"{split}: no dataset {cfg.name_of(split)!r} in workspace {cfg.workspace!r}")
            continue
        status = Counter(row["status"] for row in review.gold)
        scored = [row for row in review.gold if row["status"] == schemas.GOLD_SUBMITTED]
        line = (f"{split}: {review.total} records, {len(review.pending)} pending, "
                f"{status[schemas.GOLD_SUBMITTED]} submitted, {status[schemas.GOLD_DISCARDED]} discarded")
        if scored:
            prf = exact_prf([row["spans"] for row in scored], [review.llm.get(row["id"], []) for row in scored])
            line += f"; LLM vs gold so far: P={prf.precision:.3f} R={prf.recall:.3f} F1={prf.f1:.3f} over {len(scored)} headlines"
        lines.append(line)
    return lines

