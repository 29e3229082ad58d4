"""The example host's command line (a contract; see docs/example_host.md):

python -m example_host serve [--host 127.0.0.1] [--port 8000] [--database URL] [--workers N]
    [--no-access-log] [--http {httptools,h11}] [--max-header-bytes N]
    [--timeout-keep-alive SECONDS] [--limit-concurrency N] [--loop {auto,asyncio,uvloop}]
    [--listen-database URL]
    [--metrics | --no-metrics]
    [--jwks-url URL --jwt-issuer ISS --jwt-audience AUD [--jwt-algorithms RS256,ES256]]
python -m example_host add-platform KEY [--database URL]
python -m example_host add-user USERNAME --platform KEY [--admin] [--database URL]
python -m example_host add-users --platform KEY FILE [--admin] [--database URL]
python -m example_host list-users --platform KEY [--database URL]
python -m example_host remove-user USERNAME --platform KEY [--database URL]
python -m example_host revoke-token (TOKEN | --user USERNAME) [--database URL]
python -m example_host export --platform KEY [--filter JSON] [--database URL]
python -m example_host import --platform KEY FILE [--database URL]
python -m example_host backup PATH [--database URL]
python -m example_host dump FILE [--database URL]
python -m example_host load FILE [--replace] [--database URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from inspect import signature

from databases import DatabaseURL

from starlette_platform_metadata.history import DEFAULT_HISTORY_PER_USER

from . import backup as copies
from . import commands as user_commands
from . import jwt_auth, transfer
from .app import EVENTS_ENV, HISTORY_ENV, LISTEN_ENV, METRICS_PATH, MOUNT_PATH
from .db import DEFAULT_URL, HostDB, Membership, UnknownPlatform
from .monitoring import metrics_environment
from .redact import MASK, redact_message, redact_url
from .serving import (
    EVENT_LOOPS,
    HTTP_PARSERS,
    ServeOptions,
    http_protocol,
    max_streams,
)

DEMO_PLATFORM = "acme-corp"
DEMO_MEMBER = "john_doe"
DEMO_ADMIN = "acme_admin"
APP_FACTORY = "example_host.app:create_app_from_env"
@dataclass(frozen=True)
class DemoUser:
    username: str
    role: str
    token: str


def database_url(given: str | None) -> str:
    """`--database`, else `$DATABASE_URL`, else a SQLite file in the current folder."""
    return given or os.environ.get("DATABASE_URL") or DEFAULT_URL


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m example_host",
        description="A small host app serving per-user, per-platform metadata.",
    )
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument(
        "--database",
        metavar="URL",
        help=f"database URL (default: $DATABASE_URL, else {DEFAULT_URL})",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        parents=[database],
        help="serve the API (creates demo data on an empty database)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    serve.add_argument(
        "--workers", type=int, default=1, metavar="N", help="worker processes (default: 1)"
    )
    serve.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_false",
        help="do not log every request (uvicorn's switch of the same name)",
    )
    default = ServeOptions()
    serve.add_argument(
        "--http",
        choices=HTTP_PARSERS,
        default=default.http,
        help=(
            f"HTTP/1.1 parser (default: {default.http}); either caps the request line + "
            "headers at --max-header-bytes; httptools is about twice as fast and also closes "
            "connections that send no complete request head within 10 s"
        ),
    )
    serve.add_argument(
        "--loop",
        choices=EVENT_LOOPS,
        default=default.loop,
        help=(
            f"event loop (default: {default.loop}, uvicorn's: uvloop when installed); on a "
            "saturated worker asyncio serves a few percent fewer requests with a much shorter "
            "tail of slow answers (p99 a third or a quarter of uvloop's)"
        ),
    )
    serve.add_argument(
        "--max-header-bytes",
        type=int,
        metavar="N",
        help=(
            "cap on the request line + headers, checked as they arrive: past it the request "
            f"gets 431 (h11: 400) and the connection closes (default: {default.max_header_bytes})"
        ),
    )
    serve.add_argument(
        "--timeout-keep-alive",
        type=int,
        default=default.timeout_keep_alive,
        metavar="SECONDS",
        help=(
            "close a connection idle this long after a response "
            f"(default: {default.timeout_keep_alive})"
        ),
    )
    serve.add_argument(
        "--limit-concurrency",
        type=int,
        default=default.limit_concurrency,
        metavar="N",
        help=(
            "per worker: once N connections are open (idle ones count), requests get 503 "
            f"(default: {default.limit_concurrency})"
        ),
    )

    serve.add_argument(
        "--metrics",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=(
            f"serve Prometheus metrics at {METRICS_PATH}, without a token (default: on when "
            "--host is a loopback address, off otherwise)"
        ),
    )
    serve.add_argument(
        "--history-per-user",
        type=int,
        metavar="N",
        help=(
            "revisions kept per user and platform; 0 turns history off "
            f"(default: ${HISTORY_ENV}, else {DEFAULT_HISTORY_PER_USER})"
        ),
    )
    jwt_auth.add_serve_flags(serve)

    serve.add_argument(
        "--listen-database",
        metavar="URL",
        help=(
            "PostgreSQL only: a direct postgresql:// URL for each worker's one LISTEN "
            "connection (live changes), when --database goes through a transaction pooler "
            f"such as PgBouncer (default: ${LISTEN_ENV}, else --database)"
        ),
    )

    platform = commands.add_parser(
        "add-platform", parents=[database], help="create a platform (no-op if it exists)"
    )
    platform.add_argument("key", metavar="KEY")

    user = commands.add_parser(
        "add-user",
        parents=[database],
        help="create a user / membership and print a new API token on the last line",
    )
    user.add_argument("username", metavar="USERNAME")
    user.add_argument("--platform", required=True, metavar="KEY")
    user.add_argument("--admin", action="store_true", help="make the user a tenant admin")
    user_commands.add_parsers(commands, [database])
    transfer.add_parsers(commands, [database])
    copies.add_parsers(commands, [database])
    return parser


async def _add_platform(url: str, key: str) -> bool:
    async with HostDB(url) as db:
        return await db.add_platform(key)


async def _add_user(url: str, username: str, platform: str, admin: bool) -> str:
    async with HostDB(url) as db:
        return await db.add_user(username, platform, admin=admin)


async def _prepare(url: str, before_writing: Callable[[], object]) -> list[DemoUser]:
    """Create the tables, call `before_writing`, then, on a database without platforms, create
    the demo data."""
    async with HostDB(url) as db:
        before_writing()
        if await db.has_platforms():
            return []
        await db.add_platform(DEMO_PLATFORM)
        return [
            DemoUser(DEMO_MEMBER, "member", await db.add_user(DEMO_MEMBER, DEMO_PLATFORM)),
            DemoUser(
                DEMO_ADMIN,
                "tenant admin",
                await db.add_user(DEMO_ADMIN, DEMO_PLATFORM, admin=True),
            ),
        ]


async def _suggested_users(url: str) -> tuple[str, list[Membership]]:
    async with HostDB(url) as db:
        return await db.suggested_users(DEMO_PLATFORM)


def _add_user_commands(url: str, platform: str, members: list[Membership]) -> list[str]:
    """`add-user` command lines that print a token for a plain member and for an admin of
    `platform` (the flag as each has it now, so running one changes no role), or that create
    a first member when it has none."""
    if not platform:
        # Tables without a single platform: `serve` would have created the demo data.
        return [f"python -m example_host add-platform {DEMO_PLATFORM}"]
    # Printed for the operator to copy, and so also into terminals and logs: never the
    # password (the operator has it, and puts it back in place of the mask).
    database = "" if url == DEFAULT_URL else f" --database {shlex.quote(redact_url(url))}"
    picks = [m for m in members if not m.is_admin][:1] + [m for m in members if m.is_admin][:1]
    if not picks:
        picks = [Membership(DEMO_MEMBER, False)]
    return [
        f"python -m example_host add-user {shlex.quote(m.key)} --platform "
        f"{shlex.quote(platform)}{' --admin' if m.is_admin else ''}{database}"
        for m in picks
    ]


def _base_url(host: str, port: int) -> str:
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _serve(url: str, host: str, port: int, workers: int, options: ServeOptions) -> int:
    # Worker processes build the app from the environment (uvicorn imports the factory anew).
    os.environ["DATABASE_URL"] = url
    if options.history_per_user is not None:
        os.environ[HISTORY_ENV] = str(options.history_per_user)
    if options.listen_database is not None:
        os.environ[LISTEN_ENV] = options.listen_database
    os.environ.setdefault(EVENTS_ENV + "MAX_STREAMS", str(max_streams(options.limit_concurrency)))
    with metrics_environment(host, workers, options.metrics) as metrics:
        return _run_server(url, host, port, workers, options, metrics)


def _run_server(
    url: str, host: str, port: int, workers: int, options: ServeOptions, metrics: bool
) -> int:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(
        APP_FACTORY,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=options.access_log,
        http=http_protocol(options.http),
        # h11's head cap; the bounded httptools protocol reads the same setting.
        h11_max_incomplete_event_size=options.max_header_bytes,
        timeout_keep_alive=options.timeout_keep_alive,
        limit_concurrency=options.limit_concurrency,
        loop=options.loop,
    )
    sockets: list[socket.socket] = []

    def bind() -> None:
        # After the database answered (so uvicorn's "running on" line never precedes a
        # database error) and before demo tokens are created (a port in use exits 3 here,
        # and no token goes unprinted).  Listen at once, before the curl line is printed, so a
        # client that runs it (or reads the "running on" line) is queued, not refused, while
        # the app starts: left to itself, uvicorn with --workers listens only in the workers.
        sock = config.bind_socket()
        sock.listen(config.backlog)
        sockets.append(sock)

    demo = asyncio.run(_prepare(url, bind))
    sock = sockets[0]
    if demo:
        member = demo[0]
        endpoint = f"{_base_url(host, port)}{MOUNT_PATH}/?platform_key={DEMO_PLATFORM}"
        print(f"Created demo platform {DEMO_PLATFORM} with these users and API tokens:")
        for user in demo:
            print(f"  {user.username:<12} {user.role:<13} token {user.token}")
        print()
        print(f"Read {member.username}'s metadata:")
        auth = f"Authorization: Token {member.token}"
        print(f"  curl -H {shlex.quote(auth)} {shlex.quote(endpoint)}")
        print()
    else:
        print(
            "The database already has platforms, and tokens are stored only as hashes: "
            "get a new token with"
        )
        platform, members = asyncio.run(_suggested_users(url))
        for command in _add_user_commands(url, platform, members):
            print(f"  {command}")
        if redact_url(url) != url:
            print(f"  (with the database's password in place of {MASK})")
        print()
    print(f"Demo web app: open {_base_url(host, port)}/ and sign in with a token.")
    base = _base_url(host, port)
    shown = f", metrics {base}{METRICS_PATH}" if metrics else " (metrics off: --metrics)"
    print(f"Health: {base}/healthz, readiness {base}/readyz{shown}")
    sys.stdout.flush()
    # From here as `uvicorn.run` goes on after binding.
    server = uvicorn.Server(config)
    try:
        if workers > 1:
            # Older uvicorn releases also took the target.
            parameters = signature(Multiprocess).parameters
            target = {"target": server.run} if "target" in parameters else {}
            Multiprocess(config, sockets=[sock], **target).run()
            return 0
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn re-raises the signal it stopped on once it has shut down cleanly.
        return 0
    return 0 if server.started else 3  # 3: uvicorn's own exit status for a failed startup


def _serve_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> ServeOptions:
    for flag in ("workers", "limit_concurrency", "timeout_keep_alive", "max_header_bytes"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    if args.history_per_user is not None and args.history_per_user < 0:
        parser.error("--history-per-user must be at least 0")
    if args.listen_database is not None and (
        DatabaseURL(args.listen_database).dialect != "postgresql"
        or DatabaseURL(database_url(args.database)).dialect != "postgresql"
    ):
        parser.error("--listen-database needs PostgreSQL: a postgresql:// URL, and --database too")
    return ServeOptions(
        http=args.http,
        max_header_bytes=args.max_header_bytes or ServeOptions.max_header_bytes,
        timeout_keep_alive=args.timeout_keep_alive,
        limit_concurrency=args.limit_concurrency,
        access_log=args.access_log,
        history_per_user=args.history_per_user,
        loop=args.loop,
        metrics=args.metrics,
        listen_database=args.listen_database,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    url = database_url(args.database)
    if DatabaseURL(url).dialect not in ("sqlite", "postgresql"):
        parser.error(
            f"unsupported database URL {redact_url(url)!r}: use sqlite:///... or postgresql://..."
        )
    try:
        if args.command == "serve":
            jwt_auth.export_env(parser, args)
            return _serve(url, args.host, args.port, args.workers, _serve_options(parser, args))
        if args.command in user_commands.COMMANDS:
            return asyncio.run(user_commands.COMMANDS[args.command](url, args))
        if args.command in transfer.COMMANDS:
            return asyncio.run(transfer.COMMANDS[args.command](url, args))
        if args.command in copies.COMMANDS:
            return asyncio.run(copies.COMMANDS[args.command](url, args))
        if args.command == "add-platform":
            if not args.key:
                parser.error("KEY may not be empty")
            created = asyncio.run(_add_platform(url, args.key))
            print(f"Platform {args.key} {'created' if created else 'already exists'}.")
            return 0
        if not args.username:
            parser.error("USERNAME may not be empty")
        token = asyncio.run(_add_user(url, args.username, args.platform, args.admin))
    except UnknownPlatform as exc:
        print(
            f"error: platform {exc.key!r} does not exist; create it first with "
            f"`python -m example_host add-platform {shlex.quote(exc.key)}`",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a database that refuses us: one line, not a traceback
        print(f"error: {type(exc).__name__}: {redact_message(str(exc), url)}", file=sys.stderr)
        return 1
    role = "tenant admin" if args.admin else "member"
    print(f"{args.username} is a {role} of {args.platform}. API token:", file=sys.stderr)
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
