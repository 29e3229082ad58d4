"""`DatabaseStore`: metadata in SQLite (default) or PostgreSQL, through `databases`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from databases import Database, DatabaseURL

from ..connections import OpensOnFirstUse, postgres_database
from ..payload import dump
from .base import Expect, Record
from .dialects import Engine, PostgresEngine, SQLiteEngine, check_identifier

__all__ = ["DatabaseStore"]


class DatabaseStore(OpensOnFirstUse):
    """A `Store` on a SQL database.

    Args:
        url: a `databases` URL: `sqlite:///file.db` (the default is `sqlite:///platform_metadata.db`)
            or `postgresql://user:pass@host/db` (needs the `postgresql` extra; pool size per
            process with `?min_size=..&max_size=..`, see docs/postgresql.md).
        database: a `databases.Database` the host already has, instead of `url`.
        table: the table name; `<table>_schema` records the schema version next to it.
        create_tables: create the tables on first use; turn off where runtime DDL is forbidden
            and run the statements of `schema()` ahead of time.
        busy_timeout: seconds an operation may wait before the request is answered 503: for
            another process's lock (SQLite); for a pooled connection, a (re)connection and the
            statement together (PostgreSQL).
        synchronous: SQLite's `PRAGMA synchronous` (`NORMAL` is durable across process crashes
            in WAL mode; `FULL` also across power loss, at the cost of an fsync per write).

    The store connects on first use, so it works inside a mounted app whose lifespan never runs;
    hosts that prefer to connect at startup call `connect()` / `disconnect()` from their own
    lifespan, or use the store as an async context manager.
    """

    def __init__(
        self,
        url: str | DatabaseURL | None = None,
        *,
        database: Database | None = None,
        table: str = "platform_metadata",
        create_tables: bool = True,
        busy_timeout: float = 5.0,
        synchronous: str = "NORMAL",
    ) -> None:
        super().__init__()
        if database is None:
            url = DatabaseURL(url or "sqlite:///platform_metadata.db")
            if url.dialect not in ("sqlite", "postgresql"):
                raise ValueError(f"Unsupported database for DatabaseStore: {url.dialect!r}")
            if url.dialect == "postgresql":
                database = postgres_database(url, busy_timeout)
            else:
                database = Database(url)
        elif url is not None:
            raise ValueError("Pass either url or database, not both.")
        self.database = database
        self._create_tables = create_tables
        check_identifier(table)
        dialect = database.url.dialect
        self._engine: Engine
        if dialect == "sqlite":
            if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
                raise ValueError(f"Unknown PRAGMA synchronous value: {synchronous!r}")
            self._engine = SQLiteEngine(database, table, busy_timeout, synchronous.upper())
        elif dialect == "postgresql":
            self._engine = PostgresEngine(database, table, busy_timeout)
        else:
            raise ValueError(f"Unsupported database for DatabaseStore: {dialect!r}")

    def schema(self) -> list[str]:
        """The DDL statements that create this store's tables."""
        return self._engine.schema()

    async def _open(self) -> None:
        await self._engine.open(self._create_tables)

    async def _close(self) -> None:
        await self._engine.close()

    async def _engine_ready(self) -> Engine:
        await self.ensure_open()
        return self._engine

    async def get(self, platform_key: str, username: str) -> Record:
        return await (await self._engine_ready()).get(platform_key, username)

    async def patch(
        self,
        platform_key: str,
        username: str,
        set: Mapping[str, Any],
        delete: Sequence[str],
        *,
        expect: Expect | None = None,
        max_bytes: int | None = None,
    ) -> Record:
        engine = await self._engine_ready()
        return await engine.patch(platform_key, username, set, delete, expect, max_bytes)

    async def replace(
        self,
        platform_key: str,
        username: str,
        metadata: Mapping[str, Any],
        *,
        expect: Expect | None = None,
        max_bytes: int | None = None,
    ) -> Record:
        engine = await self._engine_ready()
        return await engine.replace(platform_key, username, dump(metadata), expect, max_bytes)

    async def delete(
        self, platform_key: str, username: str, *, expect: Expect | None = None
    ) -> None:
        await (await self._engine_ready()).delete(platform_key, username, expect)
