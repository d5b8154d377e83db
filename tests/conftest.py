"""Shared fixtures: the real data in ../shared/data (read in place, never copied) and a temp store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from finner.store import Store
from tests.ray_cluster import ray_cluster  # noqa: F401 (a fixture, for every module)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
HEADLINES_PARQUET = SHARED_DATA / "benzinga_headlines.parquet"
COMPANY_LISTINGS = SHARED_DATA / "company_listings.csv"

# Ray 2.60's OpenTelemetry metrics thread once crashed a Ray Data actor mid-test (SIGSEGV in
# TemporalMetricStorage::buildMetrics); the tests read no Ray metric, so every Ray they start
# (in-process or `ray start` in a subprocess, which inherits this) runs without metrics collection.
os.environ.setdefault("RAY_enable_metrics_collection", "0")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under `pytest -n 2 --dist loadgroup` (`make test`) every slow test goes to one worker, where
    they run one at a time: each starts Ray, a server or a training run that wants both cores."""
    for item in items:
        if item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.xdist_group("slow"))


def require_shared() -> None:
    if not HEADLINES_PARQUET.exists():
        pytest.fail(f"real test data missing: {HEADLINES_PARQUET} (tests read ../shared/data beside the repo)")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(str(tmp_path / "store"))


@pytest.fixture(scope="session")
def real_headlines_path() -> Path:
    require_shared()
    return HEADLINES_PARQUET


@pytest.fixture(scope="session")
def company_listings_path() -> Path:
    require_shared()
    return COMPANY_LISTINGS


def run_module(module: str, *args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `python -m module args` from the repo root, as a user would, capturing output."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def kill_group(job: subprocess.Popen, timeout: float = 60) -> None:
    """SIGKILL a job started with `start_new_session=True` and every process of its group (the
    Ray processes it started), and wait until none is left (no late writer can race a re-run)."""
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(job.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    raise AssertionError(f"processes of group {job.pid} still alive {timeout}s after SIGKILL")
