"""The operator's user commands of `python -m example_host` (see docs/example_host.md):

python -m example_host add-users --platform KEY FILE [--admin] [--database URL]
python -m example_host list-users --platform KEY [--database URL]
python -m example_host remove-user USERNAME --platform KEY [--database URL]
python -m example_host revoke-token (TOKEN | --user USERNAME) [--database URL]

Each runs on `HostDB`, whose triggers move the generation counter: a running server sees the
change on its next request (PostgreSQL: once the change's NOTIFY arrived), whatever it had
cached.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TextIO

from .db import HostDB, UnknownUser

__all__ = ["COMMANDS", "add_parsers", "parse_user_lines"]


class BadUserLine(ValueError):
    """A line of an `add-users` file that names no user, or names one twice."""


def parse_user_lines(lines: TextIO, *, admin: bool = False) -> list[tuple[str, bool]]:
    """`(username, admin)` for each line `USERNAME [--admin]` of `lines`.

    Blank lines and lines starting with `#` are skipped; `admin` makes every user an admin.

    Raises:
        BadUserLine: naming the first bad line (counted from 1); nothing should be written.
    """
    users: list[tuple[str, bool]] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        username, flags = fields[0], fields[1:]
        if flags not in ([], ["--admin"]):
            raise BadUserLine(f"line {number}: expected `USERNAME` or `USERNAME --admin`")
        if not username.isprintable():
            raise BadUserLine(f"line {number}: the username has a control character")
        if username in seen:
            raise BadUserLine(f"line {number}: {username} is already on line {seen[username]}")
        seen[username] = number
        users.append((username, admin or bool(flags)))
    return users


def add_parsers(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    """Add this module's subcommands to `python -m example_host`'s parser."""
    many = commands.add_parser(
        "add-users",
        parents=parents,
        help="add many users in one transaction; prints `username token` lines",
        description=(
            "Create users (or update their membership) from FILE, one `USERNAME` or "
            "`USERNAME --admin` per line (`-` for stdin; blank lines and # comments are "
            "skipped), all or nothing, and print `USERNAME TOKEN` for each."
        ),
    )
    many.add_argument("file", metavar="FILE")
    many.add_argument("--platform", required=True, metavar="KEY")
    many.add_argument("--admin", action="store_true", help="make every user a tenant admin")

    listing = commands.add_parser(
        "list-users", parents=parents, help="print a platform's members: `username role` lines"
    )
    listing.add_argument("--platform", required=True, metavar="KEY")

    remove = commands.add_parser(
        "remove-user",
        parents=parents,
        help="end a user's membership of a platform (its metadata stays stored)",
    )
    remove.add_argument("username", metavar="USERNAME")
    remove.add_argument("--platform", required=True, metavar="KEY")

    revoke = commands.add_parser(
        "revoke-token",
        parents=parents,
        help="revoke one API token, or every token of a user (--user)",
    )
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("token", metavar="TOKEN", nargs="?", help="the token to revoke")
    which.add_argument("--user", metavar="USERNAME", help="revoke every token of this user")


async def _add_users(url: str, args: argparse.Namespace) -> int:
    try:
        if args.file == "-":
            users = parse_user_lines(sys.stdin, admin=args.admin)
        else:
            with open(args.file, encoding="utf-8") as file:
                users = parse_user_lines(file, admin=args.admin)
    except BadUserLine as exc:
        print(f"error: {args.file}: {exc}; nothing was changed", file=sys.stderr)
        return 1
    async with HostDB(url) as db:
        tokens = await db.add_users(args.platform, users)
    for (username, _), token in zip(users, tokens, strict=True):
        print(username, token)
    admins = sum(admin for _, admin in users)
    print(
        f"{len(users)} users on {args.platform} ({admins} tenant admins), "
        "one new API token each.",
        file=sys.stderr,
    )
    return 0


async def _list_users(url: str, args: argparse.Namespace) -> int:
    async with HostDB(url) as db:
        members = await db.members(args.platform)
    for member in members:
        print(member.key, "admin" if member.is_admin else "member")
    return 0


async def _remove_user(url: str, args: argparse.Namespace) -> int:
    async with HostDB(url) as db:
        try:
            await db.remove_user(args.username, args.platform)
        except UnknownUser:
            print(f"error: {args.username} is not a member of {args.platform}", file=sys.stderr)
            return 1
    print(f"{args.username} is no longer a member of {args.platform}.", file=sys.stderr)
    return 0


async def _revoke_token(url: str, args: argparse.Namespace) -> int:
    async with HostDB(url) as db:
        if args.user is None:
            if not await db.revoke_token(args.token):
                print("error: no such token", file=sys.stderr)
                return 1
            print("Token revoked.", file=sys.stderr)
            return 0
        try:
            count = await db.revoke_tokens_of(args.user)
        except UnknownUser:
            print(f"error: no user {args.user}", file=sys.stderr)
            return 1
    print(f"Revoked {count} token{'s' * (count != 1)} of {args.user}.", file=sys.stderr)
    return 0


#: Subcommand name → its implementation, run with the database URL and the parsed arguments.
COMMANDS: dict[str, Callable[[str, argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "add-users": _add_users,
    "list-users": _list_users,
    "remove-user": _remove_user,
    "revoke-token": _revoke_token,
}
