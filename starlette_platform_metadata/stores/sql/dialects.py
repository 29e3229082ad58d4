"""The one switch: a database's URL picks SQLite or PostgreSQL, once.

`backend()` reads the URL (or the host's `databases.Database`) and returns the kept
connection for that database together with the engine `DatabaseStore` runs on it.  Everything
that differs between the two databases at run time is in their modules (sqlite*.py,
postgres*.py), and their DDL in schema.py, keyed by the connection's `dialect`.  A database's
modules load only when a URL names it (its engine's only when a store is built on it), and
`databases` only when this is called.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..base import Change, Record, Revision
from ...metrics import Metrics
from ..connections import SQLConnection

if TYPE_CHECKING:
    from databases import Database, DatabaseURL

__all__ = ["Backend", "Engine", "backend", "sql_connection"]


class Engine(Protocol):
    """The metadata tables on one database's connection: what `DatabaseStore` calls."""

    #: Where it reports what only it sees (SQLite's group commits).
    metrics: Metrics

    async def get(self, platform_key: str, username: str) -> Record: ...
    async def get_many(self, platform_key: str, usernames: Sequence[str]) -> list[Record]: ...
    async def update(self, platform_key: str, username: str, change: Change) -> Record: ...
    async def update_guarded(
        self, platform_key: str, username: str, change: Change, guard: tuple[str, Record]
    ) -> Record: ...
    async def update_many(
        self, platform_key: str, updates: Sequence[tuple[str, Change]]
    ) -> list[Record]: ...
    async def records(
        self,
        platform_key: str,
        after: str | None,
        limit: int,
        filter: Mapping[str, Any] | None = None,
    ) -> list[tuple[str, Record]]: ...
    async def revisions(
        self, platform_key: str, username: str, before: int | None, limit: int
    ) -> list[Revision]: ...
    async def changes(
        self, platform_key: str, after: int, limit: int, usernames: Sequence[str] | None
    ) -> list[tuple[str, Revision]]: ...
    async def position(self, platform_key: str) -> tuple[int, int]: ...
    async def poll(self) -> bool: ...
    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Backend:
    """One database, as its URL picked it.

    Attributes:
        connection: the kept connections (not open yet).
        engine: the engine of a metadata table (its name) on `connection`.
    """

    connection: SQLConnection
    engine: Callable[[str], Engine]


def backend(
    database: str | DatabaseURL | Database,
    *,
    busy_timeout: float = 5.0,
    synchronous: str = "NORMAL",
    pragmas: Sequence[str] = (),
    listen_url: str | DatabaseURL | None = None,
) -> Backend:
    """The connection and engine for `database`, a `databases` URL or `Database`
    (arguments as `sql_connection`'s; `listen_url` as `DatabaseStore`'s)."""
    from databases import Database, DatabaseURL

    url = DatabaseURL(str(database.url) if isinstance(database, Database) else database)
    if listen_url is not None and url.dialect != "postgresql":
        raise ValueError("listen_url is for PostgreSQL only (LISTEN/NOTIFY)")
    if url.dialect == "sqlite":
        from .sqlite_connection import SQLiteConnection

        if url.options:
            raise ValueError(f"SQLite URL options are not supported: {sorted(url.options)}")
        lite = SQLiteConnection(
            url.database, busy_timeout=busy_timeout, synchronous=synchronous, pragmas=pragmas
        )

        def sqlite_engine(table: str) -> Engine:
            from .sqlite import SQLiteEngine

            return SQLiteEngine(lite, table)

        return Backend(lite, sqlite_engine)
    if url.dialect == "postgresql":
        from .postgres_connection import PostgresConnection, asyncpg_dsn, postgres_database

        listen_dsn = None
        if listen_url is not None:
            if DatabaseURL(str(listen_url)).dialect != "postgresql":
                raise ValueError("listen_url must be a postgresql:// URL")
            listen_dsn = asyncpg_dsn(listen_url)

        if isinstance(database, Database):
            pg = PostgresConnection(database, timeout=busy_timeout, owns_database=False)
        else:
            pg = PostgresConnection(
                postgres_database(url, busy_timeout), timeout=busy_timeout, owns_database=True
            )

        def postgres_engine(table: str) -> Engine:
            from .postgres import PostgresEngine

            return PostgresEngine(pg, table, listen_dsn=listen_dsn)

        return Backend(pg, postgres_engine)
    raise ValueError(f"Unsupported database: {url.dialect!r} (use sqlite or postgresql)")


def sql_connection(
    database: str | DatabaseURL | Database,
    *,
    busy_timeout: float = 5.0,
    synchronous: str = "NORMAL",
    pragmas: Sequence[str] = (),
) -> SQLConnection:
    """Kept connections to `database`: a `databases` URL or `Database`.

    Args:
        busy_timeout: seconds any call may take waiting (for a lock on SQLite; for the pool,
            a connection and the statement together on PostgreSQL) before `StoreUnavailable`.
        synchronous: SQLite's `PRAGMA synchronous`.
        pragmas: further `PRAGMA` statements for every SQLite connection.

    A `Database` passed in stays the host's: closing the connection never disconnects it.
    SQLite opens the file named by its URL with connections of its own.
    """
    return backend(
        database, busy_timeout=busy_timeout, synchronous=synchronous, pragmas=pragmas
    ).connection
