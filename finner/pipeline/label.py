"""Ray Data wiring of the labeling stage: headlines not yet `ok` -> async endpoint actors -> `llm_labels`.

* **Resume**: the input is `headlines` minus the ids already `ok` in `llm_labels` under this run's
  label version (prompt, model, response format: `LabelConfig.label_version`); failed and invalid
  rows are tried again, and a new prompt or model relabels every headline once. The rows stream
  from the store through Ray Data tasks (`finner.pipeline.todo`): the driver holds no headline,
  and the actors count the rows they relabel (ok under another version when the job started)
  themselves. Finished batches are appended to `llm_labels` by a writing task, `--commit-rows` at
  a time in one commit named after their ids (a Ray retry of a committed one adds nothing), so
  killing the job loses only the rows not yet committed; few large commits keep each commit cheap
  as the table's log grows. The stage ends by compacting the table's small files (`Store.compact`,
  in a worker of its own: `finner.pipeline.worker`).
* **Concurrency**: `map_batches` with an async callable class in a fixed actor pool. Every actor
  holds one `ChatClient` whose window (`LabelConfig.max_in_flight`) is shared by the batches the
  actor works on at once, so `actors x max_in_flight` is the endpoint's concurrency and a slow
  request only holds its own slot.
* **Cost**: the summary counts statuses, tokens, requests/s and dollars (per hour of endpoint or per
  token), printed and stored as `label_cost` (`Store.put_json`) for the scoring stage's comparison;
  `estimate=True` labels a random sample first and extrapolates time and cost to the whole input.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import math
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from finner import artifacts, schemas
from finner.config import Config, config_from_dict, help_text
from finner.errors import FinnerError
from finner.ids import stable_hash
from finner.label import ChatClient, LabelConfig, label_rows, latest_labels
from finner.metrics import exact_prf
from finner.pipeline.todo import write_task_options, DoneRule, Todo, in_batches, is_done, todo_dataset
from finner.pipeline.worker import in_worker
from finner.spans import find_spans
from finner.progress import progress_bar
from finner.store import Store

# What the actors send back to the driver (the full rows are already in the store), with `relabelled`.
SUMMARY_COLUMNS = ["id", "status", "error", "prompt_tokens", "completion_tokens", "latency_s", "attempts"]
RELABELLED = "relabelled"


@dataclass(frozen=True)
class LabelRunConfig(Config):
    """How the labeling job runs on Ray and what the endpoint costs."""

    actors: int = field(default=2, metadata=help_text("actors calling the endpoint; endpoint concurrency = actors x --max-in-flight", at_least=1))
    actor_cpus: float = field(default=0.25, metadata=help_text("CPUs reserved per actor (they mostly wait on the network)", more_than=0))
    batch_rows: int = field(default=128, metadata=help_text("headlines per batch an actor works on", at_least=1))
    commit_rows: int = field(
        default=2048, metadata=help_text("labelled headlines per commit to llm_labels: fewer, larger commits cost less; a killed job loses the uncommitted ones", at_least=1)
    )
    batches_per_actor: int = field(default=4, metadata=help_text("batches an actor works on at once (they share its window)", at_least=1))
    limit: int = field(default=0, metadata=help_text("label at most this many headlines in this run; 0 = all that are not ok yet", at_least=0))
    usd_per_hour: float = field(default=0.0, metadata=help_text("endpoint price per hour (dedicated endpoints)", at_least=0))
    usd_per_million_prompt_tokens: float = field(default=0.0, metadata=help_text("price per million prompt tokens (serverless APIs)", at_least=0))
    usd_per_million_completion_tokens: float = field(default=0.0, metadata=help_text("price per million completion tokens", at_least=0))
    estimate: bool = field(default=False, metadata=help_text("label only a random sample and extrapolate time and cost to the whole input"))
    estimate_rows: int = field(default=200, metadata=help_text("sample size of --estimate", at_least=1))
    seed: int = field(default=0, metadata=help_text("random seed of the --estimate sample", at_least=0))



class LabelActor:
    """Ray Data actor: labels a batch through the actor's shared client and returns its `llm_labels`
    rows, marking those `relabelled` counts (done under `relabel`, another version's ok)."""

    def __init__(self, label_config: dict[str, Any], store_root: str, relabel: DoneRule):
        self.config = config_from_dict(LabelConfig, label_config)
        self.store_root = store_root
        self.relabel = relabel
        self._client: ChatClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, batch: pa.Table):
        if self._client is None:  # built on first use, inside the event loop Ray runs us in
            self._client, self._loop = ChatClient(self.config), asyncio.get_running_loop()
        ids = batch["id"].to_pylist()
        labels = await label_rows(ids, batch["title"].to_pylist(), self._client, batch["symbol"].to_pylist())
        relabelled = await asyncio.to_thread(is_done, batch["id"], self.store_root, self.relabel)  # the first call reads the ids
        yield labels.append_column(RELABELLED, relabelled)

    def __del__(self) -> None:
        """Ray Data deletes the UDF when the pool shuts down: close the client's connections."""
        if self._client is not None and self._loop is not None and self._loop.is_running():
            with contextlib.suppress(Exception):  # best effort: the process is exiting anyway
                asyncio.run_coroutine_threadsafe(self._client.close(), self._loop).result(timeout=5)


