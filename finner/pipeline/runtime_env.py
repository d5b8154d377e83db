"""Runtime envs for `ray job submit`: a checked-in YAML plus the secrets of the submitting shell.

`ray job submit` does not forward the submitting shell's environment to the job, and it takes
`--runtime-env FILE` or `--runtime-env-json JSON`, not both. Secrets never go into the files under
`runtime_env/`; this prints a file's runtime env as JSON with the secrets set in the caller's
environment added to its `env_vars`:

    ray job submit --runtime-env-json "$(python -m finner.pipeline.runtime_env runtime_env/label.yaml)" \\
        -- python -m jobs.label ...

Values passed this way are visible to anyone who can list the cluster's jobs (the dashboard shows
each job's runtime env); on a shared cluster set the secrets in the nodes' environment instead
(every job inherits the environment `ray start` ran in).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from finner.config import STORE_ENV
from finner.errors import FinnerError
from finner.pipeline import cli

# Never written into a runtime_env file; forwarded from the submitting shell when set.
SECRET_ENV_VARS = ("HF_TOKEN", "ARGILLA_API_KEY")
# Forwarded too: where the Argilla server and the store are.
FORWARDED_ENV_VARS = SECRET_ENV_VARS + ("ARGILLA_API_URL", STORE_ENV)


def load_runtime_env(path: str | Path) -> dict:
    """A runtime_env YAML as a dict; a file that holds a secret is refused."""
    try:
        spec = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise FinnerError(f"cannot read runtime env {path}: {err}") from None
    if not isinstance(spec, dict):
        raise FinnerError(f"runtime env {path}: expected a mapping at the top level, got {type(spec).__name__}")
    leaked = sorted(set(spec.get("env_vars") or {}) & set(SECRET_ENV_VARS))
    if leaked:
        raise FinnerError(f"runtime env {path}: secrets {', '.join(leaked)} must come from the environment, not the file")
    return spec


def runtime_env_with_secrets(path: str | Path, environ: Mapping[str, str] = os.environ, forward: Sequence[str] = FORWARDED_ENV_VARS) -> dict:
    """The file's runtime env with every variable of `forward` that is set in `environ` added to `env_vars`."""
    spec = load_runtime_env(path)
    env_vars = dict(spec.get("env_vars") or {})
    env_vars.update({name: environ[name] for name in forward if environ.get(name)})
    return {**spec, "env_vars": env_vars} if env_vars else spec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m finner.pipeline.runtime_env", description=__doc__.split("\n\n")[0])
    p.add_argument("path", help="a runtime env YAML, e.g. runtime_env/label.yaml")
    p.add_argument("--forward", nargs="*", default=list(FORWARDED_ENV_VARS), metavar="NAME", help="environment variables to copy into env_vars when set")
    args = p.parse_args(argv)
    return cli.run(lambda: print(json.dumps(runtime_env_with_secrets(args.path, forward=args.forward))))


if __name__ == "__main__":
    sys.exit(main())
