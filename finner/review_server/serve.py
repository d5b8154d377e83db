"""Run the stock argilla-server with the SQL search engine registered (argilla-server's Python).

    <argilla-server python> finner/review_server/serve.py --host 127.0.0.1 --port 6900

Started by `finner.review_server.launcher.LocalArgilla`, which sets the environment
(ARGILLA_DATABASE_URL, ARGILLA_REDIS_URL, ARGILLA_SEARCH_ENGINE=sql...). Run as a script
path so that only this folder, not finner and its heavy dependencies, is importable here.
"""

import argparse

import sql_search  # noqa: F401  (registers the "sql" engine before the app starts)
import uvicorn


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=6900)
    args = p.parse_args()
    from argilla_server._app import app

    # One process, no reload, quiet access log: the review server shares small machines.
    uvicorn.run(app, host=args.host, port=args.port, workers=1, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
