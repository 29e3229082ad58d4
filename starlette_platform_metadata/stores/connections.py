"""Kept database connections, for `DatabaseStore` and for a host's own tables: what they offer.

`databases` is how a host names its database (a URL, or its own `Database`); the connections
(`sql_connection`, built in sql/dialects.py) keep connections open and run plain SQL on the
driver, because `databases` opens a new SQLite connection (and thread) per task and compiles
every query through SQLAlchemy, which costs more than the query.  SQL is written once with
PostgreSQL's `$1` placeholders for both databases:

    connection = sql_connection("sqlite:///app.db")     # or a `databases.Database`
    await connection.open()
    row = await connection.fetchrow("SELECT id FROM users WHERE name = $1", "john")
    async with connection.transaction() as tx:
        await tx.fetch("INSERT INTO users (name) VALUES ($1)", "jane")
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Any, Protocol, Self

__all__ = ["OpensOnFirstUse", "SQLConnection", "SQLTransaction"]


class SQLTransaction(Protocol):
    async def fetch(self, sql: str, *args: Any) -> list[Any]: ...
    async def fetchrow(self, sql: str, *args: Any) -> Any: ...


class SQLConnection(Protocol):
    """What `sql_connection` returns, for SQLite and PostgreSQL alike."""

    dialect: str
    busy_timeout: float

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        """One statement, its rows; `StoreUnavailable` past `busy_timeout`."""
        ...

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        """One statement, its first row or `None`."""
        ...

    def transaction(
        self, *, timeout: float | None = None
    ) -> contextlib.AbstractAsyncContextManager[SQLTransaction]:
        """Statements that commit together, or not at all.

        `timeout`: this transaction's deadline instead of `busy_timeout`, for one whose work
        grows with its input (PostgreSQL bounds the whole transaction; SQLite bounds only the
        wait for the write lock, which stays `busy_timeout`).
        """
        ...


class OpensOnFirstUse:
    """Connects on first use, or explicitly with `connect()`; an async context manager.

    A mounted app's lifespan never runs, so whatever the request path needs must be able to
    open itself; hosts that prefer to connect at startup call `connect()` from their lifespan.
    Subclasses implement `_open` and `_close`.
    """

    def __init__(self) -> None:
        self._ready = False
        self._open_lock = asyncio.Lock()

    async def _open(self) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError

    async def connect(self) -> None:
        if self._ready:
            return
        async with self._open_lock:
            if not self._ready:
                await self._open()
                self._ready = True

    async def disconnect(self) -> None:
        async with self._open_lock:
            # Also after a failed connect(), which may have left a pool open.
            self._ready = False
            await self._close()

    async def ensure_open(self) -> None:
        if not self._ready:
            await self.connect()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disconnect()
