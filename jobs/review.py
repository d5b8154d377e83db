"""Human review with Argilla: push the sample with suggestions, pull the gold table, show progress.

    python -m jobs.review serve     # a local Argilla (no Docker/Elasticsearch); prints URL + API key
    python -m jobs.review push      # sample (+ LLM / compact-model suggestions) -> one dataset per split
    python -m jobs.review status    # pending/submitted/discarded per split, LLM vs gold so far
    python -m jobs.review pull      # submitted/discarded responses -> gold table

push/pull/status read ARGILLA_API_URL, ARGILLA_API_KEY (and HF_TOKEN for a private HF Space).
"""

from __future__ import annotations

import argparse
import sys

from finner.config import add_config_args
from finner.errors import FinnerError
from finner.pipeline import cli
from finner.progress import say
from finner.review import Connection, ReviewConfig, connect, pull, push, server_errors, status_lines
from finner.review_server.launcher import DEFAULT_USERNAME, LocalArgilla, LocalArgillaConfig


def main(argv: list[str] | None = None) -> int:
    p = cli.parser("python -m jobs.review", __doc__.split("\n\n")[0])
    commands = p.add_subparsers(dest="command", required=True, metavar="{push,pull,status,serve}")
    for name, text in [
        ("push", "upsert the sample into Argilla, disagreement first"),
        ("pull", "rebuild the gold table from the submitted/discarded responses"),
        ("status", "review progress per split and LLM agreement with gold so far"),
    ]:
        add_config_args(commands.add_parser(name, help=text, formatter_class=argparse.ArgumentDefaultsHelpFormatter), ReviewConfig)
    serve = commands.add_parser("serve", help="run a local Argilla until Ctrl-C", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_config_args(serve, LocalArgillaConfig)
    args = p.parse_args(argv)

    def body(cfg: ReviewConfig | LocalArgillaConfig) -> int:
        if isinstance(cfg, LocalArgillaConfig):
            return _serve(cfg)
        conn = Connection.from_env()
        client = connect(conn)
        with server_errors(conn):
            if args.command == "push":
                say(push(cli.store_from(args), client, cfg).line())
            elif args.command == "pull":
                say(pull(cli.store_from(args), client, cfg).line())
            else:
                say("\n".join(status_lines(client, cfg)))
        return 0

    return cli.run(body, args, configs=(LocalArgillaConfig if args.command == "serve" else ReviewConfig,))


def _serve(cfg: LocalArgillaConfig) -> int:
    cli.stop_on_signals()  # Ctrl-C and `kill` stop the processes we started too
    with LocalArgilla(cfg) as argilla:
        say(f"Argilla is running at {argilla.url} (data in {argilla.home})")
        say(f"  UI login: {DEFAULT_USERNAME} / {cfg.password}")
        say(f"  export ARGILLA_API_URL={argilla.url} ARGILLA_API_KEY={argilla.api_key}")
        say("Press Ctrl-C to stop.")
        try:
            status = argilla.wait()
        except KeyboardInterrupt:
            say("stopping Argilla")
            return 0
    raise FinnerError(f"the Argilla server exited with status {status}; see {argilla.home}/server.log")


if __name__ == "__main__":
    sys.exit(main())
