"""The operator's backup commands of `python -m example_host` (see docs/example_host.md):

python -m example_host export --platform KEY [--filter JSON] [--database URL]
python -m example_host import --platform KEY FILE [--database URL]

Both run the package's own listing code (`PlatformMetadataApp.export_records` /
`.import_records`), the code behind `GET` and `POST <mount>/users/`, without HTTP: the same
NDJSON, members only, the schema, size limit and history of a PUT.  An import by this command
has no user behind it: its revisions carry `actor` null.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Collection, Coroutine, Sequence
from pathlib import Path
from typing import Any

from starlette_platform_metadata import DatabaseStore, Limits, PlatformMetadataApp
from starlette_platform_metadata.errors import ApiError
from starlette_platform_metadata.history import DEFAULT_HISTORY_PER_USER
from starlette_platform_metadata.listing import ImportRefused, parse_filter

from .app import HISTORY_ENV
from .auth import TokenAuthBackend
from .db import HostDB

__all__ = ["COMMANDS", "add_parsers"]


def add_parsers(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    """Add `export` and `import` to `python -m example_host`'s parser."""
    export = commands.add_parser(
        "export",
        parents=parents,
        help="print a platform's stored metadata as NDJSON (members only)",
        description=(
            "Write every stored document of the platform's members to stdout, one "
            "success body per line (as GET renders it), by username."
        ),
    )
    export.add_argument("--platform", required=True, metavar="KEY")
    export.add_argument(
        "--filter", metavar="JSON", help='only documents with these top-level values, e.g. \'{"plan": "pro"}\''
    )
    load = commands.add_parser(
        "import",
        parents=parents,
        help="replace members' metadata from NDJSON, all or nothing",
        description=(
            "Read FILE (`-` for stdin), one {\"username\": ..., \"metadata\": {...}} per line "
            "(an export's lines work as they are), and replace each user's document as a "
            "tenant admin's PUT would, all in one transaction: prints `imported N`, or each "
            "bad line and exits 1 having written nothing."
        ),
    )
    load.add_argument("file", metavar="FILE")
    load.add_argument("--platform", required=True, metavar="KEY")


def _app(db: HostDB, store: DatabaseStore) -> PlatformMetadataApp:
    history = int(os.environ.get(HISTORY_ENV) or DEFAULT_HISTORY_PER_USER)
    return PlatformMetadataApp(
        auth=TokenAuthBackend(db), store=store, openapi=False, history_per_user=history
    )


def _members(db: HostDB, platform: str) -> Callable[[Sequence[str]], Coroutine[Any, Any, Collection[str]]]:
    async def members(usernames: Sequence[str]) -> Collection[str]:
        return await db.members_among(platform, usernames)

    return members


async def export(url: str, args: argparse.Namespace) -> int:
    filter = None
    if args.filter is not None:
        try:
            filter = parse_filter(args.filter.encode(), Limits())
        except ApiError as exc:
            print(f"error: --filter: {exc.body['filter'][0]}", file=sys.stderr)
            return 2
    async with HostDB(url) as db, DatabaseStore(url) as store:
        await db.members(args.platform)  # UnknownPlatform: the caller's one-line error
        out = sys.stdout.buffer
        chunks = _app(db, store).export_records(
            args.platform, filter=filter, members=_members(db, args.platform)
        )
        async for chunk in chunks:
            out.write(chunk)
        out.flush()
    return 0


async def import_(url: str, args: argparse.Namespace) -> int:
    body = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    async with HostDB(url) as db, DatabaseStore(url) as store:
        await db.members(args.platform)
        try:
            count = await _app(db, store).import_records(
                args.platform, body, actor=None, members=_members(db, args.platform)
            )
        except ImportRefused as exc:
            for line, messages in exc.lines.items():
                for message in messages:
                    print(f"line {line}: {message}", file=sys.stderr)
            print("error: nothing was imported", file=sys.stderr)
            return 1
    print(f"imported {count}")
    return 0


#: The commands by name: `await COMMANDS[name](database_url, args)` is the exit status.
COMMANDS: dict[str, Callable[[str, argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "export": export,
    "import": import_,
}
