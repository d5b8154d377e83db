"""LLM-assisted labeling: prompt, output schema, a resilient async chat client, and `llm_labels` rows.

Every headline goes to a chat-completions endpoint (TGI / Inference Endpoints, vLLM, llama.cpp,
any OpenAI-compatible URL) with a few-shot system prompt and a JSON-schema constrained answer
`{"result": [...], "normalized_result": [...]}` (the case study's design). What this module adds
to the case study's batch-of-128 `asyncio.gather` loop:

* a **sliding window**: at most `max_in_flight` requests per client, each row released as soon as
  it is done, so one slow call never idles the other slots (`ChatClient`);
* **retries** with exponential backoff and full jitter on 408/429/5xx, timeouts and connection
  errors, honouring `Retry-After`; 4xx that cannot succeed fail at once; the backoff sleeps
  outside the window so other rows use the slot meanwhile; an optional requests/s cap;
* **every row ends with a status** (`finner.schemas.LABEL_*`): `ok`, `invalid_output` (not JSON,
  wrong schema, lists of different lengths, a company not written in the headline; the raw text is
  kept) or `failed` (the last error after retries). Nothing raises out of `label_rows`;
* **usage**: prompt/completion tokens, request seconds and attempts per row, for cost accounting;
* **one connection pool per client**: the chat-completions API spoken directly over one
  `aiohttp.ClientSession`, not a new connection per request.

A label belongs to what made it: its `label_version` hashes the system prompt (the built-in one, or
`--prompt-file`), the model and the response format. A run labels every headline with no `ok` label
under its own version, so a new prompt or model relabels the feed; `llm_labels` keeps every
version's rows, and downstream stages read one version (`latest_labels`: the latest run's, or the
one named by `--label-version`).

The Ray Data wiring (actor pool, resume, summary, cost) is `finner.pipeline.label`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, ValidationError

from finner import artifacts, schemas
from finner.config import Config, help_text
from finner.errors import FinnerError
from finner.ids import stable_hash
from finner.store import Store

TOKEN_ENV = "HF_TOKEN"  # the only place the endpoint token is read from
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
ResponseFormat = Literal["tgi", "openai", "llamacpp"]


class Companies(BaseModel):
    """The answer the endpoint must give: companies as written, and their normalized names, aligned."""

    model_config = ConfigDict(extra="forbid")

    result: list[str]
    normalized_result: list[str]


# (headline, answer) pairs shown to the model: no company, tickers, tickers in parentheses,
# nicknames, names with "&" and an index that must not be returned.
FEW_SHOT: tuple[tuple[str, Companies], ...] = (
    ("There's A New Trading Tool That Allows Traders To Trade Cannabis With Leverage", Companies(result=[], normalized_result=[])),
    ("Fast Money Picks For April 27", Companies(result=[], normalized_result=[])),
    (
        "We Explain AAPL, TSLA, And MSFT Earnings",
        Companies(result=["AAPL", "TSLA", "MSFT"], normalized_result=["Apple", "Tesla", "Microsoft"]),
    ),
    ("'M' Is For Microsoft, And Meh", Companies(result=["Microsoft"], normalized_result=["Microsoft"])),
    (
        "Black Diamond: The New North Face? (BDE, VFC, JAH)",
        Companies(
            result=["Black Diamond", "North Face", "BDE", "VFC", "JAH"],
            normalized_result=["Black Diamond", "The North Face", "Black Diamond", "VF Corporation", "Jarden Corporation"],
        ),
    ),
    (
        "Dun & Bradstreet Acquires Avention For $150M As Dow Jones Slips",
        Companies(result=["Dun & Bradstreet", "Avention"], normalized_result=["Dun & Bradstreet", "Avention"]),
    ),
    ("Big Blue Beats On Cloud Revenue", Companies(result=["Big Blue"], normalized_result=["IBM"])),
)

SYSTEM_PROMPT = """### Instructions ###
You are a financial expert with excellent English skills.
Extract the companies named in the news headline you are given: only companies whose stock could be
discussed in the article behind the headline. Company names, stock tickers and well-known nicknames count.
Do not include stock indices such as "Dow Jones", "S&P 500", "Nasdaq" or "CAC40", nor people, places,
currencies, commodities or news publishers.