def commit_task(batch: pa.Table, store_root: str, run_id: str) -> pa.Table:
    """Ray Data task: labelled batches -> `llm_labels`, appended in one commit named after their ids
    (a Ray retry of a committed one adds nothing); returns what the summary counts."""
    rows = batch.drop_columns([RELABELLED])
    Store(store_root).append("llm_labels", rows, part=f"{run_id}-{stable_hash(rows['id'].to_pylist())}")
    return batch.select([*SUMMARY_COLUMNS, RELABELLED])


@dataclass
class LabelSummary:
    """What a run did and cost."""

    rows: int = 0
    statuses: Counter = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    request_s: float = 0.0
    elapsed_s: float = 0.0
    already_ok: int = 0
    relabelled: int = 0  # rows labelled ok before, under another prompt or model
    label_version: str = ""
    agreement: dict[str, Any] | None = None  # with --estimate: the sample against the previous version's labels
    last_error: str | None = None
    estimate: dict[str, Any] | None = None  # with --estimate: the extrapolation to the whole input

    def add(self, batch: pa.Table) -> None:
        self.rows += batch.num_rows
        self.relabelled += int(pc.sum(batch[RELABELLED].cast(pa.int64())).as_py() or 0)
        self.statuses.update(batch["status"].to_pylist())
        self.prompt_tokens += int(pc.sum(batch["prompt_tokens"]).as_py() or 0)
        self.completion_tokens += int(pc.sum(batch["completion_tokens"]).as_py() or 0)
        self.requests += int(pc.sum(batch["attempts"]).as_py() or 0)
        self.request_s += float(pc.sum(batch["latency_s"]).as_py() or 0.0)
        errors = [e for e in batch["error"].to_pylist() if e]
        if errors:
            self.last_error = errors[-1]

    def usd(self, run: LabelRunConfig) -> float:
        return (
            self.elapsed_s / 3600 * run.usd_per_hour
            + self.prompt_tokens / 1e6 * run.usd_per_million_prompt_tokens
            + self.completion_tokens / 1e6 * run.usd_per_million_completion_tokens
        )

    def to_json(self, run: LabelRunConfig, label: LabelConfig) -> dict[str, Any]:
        usd = self.usd(run)
        return {
            "rows": self.rows,
            "statuses": {s: self.statuses.get(s, 0) for s in (schemas.LABEL_OK, schemas.LABEL_INVALID, schemas.LABEL_FAILED)},
            "already_ok": self.already_ok,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "requests": self.requests,
            "elapsed_s": round(self.elapsed_s, 3),
            "headlines_per_s": round(self.rows / self.elapsed_s, 3) if self.elapsed_s else 0.0,
            "requests_per_s": round(self.requests / self.elapsed_s, 3) if self.elapsed_s else 0.0,
            "mean_request_s": round(self.request_s / self.requests, 4) if self.requests else 0.0,
            "usd": round(usd, 6),
            "usd_per_1k_headlines": round(usd / self.rows * 1000, 6) if self.rows else 0.0,
            "pricing": {
                "usd_per_hour": run.usd_per_hour,
                "usd_per_million_prompt_tokens": run.usd_per_million_prompt_tokens,
                "usd_per_million_completion_tokens": run.usd_per_million_completion_tokens,
            },
            "concurrency": run.actors * label.max_in_flight,
            "model": label.model,
            "prompt_version": label.prompt_version(),
            "label_version": label.label_version(),
            "relabelled": self.relabelled,
            "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }

    def line(self, run: LabelRunConfig) -> str:
        s = self.statuses
        rate = self.rows / self.elapsed_s if self.elapsed_s else 0.0
        return (
            f"labeled {self.rows} headlines in {self.elapsed_s:.1f}s ({rate:.1f}/s, {self.requests / max(self.elapsed_s, 1e-9):.1f} requests/s): "
            f"{s.get(schemas.LABEL_OK, 0)} ok, {s.get(schemas.LABEL_INVALID, 0)} invalid_output, {s.get(schemas.LABEL_FAILED, 0)} failed; "
            f"{self.already_ok} already ok, {self.relabelled} relabelled (their label came from another prompt or model); "
            f"label version {self.label_version}; tokens {self.prompt_tokens} prompt + {self.completion_tokens} completion; "
            f"cost ${self.usd(run):.4f}"
        )


def _batch_rows(todo_rows: int, run: LabelRunConfig) -> int:
    """`run.batch_rows`, smaller when the input is too short to give every actor's slots a batch."""
    return max(1, min(run.batch_rows, math.ceil(todo_rows / (run.actors * run.batches_per_actor))))


def label_todo(store: Store, todo: Todo, label: LabelConfig, run: LabelRunConfig, progress: bool = True) -> LabelSummary:
    """Label the (id, title, symbol) rows of `todo` on the Ray actor pool, committing them as they come;
    returns the summary, `relabelled` counted by the actors."""
    import ray

    summary = LabelSummary()
    if todo.rows == 0:
        return summary
    version = label.label_version()
    relabel = DoneRule.at_start(store, "llm_labels", [("status", "=", schemas.LABEL_OK), ("label_version", "!=", version)])
    store.ensure("llm_labels")
    run_id = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
    per_actor = dataclasses.replace(label, requests_per_second=label.requests_per_second / run.actors)  # a global cap, shared
    batch_rows = _batch_rows(todo.rows, run)
    dataset = in_batches(todo, batch_rows).map_batches(
        LabelActor,
        fn_constructor_kwargs={"label_config": dataclasses.asdict(per_actor), "store_root": store.root, "relabel": relabel},
        batch_size=batch_rows,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(
            size=run.actors,
            max_tasks_in_flight_per_actor=run.batches_per_actor,
            max_concurrent_calls_per_actor=run.batches_per_actor,
        ),
        num_cpus=run.actor_cpus,
    ).map_batches(
        commit_task,
        fn_kwargs={"store_root": store.root, "run_id": run_id},
        batch_size=max(run.commit_rows, batch_rows),
        batch_format="pyarrow",
        **write_task_options(),
    )
    bar = progress_bar(desc="labeling", unit=" headlines", total=todo.rows, enabled=progress)
    started = time.perf_counter()
    for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
        summary.add(batch)
        bar.update(batch.num_rows)
    summary.elapsed_s = time.perf_counter() - started
    bar.close()
    in_worker(store.compact, "llm_labels")  # one small file per batch -> a few large ones
    return summary


def run_labeling(store: Store, label: LabelConfig, run: LabelRunConfig, progress: bool = True) -> LabelSummary:
    """The labeling stage: resume from `llm_labels`, label what is left (or a sample), store the cost."""
    import ray

    version = label.label_version()
    previous = current_version(store)
    rule = DoneRule.at_start(store, "llm_labels", [("status", "=", schemas.LABEL_OK), ("label_version", "=", version)])
    todo = todo_dataset(store, rule, ("id", "title", "symbol"), limit=run.limit, ordered=run.estimate)
    sample = _sample(todo, run) if run.estimate else None
    to_label = Todo(ray.data.from_arrow(sample), sample.num_rows, todo.done) if sample is not None else todo
    summary = label_todo(store, to_label, label, run, progress)
    summary.already_ok, summary.label_version = todo.done, version
    report = summary.to_json(run, label)
    if run.estimate:
        summary.estimate = report["estimate"] = extrapolate(summary, todo.rows, run, label)
        if previous and previous != version:
            summary.agreement = report["agreement"] = agreement(store, sample, previous, version)
        store.put_json(artifacts.LABEL_ESTIMATE_KEY, report)
    else:
        if summary.rows:
            store.put_json(artifacts.LABEL_COST_KEY, report)
        store.put_json(artifacts.LABEL_RUN_KEY, {"label_version": version, "model": label.model, "prompt_version": label.prompt_version(), "response_format": label.response_format})
    if summary.rows and not (summary.statuses[schemas.LABEL_OK] or summary.statuses[schemas.LABEL_INVALID]):
        raise FinnerError(
            f"all {summary.rows} headlines failed (last error: {summary.last_error}); "
            "check --endpoint, --response-format and $HF_TOKEN; re-running retries them"
        )
    return summary


def current_version(store: Store) -> str | None:
    """The label version of the latest finished run (what downstream stages read by default)."""
    record = store.get_json(artifacts.LABEL_RUN_KEY)
    return record["label_version"] if record else None


def agreement(store: Store, rows: pa.Table, previous: str, version: str) -> dict[str, Any]:
    """Exact-span F1 of this version's labels of `rows` against the `previous` version's, on the
    rows both labelled ok: what a prompt or model change does, seen before paying for the feed."""
    wanted = pa.array(rows.column("id").to_pylist(), pa.string())
    titles = dict(zip(rows.column("id").to_pylist(), rows.column("title").to_pylist()))

    def spans_of(v: str) -> dict[str, list]:
        labels = latest_labels(store, v).filter(pc.field("id").isin(wanted) & (pc.field("status") == schemas.LABEL_OK))
        return {i: find_spans(titles[i], r, n).spans for i, r, n in zip(*(labels.column(c).to_pylist() for c in ("id", "result", "normalized_result")))}

    old, new = spans_of(previous), spans_of(version)
    both = sorted(set(old) & set(new))
    prf = exact_prf([old[i] for i in both], [new[i] for i in both])
    return {"previous_version": previous, "rows": len(both), "exact_f1": round(prf.f1, 4), "precision": round(prf.precision, 4), "recall": round(prf.recall, 4)}


def agreement_line(a: dict[str, Any]) -> str:
    return (
        f"against the previous labels ({a['previous_version']}) on {a['rows']} sampled headlines both labelled ok: "
        f"exact-span F1 {a['exact_f1']:.3f} (precision {a['precision']:.3f}, recall {a['recall']:.3f} of the new labels against the old)"
    )


def _sample(todo: Todo, run: LabelRunConfig) -> pa.Table:
    """`run.estimate_rows` of `todo`'s rows at positions drawn with `run.seed`, in table order:
    `todo` streams through in order (it is `ordered`) and only the drawn rows are kept."""
    import random

    picks = sorted(random.Random(run.seed).sample(range(todo.rows), min(run.estimate_rows, todo.rows)))
    kept, first, next_pick = [], 0, 0
    if not picks:
        return schemas.HEADLINES.empty_table().select(["id", "title", "symbol"])
    for batch in todo.dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
        end = first + batch.num_rows
        here = []
        while next_pick < len(picks) and picks[next_pick] < end:
            here.append(picks[next_pick] - first)
            next_pick += 1
        if here:
            kept.append(batch.take(pa.array(here, pa.int64())))
        first = end
        if next_pick == len(picks):
            break
    return pa.concat_tables(kept)


def extrapolate(sample: LabelSummary, total_rows: int, run: LabelRunConfig, label: LabelConfig) -> dict[str, Any]:
    """Time and cost of labeling `total_rows` at the sample's per-headline latency, tokens and outcomes.

    Time follows Little's law: with `concurrency` requests always in flight, headlines/s is
    concurrency / seconds per headline (requests, retries included), unless the requests/s cap
    is slower. The sample's own wall time is not used: on a small sample it is mostly start-up.
    """
    concurrency = run.actors * label.max_in_flight
    if not sample.rows:
        return {"rows": total_rows, "elapsed_s": 0.0, "usd": 0.0}
    scale = total_rows / sample.rows
    seconds_per_row = sample.request_s / sample.rows
    projected = LabelSummary(
        rows=total_rows,
        prompt_tokens=round(sample.prompt_tokens * scale),
        completion_tokens=round(sample.completion_tokens * scale),
        requests=round(sample.requests * scale),
        elapsed_s=total_rows * seconds_per_row / concurrency,
    )
    if label.requests_per_second:
        projected.elapsed_s = max(projected.elapsed_s, projected.requests / label.requests_per_second)
    return {
        "rows": total_rows,
        "sample_rows": sample.rows,
        "seconds_per_headline": round(seconds_per_row, 4),
        "concurrency": concurrency,
        "elapsed_s": round(projected.elapsed_s, 1),
        "elapsed_h": round(projected.elapsed_s / 3600, 3),
        "prompt_tokens": projected.prompt_tokens,
        "completion_tokens": projected.completion_tokens,
        "usd": round(projected.usd(run), 2),
        "ok_share": round(sample.statuses[schemas.LABEL_OK] / sample.rows, 4),
    }


def estimate_line(e: dict[str, Any]) -> str:
    return (
        f"estimate from {e.get('sample_rows', 0)} sampled headlines: {e['rows']} headlines would take "
        f"{_duration(e['elapsed_s'])} at {e.get('concurrency', 0)} requests in flight and cost ${e['usd']:.2f} "
        f"({e.get('ok_share', 0):.0%} ok in the sample)"
    )


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"
