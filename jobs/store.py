"""Look after the store's tables.

    python -m jobs.store migrate                  # convert a store of the previous layout to Delta tables, in place
    python -m jobs.store compact                  # compact every table's small files, vacuum past --retention-hours
    python -m jobs.store versions                 # each table's latest version and rows
"""

from __future__ import annotations

import sys

from finner.pipeline import cli
from finner.progress import say
from finner.store import legacy_tables, migrate, table_versions


def main(argv: list[str] | None = None) -> int:
    p = cli.parser("python -m jobs.store", __doc__.split("\n\n")[0])
    p.add_argument("command", choices=("migrate", "compact", "versions"), help="what to do")
    args = p.parse_args(argv)

    def body() -> None:
        store = cli.store_from(args)
        if args.command == "migrate":
            if not legacy_tables(store):
                say(f"nothing to migrate: no table of {store.root} is in the previous layout")
            for name, rows in migrate(store).items():
                say(f"{name}: {rows:,} rows, now a Delta table at version {store.version(name)}")
        elif args.command == "compact":
            for name in table_versions(store):
                done = store.compact(name)
                say(f"{name}: {done['files_removed']} files compacted into {done['files_added']}, {done['files_vacuumed']} vacuumed; version {store.version(name)}")
        else:
            for name, version in table_versions(store).items():
                say(f"{name}: version {version}, {store.dataset(name).count_rows():,} rows")

    return cli.run(body, args)


if __name__ == "__main__":
    sys.exit(main())
