"""The built-in chat endpoint (`finner.listing_server`) as a test bench: slow and failing on demand.

It answers like the built-in endpoint (the listing labeller's companies, with `usage` token
counts) and records which constrained-output form each request used (`json_object`+`value` as
TGI, `json_schema` as OpenAI/vLLM, `json_object`+`schema` as llama.cpp). Two knobs make it a bench:

* **capacity**: at most C requests are served at once (the rest queue, as on a real GPU server),
  each taking a latency drawn from a heavy-tailed (log-normal) distribution: what the benchmark
  saturates;
* **faults** at configurable rates: 429 with Retry-After, 500, 503, 422 (not worth retrying), slow
  answers, hangs (the client times out), connection resets, a response body that is not JSON, and answers that are
  malformed JSON, truncated JSON, the wrong schema, lists of different lengths, or a company that
  is not in the headline.

`GET /stats` counts requests per headline (so tests can prove no finished row is sent again),
per fault, per response-format kind and per auth kind (bearer or none; never the token), and the
most requests it ever had in flight and the client connections it saw, with the times requests
arrived and answers left; `POST /stats/reset` clears them.

    python -m finner.testing.chat_server --port 8089 [--listings CSV] [--fault-rate 0.2]

From Python, `with serve_chat(FaultyServerConfig(...)) as url:` serves in a background thread (or a
subprocess with `in_subprocess=True`) and yields the base URL to give the label job.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

from finner import listing_server
from finner.config import ConfigError, help_text
from finner.listing_labeller import Gazetteer

# Fault kinds, in the order the mixed fault rate is spread over them.
TRANSPORT_FAULTS = ("rate_limited", "server_error", "unavailable", "bad_request", "reset", "hang", "broken_body")
ANSWER_FAULTS = ("malformed_json", "truncated_json", "wrong_schema", "mismatched_lengths", "not_in_headline")
FAULTS = (*TRANSPORT_FAULTS, "slow", *ANSWER_FAULTS)
NOT_IN_HEADLINE = "Acme Widgets Corporation"


@dataclass(frozen=True)
class FaultyServerConfig(listing_server.ServerConfig):
    """How the server misbehaves, besides the listing it answers from. Defaults: an instant, faultless server."""

    capacity: int = field(default=0, metadata=help_text("requests served at once (the rest queue); 0 = unlimited", at_least=0))
    latency_median_s: float = field(default=0.0, metadata=help_text("median service time per request", at_least=0))
    latency_sigma: float = field(default=1.0, metadata=help_text("log-normal sigma of the service time (heavier tail when larger)", at_least=0))
    latency_cap_s: float = field(default=30.0, metadata=help_text("longest service time", at_least=0))
    fault_rate: float = field(default=0.0, metadata=help_text("share of requests that misbehave, spread evenly over --faults", at_least=0, at_most=1))
    faults: tuple[str, ...] = field(default=FAULTS, metadata=help_text(f"fault kinds to inject, among {', '.join(FAULTS)}"))
    retry_after_s: float = field(default=1.0, metadata=help_text("Retry-After sent with 429", at_least=0))
    slow_s: float = field(default=2.0, metadata=help_text("extra seconds of a slow answer", at_least=0))
    hang_s: float = field(default=120.0, metadata=help_text("seconds a hanging request waits before answering", at_least=0))
    seed: int = field(default=0, metadata=help_text("random seed for latencies and faults", at_least=0))

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = sorted(set(self.faults) - set(FAULTS))
        if unknown:
            raise ConfigError("faults", f"unknown fault kind(s) {unknown}; known: {FAULTS}")


@dataclass
class Stats:
    requests: int = 0
    answered: int = 0
    by_headline: Counter = field(default_factory=Counter)
    faults: Counter = field(default_factory=Counter)
    formats: Counter = field(default_factory=Counter)
    auth: Counter = field(default_factory=Counter)
    peers: set = field(default_factory=set)  # (host, port) of client connections: reuse shows as few
    in_flight: int = 0
    max_in_flight: int = 0
    service_s: float = 0.0  # slot-seconds spent serving answered requests
    first_request_at: float | None = None
    last_answer_at: float | None = None
    answer_times: list[float] = field(default_factory=list)  # monotonic time of each answer
    request_times: list[float] = field(default_factory=list)  # monotonic time each request arrived

    def to_json(self) -> dict:
        return {
            "requests": self.requests,
            "answered": self.answered,
            "by_headline": dict(self.by_headline),
            "faults": dict(self.faults),
            "formats": dict(self.formats),
            "auth": dict(self.auth),
            "max_in_flight": self.max_in_flight,
            "connections": len(self.peers),
            "service_s": self.service_s,
            "first_request_at": self.first_request_at,
            "last_answer_at": self.last_answer_at,
            "answer_times": self.answer_times,
            "request_times": self.request_times,
        }


def format_kind(response_format: object) -> str:
    """Which constrained-output form a request used: tgi, openai, llamacpp, json_object or none."""
    if not isinstance(response_format, dict):
        return "none"
    if response_format.get("type") == "json_schema":
        return "openai"
    if response_format.get("type") == "json_object":
        if "value" in response_format:
            return "tgi"
        if "schema" in response_format:
            return "llamacpp"
        return "json_object"
    return "other"


class ChatServer(listing_server.ChatServer):
    """The built-in endpoint with counters, capacity, latency and faults."""

    config: FaultyServerConfig

    def __init__(self, config: FaultyServerConfig, gazetteer: Gazetteer | None = None):
        super().__init__(config, gazetteer)
        self.stats = Stats()
        self._rng = random.Random(config.seed)
        self._slots: asyncio.Semaphore | None = None
        self.app.add_routes([web.get("/stats", self.get_stats), web.post("/stats/reset", self.reset_stats)])

    # -- handlers ------------------------------------------------------------------------------

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.to_json())

    async def reset_stats(self, request: web.Request) -> web.Response:
        self.stats = Stats()
        return web.json_response({"status": "reset"})

    async def respond(self, request: web.Request, body: dict, headline: str, symbol: str | None) -> web.StreamResponse:
        stats = self.stats
        stats.requests += 1
        stats.request_times.append(time.monotonic())
        stats.first_request_at = stats.first_request_at or stats.request_times[-1]
        stats.by_headline[headline] += 1
        stats.formats[format_kind(body.get("response_format"))] += 1
        stats.auth["bearer" if request.headers.get("Authorization", "").startswith("Bearer ") else "none"] += 1
        stats.peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            return await self._misbehave(request, body, headline, symbol, stats)
        finally:
            stats.in_flight -= 1

    async def _misbehave(self, request: web.Request, body: dict, headline: str, symbol: str | None, stats: Stats) -> web.StreamResponse:
        fault = self._draw_fault()
        if fault:
            stats.faults[fault] += 1
        if fault == "rate_limited":
            return web.json_response({"error": "rate limited"}, status=429, headers={"Retry-After": f"{self.config.retry_after_s:g}"})
        if fault in ("server_error", "unavailable"):
            return web.json_response({"error": fault}, status=500 if fault == "server_error" else 503)
        if fault == "bad_request":
            return web.json_response({"error": "unprocessable request"}, status=422)
        if fault == "reset":
            assert request.transport is not None
            request.transport.abort()  # the client sees the connection drop with no answer
            raise asyncio.CancelledError
        if fault == "hang":
            await asyncio.sleep(self.config.hang_s)

        async with self._capacity():
            service = self._service_time() + (self.config.slow_s if fault == "slow" else 0.0)
            if service:
                await asyncio.sleep(service)
            stats.service_s += service
        now = time.monotonic()
        stats.answered += 1
        stats.last_answer_at = now
        stats.answer_times.append(now)
        if fault == "broken_body":
            return web.Response(text='{"id": "chatcmpl-broken", "choices": [', content_type="application/json")
        return self.completion(body, *self._answer(headline, symbol, fault))

    # -- behaviour -----------------------------------------------------------------------------

    def _draw_fault(self) -> str | None:
        cfg = self.config
        if not cfg.faults or self._rng.random() >= cfg.fault_rate:
            return None
        return self._rng.choice(cfg.faults)

    def _service_time(self) -> float:
        cfg = self.config
        if cfg.latency_median_s <= 0:
            return 0.0
        return min(cfg.latency_cap_s, cfg.latency_median_s * math.exp(self._rng.gauss(0.0, cfg.latency_sigma)))

    @contextlib.asynccontextmanager
    async def _capacity(self):
        if self.config.capacity <= 0:
            yield
            return
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.config.capacity)
        async with self._slots:
            yield

    def _answer(self, headline: str, symbol: str | None, fault: str | None) -> tuple[str, str]:
        result, normalized = self.gazetteer.label(headline, symbol)
        if fault == "not_in_headline":
            result, normalized = [*result, NOT_IN_HEADLINE], [*normalized, NOT_IN_HEADLINE]
        elif fault == "mismatched_lengths":
            normalized = [*normalized, "Extra Company"] if len(normalized) < 2 else normalized[:-1]
        if fault == "wrong_schema":
            return json.dumps({"companies": result}), "stop"
        answer = self.answer(result, normalized)
        if fault == "malformed_json":
            return "Sure! The companies are: " + ", ".join(result or ["none"]), "stop"
        if fault == "truncated_json":
            return answer[: max(1, len(answer) // 2)], "length"
        return answer, "stop"


def serve_chat(config: FaultyServerConfig | None = None, *, host: str = "127.0.0.1", port: int = 0, in_subprocess: bool = False) -> contextlib.AbstractContextManager[str]:
    """`listing_server.serve_chat` of this bench: yields the base URL while the block runs."""
    return listing_server.serve_chat(config or FaultyServerConfig(), host=host, port=port, in_subprocess=in_subprocess, server=ChatServer)


def stats(base_url: str) -> dict:
    """The server's counters (`GET /stats`)."""
    import urllib.request

    with urllib.request.urlopen(f"{base_url}/stats", timeout=30) as response:
        return json.loads(response.read())


def reset_stats(base_url: str) -> None:
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{base_url}/stats/reset", method="POST"), timeout=30).read()


if __name__ == "__main__":
    sys.exit(listing_server.main(server=ChatServer, config_class=FaultyServerConfig))
