"""PostgreSQL: pooled asyncpg connections from `databases`, one deadline per call.

Every write is one atomic step chosen by measurement (see `PostgresEngine`), and the document
is a `json` column, not `jsonb`: `json` keeps the exact text we wrote, so a document reads back
byte for byte as SQLite and `MemoryStore` render it (`jsonb` would store numbers as `numeric`,
turning `1e16` into an integer and dropping the sign of `-0.0`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from .base import EMPTY, Change, Record, StoreUnavailable

if TYPE_CHECKING:
    from databases import Database, DatabaseURL

__all__ = ["PostgresConnection", "PostgresEngine", "postgres_database"]


def postgres_database(url: str | DatabaseURL, timeout: float) -> Database:
    """A `databases.Database` for PostgreSQL as the request path wants it.

    asyncpg's own bounds (connect, and every statement) back up `PostgresConnection`'s
    deadline.  And a connection goes back to the pool without asyncpg's default reset query
    (`RESET ALL; UNLISTEN *; ...`), a round trip per use that would double the cost of a GET:
    this package leaves no session state behind (no SET, LISTEN, session advisory lock or
    cursor), and asyncpg still rolls back a transaction left open before `_keep_session` runs.
    A host that shares its own `Database` keeps its own pool settings.
    """
    from databases import Database

    return Database(url, timeout=timeout, command_timeout=timeout, reset=_keep_session)


async def _keep_session(connection: Any) -> None:
    """asyncpg's pool `reset` hook: nothing to undo (see `postgres_database`)."""


class PostgresConnection:
    """Pooled asyncpg connections from `databases`, every call bounded by `timeout` seconds.

    One deadline covers the whole call: creating the pool, acquiring a connection (opening a
    new one if need be), the statements, and giving the connection back.  When it passes
    mid-query, asyncpg asks the server to cancel the statement, and a ROLLBACK or the pool's
    release then waits for the server to acknowledge that, up to asyncpg's own timeout again.
    A live server does so within milliseconds, and the connection stays in the pool; a hung
    one never does.  So a connection still in use `cancel_grace` seconds after the deadline
    is terminated: whatever waits on it returns at once, and the pool opens a new connection
    on a later acquire.  A call thus ends within `timeout + cancel_grace`.
    """

    cancel_grace = 0.25

    dialect = "postgresql"

    def __init__(self, database: Database, *, timeout: float, owns_database: bool) -> None:
        self.database = database
        self.timeout = timeout
        self.busy_timeout = timeout
        self.owns_database = owns_database

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Any]:
        """A pooled asyncpg connection; unreachable or too slow: `StoreUnavailable`."""
        import asyncpg

        deadline = asyncio.timeout(self.timeout)
        raw: Any = None
        abandon: asyncio.TimerHandle | None = None
        try:
            async with deadline:
                if not self.database.is_connected:
                    await self.database.connect()
                try:
                    async with self.database.connection() as connection:
                        raw = connection.raw_connection
                        when = deadline.when()
                        assert when is not None
                        abandon = asyncio.get_running_loop().call_at(
                            when + self.cancel_grace, self._abandon, raw
                        )
                        yield raw
                finally:
                    if abandon is not None:
                        abandon.cancel()
                        if deadline.expired():
                            # The deadline may have interrupted the release itself, which
                            # asyncpg then finishes in the background: finish it now.
                            self._abandon(raw)
        except TimeoutError:
            raise StoreUnavailable(f"PostgreSQL did not answer within {self.timeout} s") from None
        except (
            OSError,  # refused, reset, unreachable
            asyncpg.InterfaceError,  # the connection was closed, the pool is closing
            asyncpg.PostgresConnectionError,  # SQLSTATE class 08
            asyncpg.exceptions.OperatorInterventionError,  # 57: shutdown, cannot connect now
            asyncpg.exceptions.InsufficientResourcesError,  # 53: too many connections
        ) as exc:
            if deadline.expired():  # e.g. a ROLLBACK on the connection abandoned past it
                raise StoreUnavailable(
                    f"PostgreSQL did not answer within {self.timeout} s"
                ) from exc
            raise StoreUnavailable(f"PostgreSQL unavailable: {exc}") from exc

    @staticmethod
    def _abandon(raw: Any) -> None:
        """Close a pooled connection at once, without waiting for the server; a no-op once it
        is back in the pool (its proxy then refuses every call)."""
        with contextlib.suppress(Exception):
            raw.terminate()

    async def open(self) -> None:
        async with self.session():
            pass

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        async with self.session() as raw:
            rows: list[Any] = await raw.fetch(sql, *args)
            return rows

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        async with self.session() as raw:
            return await raw.fetchrow(sql, *args)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        """A transaction on one pooled connection (asyncpg's `fetch`/`fetchrow` inside)."""
        async with self.session() as raw, raw.transaction():
            yield raw

    async def close(self) -> None:
        """Disconnect the `Database`, only if this connection created it."""
        if self.owns_database and self.database.is_connected:
            await self.database.disconnect()


class PostgresEngine:
    """The metadata table on a `PostgresConnection`.

    `update` is a compare-and-set: read the row, run the change in Python, and write the result
    with one statement that applies only while the row still has the version that was read
    (for a first write: while no row exists).  Losing a race changes nothing and reads again,
    all within the call's one deadline.  Two round trips per write and no transaction held
    across them; see benchmarks/README.md for the comparison with `SELECT ... FOR UPDATE`.
    """

    def __init__(self, connection: PostgresConnection, table: str) -> None:
        self.connection = connection
        t = table
        self._get_sql = (
            f"SELECT metadata::text, version, created_at, updated_at FROM {t} "
            "WHERE platform_key = $1 AND username = $2"
        )
        # One statement for both cases: no row yet (expected version 0, the INSERT applies),
        # or the row as read (the UPDATE applies only while its version is still $7).
        self._swap_sql = (
            f"INSERT INTO {t} AS r (platform_key, username, metadata, version, created_at, "
            "updated_at) VALUES ($1, $2, $3::json, $4, $5, $6) "
            "ON CONFLICT (platform_key, username) DO UPDATE SET metadata = excluded.metadata, "
            "version = excluded.version, created_at = excluded.created_at, "
            "updated_at = excluded.updated_at WHERE r.version = $7 RETURNING version"
        )

    @staticmethod
    def _record(row: Sequence[Any] | None) -> Record:
        if row is None:
            return EMPTY
        metadata, version, created, updated = row
        if metadata is None:
            return Record("{}", version, None, None)
        return Record(metadata, version, created, updated)

    async def get(self, platform_key: str, username: str) -> Record:
        rows = await self.connection.fetch(self._get_sql, platform_key, username)
        return self._record(rows[0] if rows else None)

    async def update(self, platform_key: str, username: str, change: Change) -> Record:
        async with self.connection.session() as raw:
            while True:
                current = self._record(await raw.fetchrow(self._get_sql, platform_key, username))
                write = change(current)
                if write is None:
                    return current
                record = write.record
                swapped = await raw.fetchval(
                    self._swap_sql,
                    platform_key,
                    username,
                    record.metadata_json if record.exists else None,
                    record.version,
                    record.created_at,
                    record.updated_at,
                    current.version,
                )
                if swapped is not None:
                    return record
                # Another writer got in between: read again.  The deadline bounds the loop.