### Expected output ###
A JSON object with two keys:
"result": the companies or tickers exactly as they are written in the headline, in order, even if the
headline misspells them. An empty list when the headline names no company.
"normalized_result": the standard company name of each entry of "result", in the same order. It has
exactly as many entries as "result".
Never return a company that is not written in the headline.
The message gives the headline, then on its own line the ticker the news feed filed it under
("Ticker: ..."): that company is often, not always, the one the headline names; return the ticker
itself only when the headline writes it.

### Examples ###
{examples}"""


TICKER_LINE = "\nTicker: "  # separates the headline from the feed's ticker in the user message


@functools.cache
def system_prompt(prompt_file: str = "") -> str:
    """The built-in few-shot prompt, or the text of `prompt_file` (an `{examples}` slot in it gets
    the built-in examples)."""
    template = SYSTEM_PROMPT
    if prompt_file:
        try:
            with open(prompt_file, encoding="utf-8") as f:
                template = f.read()
        except OSError as err:
            raise FinnerError(f"--prompt-file: cannot read {prompt_file!r}: {err.strerror}") from err
    examples = "\n".join(f"Input: {json.dumps(title)}\nOutput: {answer.model_dump_json()}" for title, answer in FEW_SHOT)
    return template.replace("{examples}", examples)


def user_message(title: str, symbol: str | None = None) -> str:
    """The headline, and the feed's ticker on its own line when the row has one."""
    return f"{title}{TICKER_LINE}{symbol}" if symbol else title


def split_user_message(content: str) -> tuple[str, str | None]:
    """(headline, ticker or None) of a `user_message`: what a labelling server reads back."""
    title, _, symbol = content.partition(TICKER_LINE)
    return title, symbol or None


def messages_for(title: str, symbol: str | None = None, prompt_file: str = "") -> list[dict[str, str]]:
    """The chat for one headline; the headline is the last user message."""
    return [{"role": "system", "content": system_prompt(prompt_file)}, {"role": "user", "content": user_message(title, symbol)}]


def response_format(kind: ResponseFormat) -> dict[str, Any]:
    """The constrained-output request each server kind understands.

    tgi: TGI / Inference Endpoints' grammar form. openai: the OpenAI `json_schema` form (vLLM and
    other OpenAI-compatible servers). llamacpp: llama-cpp-python's server, which takes the schema
    under `schema` and answers 500 to the `json_schema` form.
    """
    schema = Companies.model_json_schema()
    if kind == "tgi":
        return {"type": "json_object", "value": schema}
    if kind == "openai":
        return {"type": "json_schema", "json_schema": {"name": "companies", "schema": schema, "strict": True}}
    if kind == "llamacpp":
        return {"type": "json_object", "schema": schema}
    raise ValueError(f"unknown response format {kind!r}; expected one of tgi, openai, llamacpp")


@dataclass(frozen=True)
class LabelConfig(Config):
    """How to call the endpoint. Fields after `max_tokens` change throughput only, never labels."""

    endpoint: str = field(default="", metadata=help_text("base URL of the chat-completions server (…/v1/chat/completions is appended when missing)"))
    model: str = field(default="tgi", metadata=help_text("model name sent in the payload (TGI ignores it; vLLM needs it)"))
    response_format: ResponseFormat = field(
        default="tgi", metadata=help_text("constrained-output form: tgi (json_object+value), openai (json_schema), llamacpp (json_object+schema)")
    )
    temperature: float = field(default=0.1, metadata=help_text("sampling temperature", at_least=0, at_most=2))
    max_tokens: int = field(default=256, metadata=help_text("completion token limit per headline", at_least=1))
    max_in_flight: int = field(default=32, metadata=help_text("requests in flight per client (per actor): the sliding window", at_least=1))
    requests_per_second: float = field(
        default=0.0, metadata=help_text("cap on requests/s for the whole job (the label job splits it evenly over its actors); 0 = no cap", at_least=0)
    )
    timeout_s: float = field(default=60.0, metadata=help_text("seconds before one request is abandoned and retried", more_than=0))
    max_retries: int = field(default=6, metadata=help_text("retries after the first attempt, for 408/429/5xx, timeouts and connection errors", at_least=0))
    backoff_base_s: float = field(default=1.0, metadata=help_text("first backoff; doubles per retry, with full jitter", at_least=0))
    backoff_max_s: float = field(default=60.0, metadata=help_text("longest backoff (and longest Retry-After honoured)", at_least=0))
    prompt_file: str = field(
        default="", metadata=help_text("system prompt of your own (text; an {examples} slot gets the built-in examples); default: the built-in prompt")
    )

    def prompt_version(self) -> str:
        """Hash of the system prompt and the user-message format: a changed prompt is a new version."""
        return "p-" + stable_hash([system_prompt(self.prompt_file), user_message("{title}", "{symbol}")], length=8)

    def label_version(self) -> str:
        """What a label belongs to: the prompt, the model and the response format that made it."""
        return stable_hash([self.prompt_version(), self.model, self.response_format], length=12)


