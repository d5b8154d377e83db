"""What every entry point shares: the store flag, Ray start-up, and one-line failures."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from finner.config import default_store
from finner.errors import FinnerError
from finner.store import Store


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An argparse parser that already has `--store`."""
    p = argparse.ArgumentParser(prog=prog, description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--store", default=default_store(), help="store root: a local path or a URI such as s3://bucket/finner ($FINNER_STORE)")
    return p


def store_from(args: argparse.Namespace) -> Store:
    return Store(args.store)


def init_ray() -> None:
    """Join the cluster a `ray job submit` runs in ($RAY_ADDRESS), else start a local Ray in-process."""
    import ray

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), ignore_reinit_error=True, log_to_driver=True, logging_level="WARNING")


def run(main: Callable[[], int | None]) -> int:
    """Run a job body; a `FinnerError` becomes `error: <message>` on stderr and exit status 2."""
    try:
        return main() or 0
    except FinnerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
