"""A real local Ray cluster for end-to-end tests: `ray start --head`, `ray job submit`, teardown.

The head runs as `ray start --head --block` in its own process session, on free ports and its own
`--temp-dir`, so it never collides with another Ray on the machine (nor does a plain `ray.init()`
elsewhere join it: the address file lives in our temp dir). Token authentication is on, with a
token of our own (`RAY_AUTH_TOKEN`): Ray 2.60 turns it on anyway once ~/.ray/auth_token exists,
so the tests behave the same whether or not an earlier local `ray.init()` left that file behind.
Teardown stops our unfinished jobs with `ray job stop`, then ends exactly the processes this
harness started, by process-group id; it never runs `ray stop`, which would kill every Ray
process on the machine.

    with LocalRayCluster() as cluster:
        run = cluster.run("jobs.ingest", "--store", store, "--path", feed, runtime_env="runtime_env/curate.yaml")
        assert run.status == "SUCCEEDED", run.logs
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from finner.review_server.launcher import free_port

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})


@dataclass(frozen=True)
class JobRun:
    """How a submitted job ended: its submission id, terminal status and full driver log."""

    submission_id: str
    status: str
    logs: str


class LocalRayCluster:
    """One Ray head on this machine, driven only through the `ray` CLI and the job REST API.

    `autoscaling_config` (a cluster-launcher config such as tests/fake_cluster.yaml, whose
    `fake_multinode` provider starts worker "nodes" as local processes) turns on the autoscaler;
    `env` adds variables to the head's environment (every worker and job driver inherits them,
    as on a real cluster).
    """

    def __init__(self, num_cpus: int = 2, autoscaling_config: dict | None = None, env: dict[str, str] | None = None, start_timeout: float = 120):
        self.num_cpus = num_cpus
        self.autoscaling_config = autoscaling_config
        self.extra_env = env or {}
        self.start_timeout = start_timeout
        self.gcs_port = free_port()
        self.dashboard_port = free_port()
        self.address = f"http://127.0.0.1:{self.dashboard_port}"
        self.auth_token = secrets.token_hex(32)
        self._head: subprocess.Popen | None = None
        self._temp_dir: str | None = None
        self._submitted: list[str] = []

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> LocalRayCluster:
        # Short path: Ray's unix sockets live under the temp dir and must stay below 107 chars.
        self._temp_dir = tempfile.mkdtemp(prefix="finner-ray-", dir="/tmp")
        cmd = [
            RAY, "start", "--head", "--block", "--disable-usage-stats",
            "--num-cpus", str(self.num_cpus), "--num-gpus", "0",
            "--port", str(self.gcs_port),
            "--dashboard-host", "127.0.0.1", "--dashboard-port", str(self.dashboard_port),
            "--dashboard-agent-listen-port", str(free_port()),
            "--ray-client-server-port", str(free_port()),
            "--temp-dir", self._temp_dir,
        ]  # fmt: skip
        env = {**self.env(), **self.extra_env}
        if self.autoscaling_config:
            cmd.append(f"--autoscaling-config={self._write_autoscaling_config()}")
            # The fake provider refuses to run without RAY_FAKE_CLUSTER; 1 s autoscaler rounds keep tests short.
            env.update(RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1")
        self._head_log = open(Path(self._temp_dir) / "head.log", "w")
        self._head = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=self._head_log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _write_autoscaling_config(self) -> Path:
        """The config with the fake provider pointed at this head's GCS port (it assumes 6379 otherwise)."""
        import ray._private.services

        config = json.loads(json.dumps(self.autoscaling_config))
        if config["provider"]["type"] == "fake_multinode":
            config["provider"]["gcs_address"] = f"{ray._private.services.get_node_ip_address()}:{self.gcs_port}"
        path = Path(self._temp_dir) / "autoscaling.yaml"
        path.write_text(json.dumps(config))
        return path

    def env(self) -> dict[str, str]:
        """The environment of the head and of our `ray` CLI calls.

        As on a cluster node, `python` on PATH is the interpreter with finner installed.
        """
        return {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONUNBUFFERED": "1",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self.auth_token,
            # Ray's own state-API calls from workers (Ray Train's placement-group cleaner) find
            # this head, not "multiple active Ray instances" when other Rays run on the machine.
            "RAY_API_SERVER_ADDRESS": self.address,
        }

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._head.poll() is not None:
                raise RuntimeError(f"ray start exited with {self._head.returncode}:\n{self.head_log()}")
            try:
                self._api("/api/jobs/")
                return
            except (OSError, RuntimeError):
                pass
            time.sleep(1)
        raise TimeoutError(f"Ray head not ready after {self.start_timeout}s:\n{self.head_log()}")

    def head_log(self) -> str:
        return (Path(self._temp_dir) / "head.log").read_text() if self._temp_dir else ""

    def stop(self) -> None:
        """Stop our unfinished jobs, then end the head's process group (SIGTERM, then SIGKILL)."""
        if self._head is None:
            return
        stuck_drivers: list[int] = []
        if self._head.poll() is None:
            for sid in self._submitted:
                pid = None
                try:
                    if self.status(sid) in TERMINAL:
                        continue
                    pid = self.driver_pid(sid)
                    self.stop_job(sid)
                except (OSError, RuntimeError, TimeoutError):
                    stuck_drivers += [pid] if pid else []
        group = self._head.pid  # start_new_session: the group id is the head's pid
        _signal_group(group, signal.SIGTERM)
        try:  # `ray start --block` often outlives SIGTERM: a few seconds, then SIGKILL (a test's temp cluster)
            self._head.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        _signal_group(group, signal.SIGKILL)
        self._head.wait()
        for pid in stuck_drivers:  # a job driver runs in its own session (Ray's job supervisor)
            try:
                _signal_group(os.getpgid(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._head_log.close()
        self._head = None
        shutil.rmtree(self._temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalRayCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- jobs --------------------------------------------------------------------------------

    def submit(self, module: str, *args: str, runtime_env: str | None = None, env_vars: dict[str, str] | None = None, submission_id: str | None = None) -> str:
        """`ray job submit --no-wait ... -- python -m module args` from the repo root; returns the submission id.

        `runtime_env` is a YAML path relative to the repo (passed with `--runtime-env`, as a user
        would); `env_vars` (secrets such as ARGILLA_API_KEY) are merged into it the way the README
        tells users to: `--runtime-env-json "$(python -m finner.pipeline.runtime_env FILE)"`.
        """
        sid = submission_id or f"{module.rsplit('.', 1)[-1]}-{time.time_ns()}"
        cmd = [RAY, "job", "submit", "--address", self.address, "--submission-id", sid, "--no-wait"]
        if env_vars:
            from finner.pipeline.runtime_env import runtime_env_with_secrets

            spec = runtime_env_with_secrets(REPO / runtime_env, environ=env_vars, forward=tuple(env_vars)) if runtime_env else {"env_vars": env_vars}
            cmd += ["--runtime-env-json", json.dumps(spec)]
        elif runtime_env:
            cmd += ["--runtime-env", runtime_env]
        cmd += ["--", "python", "-m", module, *args]
        done = subprocess.run(cmd, cwd=REPO, env=self.env(), capture_output=True, text=True, timeout=120)
        if done.returncode:
            raise RuntimeError(f"ray job submit failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        self._submitted.append(sid)
        return sid

    def wait(self, submission_id: str, timeout: float = 300, until: frozenset[str] = TERMINAL) -> JobRun:
        """Poll the job until its status is in `until`; on timeout stop it and raise with its log."""
        deadline = time.monotonic() + timeout
        while (status := self.status(submission_id)) not in until:
            if time.monotonic() > deadline:
                logs = self.logs(submission_id)
                self._request_stop(submission_id)
                raise TimeoutError(f"job {submission_id} still {status} after {timeout}s; log:\n{logs[-5000:]}")
            time.sleep(1)
        return JobRun(submission_id, status, self.logs(submission_id))

    def wait_for_log(self, submission_id: str, text: str, timeout: float = 300) -> str:
        """Poll the job's log until it contains `text` (e.g. a stage's progress line), then return the log.

        For kill-and-resume tests: wait for proof of partial progress, then `stop_job`.
        """
        deadline = time.monotonic() + timeout
        while text not in (logs := self.logs(submission_id)):
            if (status := self.status(submission_id)) in TERMINAL or time.monotonic() > deadline:
                raise AssertionError(f"job {submission_id} ({status}) never logged {text!r}; log:\n{logs[-5000:]}")
            time.sleep(0.5)
        return logs

    def run(self, module: str, *args: str, timeout: float = 300, **submit_kwargs) -> JobRun:
        """Submit and wait for a terminal status."""
        return self.wait(self.submit(module, *args, **submit_kwargs), timeout=timeout)

    def status(self, submission_id: str) -> str:
        return self._api(f"/api/jobs/{submission_id}")["status"]

    def logs(self, submission_id: str) -> str:
        return self._api(f"/api/jobs/{submission_id}/logs")["logs"]

    def stop_job(self, submission_id: str, timeout: float = 60) -> str:
        """`ray job stop` (SIGTERM to the driver's process group, then SIGKILL); returns the final status."""
        self._request_stop(submission_id)
        return self.wait(submission_id, timeout=timeout).status

    def _request_stop(self, submission_id: str) -> None:
        subprocess.run([RAY, "job", "stop", "--address", self.address, "--no-wait", submission_id], env=self.env(), capture_output=True, text=True, timeout=60)

    # -- cluster state -----------------------------------------------------------------------

    def ray_status(self) -> str:
        """`ray status` output: nodes by type, pending launches, resource usage and demands."""
        done = subprocess.run([RAY, "status", "--address", f"127.0.0.1:{self.gcs_port}"], env=self.env(), capture_output=True, text=True, timeout=60)
        return done.stdout + done.stderr

    def nodes(self) -> list[dict]:
        """Every node the cluster has had, from the state API (`/api/v0/nodes`): `node_id`, `state`
        (ALIVE or DEAD), `resources_total`, `labels`."""
        return self._api("/api/v0/nodes?limit=100&detail=true")["data"]["result"]["result"]

    def actors(self) -> list[dict]:
        """Every actor the cluster has had, from the state API: `class_name`, `state`, `node_id`."""
        return self._api("/api/v0/actors?limit=1000&detail=true")["data"]["result"]["result"]

    def _api(self, path: str) -> dict:
        try:
            request = urllib.request.Request(self.address + path, headers={"Authorization": f"Bearer {self.auth_token}"})
            with urllib.request.urlopen(request, timeout=30) as r:
                return json.load(r)
        except urllib.error.HTTPError as err:
            raise RuntimeError(f"GET {path}: HTTP {err.code} {err.read()[:500]!r}") from None

    def driver_pid(self, submission_id: str) -> int | None:
        """The pid of the job's driver (set once the entrypoint has connected to Ray)."""
        info = self._api(f"/api/jobs/{submission_id}").get("driver_info") or {}
        return int(info["pid"]) if info.get("pid") else None


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture(scope="module")
def ray_cluster():
    """A 2-CPU local Ray head shared by the tests of one module (every module's, through conftest)."""
    with LocalRayCluster() as cluster:
        yield cluster