@dataclass
class CallOutcome:
    """What one headline's calls came to: the answer text, or the last error."""

    content: str | None = None
    error: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float = 0.0  # seconds spent in requests, all attempts
    attempts: int = 0


class RateLimiter:
    """Spaces request starts at least 1/rate seconds apart (a token bucket of size one)."""

    def __init__(self, per_second: float):
        self._interval = 1.0 / per_second if per_second > 0 else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self._interval:
            return
        async with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._interval
        if start > now:
            await asyncio.sleep(start - now)


def chat_url(endpoint: str) -> str:
    """`endpoint` + `/v1/chat/completions`, or + `/chat/completions` when it ends in `/v1`, or as
    given when it already ends in `/chat/completions`; a query string is kept."""
    parts = urlsplit(endpoint)
    path = parts.path.rstrip("/")
    if not path.endswith("/chat/completions"):
        path += "/chat/completions" if path.endswith("/v1") else "/v1/chat/completions"
    return urlunsplit(parts._replace(path=path))


class ChatClient:
    """Chat completions over one pooled `aiohttp.ClientSession`, inside a sliding window.

    One session with a connection pool of `max_in_flight` lives as long as the client: no TCP or
    TLS handshake per headline. It opens on the first request, in the event loop that uses it.
    The token comes from `$HF_TOKEN` only, sent as a bearer token, and is never logged (errors
    carry the status and the server's message, not the request headers).
    """

    def __init__(self, config: LabelConfig):
        if not config.endpoint:
            raise ValueError("LabelConfig.endpoint is empty: give the chat-completions server's base URL")
        self.config = config
        self.url = chat_url(config.endpoint)
        self._request = {
            "model": config.model,
            "temperature": config.temperature,
            "max_tokens": config.max_tokens,
            "response_format": response_format(config.response_format),
            "stream": False,
        }
        token = os.environ.get(TOKEN_ENV)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session: aiohttp.ClientSession | None = None
        self._window = asyncio.Semaphore(config.max_in_flight)
        self._rate = RateLimiter(config.requests_per_second)
        self._rng = random.Random()

    async def complete(self, messages: list[dict[str, str]]) -> CallOutcome:
        """The answer to one chat, after retries; never raises (the error is in the outcome)."""
        outcome = CallOutcome()
        cfg = self.config
        for attempt in range(cfg.max_retries + 1):
            await self._rate.wait()
            async with self._window:
                outcome.attempts += 1
                started = time.perf_counter()
                try:
                    response = await self._post({**self._request, "messages": messages})
                except Exception as err:  # classified below: every error ends as a row value
                    outcome.latency_s += time.perf_counter() - started
                    retry, wait_hint, outcome.error = classify_error(err)
                else:
                    outcome.latency_s += time.perf_counter() - started
                    return _fill_from_response(outcome, response)
            if not retry or attempt == cfg.max_retries:
                return outcome
            await asyncio.sleep(self.backoff(attempt, wait_hint))
        return outcome

    async def _post(self, payload: dict[str, Any]) -> Any:
        """The decoded JSON answer; an HTTP error status raises `aiohttp.ClientResponseError`
        carrying the server's message and headers (Retry-After)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_s),
                connector=aiohttp.TCPConnector(limit=self.config.max_in_flight),
            )
        async with self._session.post(self.url, json=payload) as response:
            body = await response.read()
            if response.status >= 400:
                raise aiohttp.ClientResponseError(
                    response.request_info, response.history, status=response.status, message=_server_message(body, response.reason), headers=response.headers
                )
        return json.loads(body)

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        """Full-jitter exponential backoff; a server's Retry-After is a floor (capped at backoff_max_s)."""
        cfg = self.config
        ceiling = min(cfg.backoff_max_s, cfg.backoff_base_s * 2**attempt)
        delay = self._rng.uniform(0, ceiling)
        if retry_after is not None:
            delay = max(delay, min(retry_after, cfg.backoff_max_s))
        return delay

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._session = None


