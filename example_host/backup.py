"""The operator's copy commands of `python -m example_host` (see docs/operations.md):

python -m example_host backup PATH [--database URL]
python -m example_host dump FILE [--database URL]
python -m example_host load FILE [--replace] [--database URL]

`backup` copies a live SQLite file (SQLite's online backup API: one snapshot, writers go on).
`dump` writes everything the store keeps and the host's own tables (platforms, users,
memberships, token hashes) from one snapshot, in the package's dump format
(`starlette_platform_metadata.dumps`), on SQLite or PostgreSQL alike; `load` writes a dump
into a database in one transaction, refusing one that holds data unless `--replace`.  A dump
from SQLite loads into PostgreSQL and back: that is how a host moves between them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from starlette_platform_metadata import DatabaseStore, dumps
from starlette_platform_metadata.stores.dumps import DumpError, NotEmpty, Table

from .db import HostDB
from .redact import redact_url

__all__ = ["COMMANDS", "HOST_TABLES", "add_parsers"]

#: The host's own tables, as a dump carries them: parents first (a load inserts in this
#: order).  Tokens are their SHA-256 hashes (db.py): a dump holds no working token, and a
#: load restores every token that worked before.
HOST_TABLES = (
    Table(
        "platforms",
        ("id", "key", "created_at"),
        key=("id",),
        timestamps=frozenset({"created_at"}),
        identity="id",
    ),
    Table(
        "users",
        ("id", "username", "created_at"),
        key=("id",),
        timestamps=frozenset({"created_at"}),
        identity="id",
    ),
    Table(
        "memberships",
        ("user_id", "platform_id", "is_admin"),
        key=("user_id", "platform_id"),
        booleans=frozenset({"is_admin"}),
    ),
    Table(
        "tokens",
        ("key_hash", "user_id", "created_at"),
        key=("key_hash",),
        timestamps=frozenset({"created_at"}),
    ),
)


def add_parsers(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    """Add `backup`, `dump` and `load` to `python -m example_host`'s parser."""
    backup = commands.add_parser(
        "backup",
        parents=parents,
        help="copy a live SQLite database to PATH, consistently, while it serves",
        description=(
            "Copy the SQLite database to PATH (which must not exist) with SQLite's online "
            "backup API: the copy is the database as one commit left it, while writers go "
            "on. On PostgreSQL use pg_dump, or `dump` (docs/operations.md)."
        ),
    )
    backup.add_argument("path", metavar="PATH")
    dump = commands.add_parser(
        "dump",
        parents=parents,
        help="write everything (metadata, history, policies, users, tokens) to FILE",
        description=(
            "Write every record, kept revision, policy and change clock, and the host's "
            "platforms, users, memberships and token hashes, from one snapshot, as NDJSON to "
            "FILE (which must not exist; `-` for stdout)."
        ),
    )
    dump.add_argument("file", metavar="FILE")
    load = commands.add_parser(
        "load",
        parents=parents,
        help="load a dump into an empty database, all or nothing",
        description=(
            "Load FILE (a `dump`; `-` for stdin) into the database in one transaction: "
            "exactly as dumped, versions and history included. Refuses a database that "
            "holds data unless --replace, which empties it first, in the same transaction."
        ),
    )
    load.add_argument("file", metavar="FILE")
    load.add_argument(
        "--replace",
        action="store_true",
        help="empty the metadata and host tables first (stop every server of it before)",
    )


async def backup(url: str, args: argparse.Namespace) -> int:
    store = DatabaseStore(url)
    if store.dialect != "sqlite":
        print(
            "error: backup copies a SQLite database file; on PostgreSQL use pg_dump (or "
            "pg_basebackup with WAL archiving), or `python -m example_host dump FILE`: "
            "see docs/operations.md",
            file=sys.stderr,
        )
        return 2
    try:
        await store.backup(args.path)
    except (FileExistsError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Backed up {redact_url(url)} to {args.path}.", file=sys.stderr)
    return 0


async def dump(url: str, args: argparse.Namespace) -> int:
    target = None if args.file == "-" else Path(args.file)
    if target is not None and target.exists():
        print(f"error: {target} already exists: remove it or choose another", file=sys.stderr)
        return 1
    async with HostDB(url), DatabaseStore(url) as store:  # both sets of tables, created
        if target is None:
            count = await dumps.dump(store, sys.stdout.buffer, tables=HOST_TABLES)
            sys.stdout.buffer.flush()
        else:
            # Written aside and renamed once complete: FILE is a whole dump or absent.
            partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
            try:
                with partial.open("xb") as out:
                    count = await dumps.dump(store, out, tables=HOST_TABLES)
                    out.flush()
                    os.fsync(out.fileno())  # on disk before it takes FILE's name
                os.replace(partial, target)
            finally:
                partial.unlink(missing_ok=True)
    print(f"dumped {count} rows", file=sys.stderr)
    return 0


async def load(url: str, args: argparse.Namespace) -> int:
    async with HostDB(url), DatabaseStore(url) as store:
        try:
            if args.file == "-":
                count = await _load(store, sys.stdin.buffer, args.replace)
            else:
                with open(args.file, "rb") as source:
                    count = await _load(store, source, args.replace)
        except NotEmpty as exc:
            print(f"error: {exc}; nothing was loaded (--replace empties it first)", file=sys.stderr)
            return 1
        except DumpError as exc:
            print(f"error: {args.file}: {exc}; nothing was loaded", file=sys.stderr)
            return 1
    print(f"loaded {count} rows", file=sys.stderr)
    return 0


async def _load(store: DatabaseStore, source: Any, replace: bool) -> int:
    return await dumps.load(store, source, replace=replace, tables=HOST_TABLES)


#: The commands by name: `await COMMANDS[name](database_url, args)` is the exit status.
COMMANDS: dict[str, Callable[[str, argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "backup": backup,
    "dump": dump,
    "load": load,
}
