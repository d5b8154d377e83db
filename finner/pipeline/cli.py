"""What every entry point shares: the store flag, one way to report bad input, quiet runs with a
log file, Ray start-up, and stopping on a signal.

Every job's body runs through `run`: a `FinnerError` (bad input, a config value out of range as
`ConfigError`, an unreachable server) becomes one `error: ...` line on stderr and exit status 2,
never a traceback; argparse's own errors read the same (`error: --flag: ...`). Unless `--verbose`,
the body's stdout and stderr (Ray, the HF Trainer, library warnings) go to `<store>/logs/<stage>.log`
and only the stage's own lines, its progress bar and the log's path reach the terminal. A stage's
run leaves `_meta/<stage>_versions.json`: the table versions it read and the ones it committed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence

from finner.artifacts import LOGS_DIR, versions_key
from finner.config import add_config_args, config_from_args, default_store
from finner.errors import FinnerError
from finner.progress import quiet_output, say
from finner.store import Store, StoreConfig, table_versions


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the jobs' error format: one `error: --flag: ...` line, exit 2, no usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message.removeprefix('argument ')}", file=sys.stderr)
        sys.exit(2)


def parser(prog: str, description: str) -> ArgumentParser:
    """An argument parser that already has `--store` and `--verbose`."""
    p = ArgumentParser(prog=prog, description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--store", default=default_store(), help="store root: a local path or a URI such as s3://bucket/finner ($FINNER_STORE)")
    p.add_argument("--verbose", action="store_true", help="show everything (Ray, Trainer and worker output) instead of writing it to <store>/logs/<stage>.log")
    add_config_args(p, StoreConfig)
    return p


def store_from(args: argparse.Namespace) -> Store:
    """The job's store: one instance per parsed command line, so what it read covers the whole job."""
    if getattr(args, "_store", None) is None:
        args._store = Store(args.store, config_from_args(StoreConfig, args))
    return args._store


def record_versions(store: Store, stage: str, before: dict[str, int]) -> None:
    """Store what a stage's run read and changed: the version of each table it read first, and
    each table whose version moved (its workers' commits included) with the versions either side."""
    after = table_versions(store)
    wrote = {name: {"from": before.get(name), "to": version} for name, version in after.items() if before.get(name) != version}
    finished = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    store.put_json(versions_key(stage), {"stage": stage, "finished_at": finished, "read": store.versions_read, "wrote": wrote})


def log_path(args: argparse.Namespace, stage: str) -> str:
    """`<store>/logs/<stage>.log` for a local store; a local temp file for an object store."""
    store = store_from(args)
    location = store.artifact(LOGS_DIR, f"{stage}.log")
    if "://" in location:
        location = os.path.join(tempfile.gettempdir(), "finner-logs", f"{stage}.log")
        os.makedirs(os.path.dirname(location), exist_ok=True)
    return location


def stop_on_signals() -> None:
    """Ctrl-C and `kill` (SIGTERM) both raise KeyboardInterrupt, so the `with` blocks of a process
    that started servers or clusters stop them. SIGINT is set as well: a process a non-interactive
    shell starts in the background inherits SIGINT ignored (Python then never raises
    KeyboardInterrupt), and an imported library may have installed a handler of its own."""
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, _interrupt)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def init_ray() -> None:
    """Join the cluster a `ray job submit` runs in ($RAY_ADDRESS), else start a local Ray in-process."""
    import ray

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), ignore_reinit_error=True, log_to_driver=True, logging_level="WARNING")


def run(body: Callable[..., int | None], args: argparse.Namespace | None = None, stage: str = "", configs: Sequence[type] = ()) -> int:
    """Run a job: build its `configs` from `args` (a value out of range stops here, before the
    store is touched), then call `body(*configs)`. A `FinnerError` becomes `error: <message>` on
    stderr and exit status 2. With `stage` and without `--verbose`, the body's other output goes
    to the stage's log file, and the table versions it read and wrote to `_meta` (`record_versions`)."""
    try:
        built = [config_from_args(cls, args) for cls in configs]
        store = store_from(args) if args is not None else None  # a bad --store or --retention-hours stops here too
        if store is None or not stage:
            return body(*built) or 0
        before = table_versions(store)
        if args.verbose:
            status = body(*built) or 0
        else:
            path = log_path(args, stage)
            with quiet_output(path):
                say(f"{stage}: details in {path}")
                status = body(*built) or 0
        record_versions(store, stage, before)
        return status
    except FinnerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
