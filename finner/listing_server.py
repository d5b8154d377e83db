"""The built-in chat-completions endpoint: the listing labeller (`finner.listing_labeller`) served
as `POST /v1/chat/completions`, so labelling runs end to end without an LLM (`jobs.label --test-endpoint`).

It answers the way a constrained LLM server does: the headline is the last user message (with the
feed's ticker on its own line, `finner.label.user_message`), the answer is the JSON
`{"result": [...], "normalized_result": [...]}` in the message content, with `usage` token counts
(estimated from characters). It accepts any of the constrained-output forms the label job sends.

    python -m finner.listing_server --port 8089 [--listings CSV]

From Python, `with serve_chat(ServerConfig(...)) as url:` serves it in a background thread (or a
subprocess with `in_subprocess=True`) and yields the base URL to give the label job. The test bench
`finner.testing.chat_server` is this server with capacity, latency and faults added.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import math
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from aiohttp import web

from finner.config import Config, add_config_args, config_from_args, help_text
from finner.label import split_user_message
from finner.listing_labeller import Gazetteer

READY_PREFIX = "chat server listening on "  # the first line a server process prints


@dataclass(frozen=True)
class ServerConfig(Config):
    """Which listing the server labels with."""

    listings: str | None = field(default=None, metadata=help_text("company listing CSV (symbol,name,source); default: the embedded gazetteer"))


class ChatServer:
    """The aiohttp application: build it, then `app` serves it. Subclasses change `respond`."""

    def __init__(self, config: ServerConfig, gazetteer: Gazetteer | None = None):
        self.config = config
        self.gazetteer = gazetteer or (Gazetteer.from_listings(config.listings) if config.listings else Gazetteer.embedded())
        self._ids = itertools.count(1)
        self.app = web.Application(client_max_size=4 * 1024 * 1024)
        self.app.add_routes(
            [
                web.post("/v1/chat/completions", self.chat_completions),
                web.post("/chat/completions", self.chat_completions),
                web.get("/health", self.health),
            ]
        )

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "gazetteer_entries": len(self.gazetteer)})

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
            headline, symbol = split_user_message(next(m["content"] for m in reversed(body["messages"]) if m.get("role") == "user"))
        except (json.JSONDecodeError, KeyError, TypeError, StopIteration):
            return web.json_response({"error": "body must be JSON with messages ending in a user message"}, status=400)
        return await self.respond(request, body, headline, symbol)

    async def respond(self, request: web.Request, body: dict, headline: str, symbol: str | None) -> web.StreamResponse:
        """The answer to one well-formed request."""
        return self.completion(body, self.answer(*self.gazetteer.label(headline, symbol)), "stop")

    @staticmethod
    def answer(result: list[str], normalized: list[str]) -> str:
        """The message content the label job parses (`finner.label.Companies`)."""
        return json.dumps({"result": result, "normalized_result": normalized})

    def completion(self, body: dict, content: str, finish_reason: str) -> web.Response:
        """A chat-completions response carrying `content`, with usage counts."""
        prompt_tokens = approx_tokens(" ".join(str(m.get("content", "")) for m in body["messages"]))
        return web.json_response(
            {
                "id": f"chatcmpl-{next(self._ids)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model") or "gazetteer",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": approx_tokens(content),
                    "total_tokens": prompt_tokens + approx_tokens(content),
                },
            }
        )


def approx_tokens(text: str) -> int:
    """A tokenizer-free token count (about 4 characters a token), for usage figures."""
    return max(1, math.ceil(len(text) / 4))


# -- running it ----------------------------------------------------------------------------------


async def _start(server: ChatServer, host: str, port: int) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(server.app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=1024).start()
    return runner, runner.addresses[0][1]  # the bound port when port=0


@contextlib.contextmanager
def serve_chat(
    config: ServerConfig | None = None, *, host: str = "127.0.0.1", port: int = 0, in_subprocess: bool = False, server: type[ChatServer] = ChatServer
) -> Iterator[str]:
    """Serve `server` (built from `config`) while the block runs; yields its base URL (`http://127.0.0.1:PORT`).

    In a background thread by default; `in_subprocess=True` runs it in its own process (its own
    GIL: benchmarks use this so the server does not compete with the client being measured).
    """
    config = config or ServerConfig()
    if in_subprocess:
        yield from _serve_in_subprocess(server, config, host, port)
        return
    app = server(config)
    loop = asyncio.new_event_loop()
    started: dict = {}
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            started["runner"], started["port"] = loop.run_until_complete(_start(app, host, port))
        except BaseException as err:  # surfaced to the caller below
            started["error"] = err
        ready.set()
        if "error" not in started:
            loop.run_forever()

    thread = threading.Thread(target=run, name="chat-server", daemon=True)
    thread.start()
    ready.wait(30)
    if "error" in started:
        raise started["error"]
    try:
        yield f"http://{host}:{started['port']}"
    finally:
        asyncio.run_coroutine_threadsafe(started["runner"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def _serve_in_subprocess(server: type[ChatServer], config: ServerConfig, host: str, port: int) -> Iterator[str]:
    """`python -m <the server's module>` with `config` as flags; its `main` must be `main` below."""
    args = [sys.executable, "-m", server.__module__, "--host", host, "--port", str(port)]
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if value is not None:
            flag = "--" + f.name.replace("_", "-")
            args += [flag, *value] if isinstance(value, tuple) else [flag, str(value)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith(READY_PREFIX):
            raise RuntimeError(f"chat server did not start (exit code {proc.poll()}): {line!r}")
        yield line[len(READY_PREFIX) :].strip()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None, server: type[ChatServer] = ChatServer, config_class: type[ServerConfig] = ServerConfig) -> int:
    """Serve until interrupted; the first line printed is `READY_PREFIX` and the base URL."""
    module = sys.modules[server.__module__]
    name = module.__spec__.name if module.__spec__ else server.__module__  # run as __main__ by `python -m`
    p = argparse.ArgumentParser(prog=f"python -m {name}", description=(module.__doc__ or "").split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8089, help="0 picks a free port (printed on the first line)")
    add_config_args(p, config_class)
    args = p.parse_args(argv)
    app = server(config_from_args(config_class, args))

    async def serve() -> None:
        runner, bound = await _start(app, args.host, args.port)
        print(f"{READY_PREFIX}http://{args.host}:{bound}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
