"""Command line: `python -m starlette_platform_metadata schema --database URL [--table NAME]`.

Prints the DDL that `DatabaseStore` runs on first use, for deployments that create tables ahead
of time and run the store with `create_tables=False`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .stores.sql import DatabaseStore


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m starlette_platform_metadata")
    commands = parser.add_subparsers(dest="command", required=True)
    schema = commands.add_parser("schema", help="print the SQL that creates the tables")
    schema.add_argument(
        "--database",
        default=os.environ.get("DATABASE_URL", "sqlite:///platform_metadata.db"),
        help="database URL (default: $DATABASE_URL, else sqlite:///platform_metadata.db)",
    )
    schema.add_argument("--table", default="platform_metadata", help="table name")
    args = parser.parse_args(argv)
    try:
        store = DatabaseStore(args.database, table=args.table, create_tables=False)
    except (ValueError, ImportError) as exc:
        parser.error(str(exc))
    for statement in store.schema():
        print(f"{statement};")
    return 0


if __name__ == "__main__":
    sys.exit(main())