def _server_message(body: bytes, reason: str | None) -> str:
    """An error answer's JSON payload as one string, else the status line's reason."""
    try:
        payload = json.loads(body)
    except ValueError:
        return reason or ""
    return json.dumps(payload) if isinstance(payload, (dict, list)) else str(payload or reason or "")


def _fill_from_response(outcome: CallOutcome, response: Any) -> CallOutcome:
    outcome.error = None
    response = response if isinstance(response, dict) else {}
    choices = response.get("choices") or []
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    outcome.content = content if isinstance(content, str) else None
    usage = response.get("usage")
    if isinstance(usage, dict):
        outcome.prompt_tokens = usage.get("prompt_tokens")
        outcome.completion_tokens = usage.get("completion_tokens")
    if outcome.content is None:
        outcome.error = "response has no message content"
    elif choice.get("finish_reason") == "length":
        outcome.error = "finish_reason=length: the answer was cut at max_tokens"
    return outcome


def classify_error(err: BaseException) -> tuple[bool, float | None, str]:
    """(retry?, Retry-After seconds or None, one-line error) for an exception of one attempt."""
    if isinstance(err, aiohttp.ClientResponseError):
        retry_after = _retry_after(err.headers.get("Retry-After") if err.headers else None)
        return err.status in RETRYABLE_STATUS, retry_after, f"HTTP {err.status}: {err.message[:300]}"
    if isinstance(err, (asyncio.TimeoutError, TimeoutError)):
        return True, None, f"timeout: {type(err).__name__}"
    if isinstance(err, (aiohttp.ClientError, ConnectionError, OSError)):
        return True, None, f"connection error: {type(err).__name__}: {err}"[:400]
    if isinstance(err, ValueError):  # includes json.JSONDecodeError of a broken response body
        return True, None, f"unreadable response: {type(err).__name__}: {err}"[:400]
    return False, None, f"{type(err).__name__}: {err}"[:400]


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from email.utils import parsedate_to_datetime

        when = parsedate_to_datetime(value)
        return max(0.0, (when - dt.datetime.now(dt.timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None


# -- parsing and rows --------------------------------------------------------------------------


@dataclass(frozen=True)
class Parsed:
    status: str
    result: list[str] | None = None
    normalized_result: list[str] | None = None
    error: str | None = None


def parse_answer(content: str, title: str) -> Parsed:
    """Validate an answer against the schema and the headline: `ok` or `invalid_output` with why."""
    try:
        answer = Companies.model_validate_json(content)
    except ValidationError as err:
        kind = "not JSON" if any(e["type"] == "json_invalid" for e in err.errors()) else "schema violation"
        return Parsed(schemas.LABEL_INVALID, error=f"{kind}: {_first_line(err)}")
    if len(answer.result) != len(answer.normalized_result):
        return Parsed(
            schemas.LABEL_INVALID,
            answer.result,
            answer.normalized_result,
            f"result has {len(answer.result)} entries but normalized_result has {len(answer.normalized_result)}",
        )
    missing = [company for company in answer.result if company not in title]
    if missing:
        return Parsed(schemas.LABEL_INVALID, answer.result, answer.normalized_result, f"not written in the headline: {missing}")
    return Parsed(schemas.LABEL_OK, answer.result, answer.normalized_result)


def _first_line(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "<root>"
    return f"{where}: {first['msg']}"[:300]


def label_row(row_id: str, title: str, outcome: CallOutcome, config: LabelConfig, labeled_at: dt.datetime) -> dict[str, Any]:
    """One `llm_labels` row from a call outcome."""
    if outcome.content is None:
        parsed = Parsed(schemas.LABEL_FAILED, error=outcome.error or "no answer")
    elif outcome.error:  # an answer came back, but cut short: keep it, mark it invalid
        parsed = Parsed(schemas.LABEL_INVALID, error=outcome.error)
    else:
        parsed = parse_answer(outcome.content, title)
    return {
        "id": row_id,
        "status": parsed.status,
        "result": parsed.result,
        "normalized_result": parsed.normalized_result,
        "raw": outcome.content,
        "error": parsed.error,
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens,
        "latency_s": round(outcome.latency_s, 6),
        "attempts": outcome.attempts,
        "model": config.model,
        "prompt_version": config.prompt_version(),
        "response_format": config.response_format,
        "label_version": config.label_version(),
        "labeled_at": labeled_at,
    }


async def label_rows(ids: Sequence[str], titles: Sequence[str], client: ChatClient, symbols: Sequence[str | None] | None = None) -> pa.Table:
    """Label headlines concurrently (the client's window bounds it); one row per input, in order."""
    symbols = symbols if symbols is not None else [None] * len(titles)
    prompt_file = client.config.prompt_file
    outcomes = await asyncio.gather(*(client.complete(messages_for(title, symbol, prompt_file)) for title, symbol in zip(titles, symbols)))
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    rows = [label_row(i, t, o, client.config, now) for i, t, o in zip(ids, titles, outcomes)]
    return pa.Table.from_pylist(rows, schema=schemas.LLM_LABELS)


# -- reading ---------------------------------------------------------------------------------


def pick_latest(labels: pa.Table) -> pa.Table:
    """One row per id from label rows written over several runs: the latest `ok` row, else the latest row."""
    if labels.num_rows == 0:
        return labels
    rank = pc.if_else(pc.equal(labels["status"], schemas.LABEL_OK), 1, 0)
    order = pa.table({"id": labels["id"], "rank": rank, "at": labels["labeled_at"], "i": pa.array(range(labels.num_rows))})
    order = order.sort_by([("id", "ascending"), ("rank", "descending"), ("at", "descending"), ("i", "descending")])
    ids = order["id"].to_numpy(zero_copy_only=False)
    first = [0] + [k for k in range(1, len(ids)) if ids[k] != ids[k - 1]]
    return labels.take(order["i"].take(pa.array(first)))


def current_label_version(store: Store, requested: str = "") -> str | None:
    """The label version downstream stages read: `requested` when given (it must exist), else the
    latest labeling run's, else that of the most recently written label (None: no labels).
    Streams the two columns it needs: nothing per label row is held."""
    known: set[str | None] = set()
    latest: tuple[dt.datetime, str | None] | None = None  # the first row with the greatest labeled_at
    for batch in store.dataset("llm_labels").to_batches(columns=["label_version", "labeled_at"]):
        known.update(pc.unique(batch.column("label_version")).to_pylist())
        at = pc.max(batch.column("labeled_at")).as_py()
        if at is not None and (latest is None or at > latest[0]):
            latest = at, batch.column("label_version")[pc.index(batch.column("labeled_at"), at).as_py()].as_py()
    if requested:
        if requested not in known:
            raise FinnerError(f"--label-version {requested!r}: no such labels; the store has {sorted(v for v in known if v)}")
        return requested
    run = store.get_json(artifacts.LABEL_RUN_KEY)
    if run and run.get("label_version") in known:
        return run["label_version"]
    return latest[1] if latest else None


def label_version_filter(label_version: str | None) -> pc.Expression:
    """The `llm_labels` rows of one version (None: rows written before labels carried a version)."""
    return pc.field("label_version") == label_version if label_version else pc.field("label_version").is_null()


def latest_labels(store: Store, label_version: str | None) -> pa.Table:
    """One row per headline id of the labels of `label_version` (ok wins, else the latest attempt;
    None: rows written before labels carried a version).

    A headline can have several rows over re-runs (failed, then ok) and over versions (prompts,
    models); every downstream stage reads labels through this function, one version at a time.
    """
    return pick_latest(store.read("llm_labels", filter=label_version_filter(label_version)))
