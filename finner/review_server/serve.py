"""Prepare the database and run the stock argilla-server with the SQL search engine registered.

    <argilla-server python> finner/review_server/serve.py --host 127.0.0.1 --port 6900 --graceful-shutdown-s 1

Started by `finner.review_server.launcher.LocalArgilla`, which sets the environment
(ARGILLA_DATABASE_URL, ARGILLA_REDIS_URL, ARGILLA_SEARCH_ENGINE=sql, and the owner's
FINNER_ARGILLA_API_KEY / FINNER_ARGILLA_PASSWORD). Run as a script path so that only this
folder, not finner and its heavy dependencies, is importable here. Migration and the default
user come from the server's own CLI functions, called in this process: importing
argilla-server once instead of three times saves most of the start-up time on a small machine.
"""

import argparse
import asyncio
import os

import sql_search  # noqa: F401  (registers the "sql" engine before the app starts)
import uvicorn


def prepare_database() -> None:
    """`database migrate`, then `database users create_default` (a no-op when the user exists)."""
    from argilla_server.cli.database.migrate import migrate_db
    from argilla_server.cli.database.users.create_default import _create_default
    from argilla_server.database import async_engine

    migrate_db(revision="head")

    async def create_owner() -> None:
        await _create_default(os.environ["FINNER_ARGILLA_API_KEY"], os.environ["FINNER_ARGILLA_PASSWORD"], quiet=True)
        await async_engine.dispose()  # its connections belong to this event loop, not uvicorn's

    asyncio.run(create_owner())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=6900)
    p.add_argument("--graceful-shutdown-s", type=float, default=1.0, help="seconds in-flight requests get on shutdown before they are cancelled")
    args = p.parse_args()
    prepare_database()
    from argilla_server._app import app

    # One process, no reload, quiet access log: the review server shares small machines.
    # Shutdown is bounded: uvicorn would otherwise wait for every open request (a browser tab's) to end.
    uvicorn.run(app, host=args.host, port=args.port, workers=1, log_level="warning", access_log=False,
                timeout_graceful_shutdown=args.graceful_shutdown_s)


if __name__ == "__main__":
    main()
