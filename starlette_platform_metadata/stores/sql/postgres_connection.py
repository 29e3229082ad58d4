"""PostgreSQL's kept connections: pooled asyncpg connections from `databases`, one deadline
per call, for the store and for a host's own tables."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..base import StoreUnavailable

if TYPE_CHECKING:
    from databases import Database
    from databases import DatabaseURL as _URL

__all__ = ["PostgresConnection", "asyncpg_dsn", "postgres_database", "statement_cache_size"]

#: URL options asyncpg's own `connect` takes as they are (the rest are the pool's).
_DSN_OPTIONS = ("ssl", "sslmode")


def postgres_database(url: str | _URL, timeout: float) -> Database:
    """A `databases.Database` for PostgreSQL as the request path wants it.

    asyncpg's own bounds (connect, and every statement) back up `PostgresConnection`'s
    deadline.  And a connection goes back to the pool without asyncpg's default reset query
    (`RESET ALL; UNLISTEN *; ...`), a round trip per use that would double the cost of a GET:
    this package leaves no session state behind (no SET, LISTEN, session advisory lock or
    cursor), and asyncpg still rolls back a transaction left open before `_keep_session` runs.
    The pool keeps no floor of connections (`min_size` 0 unless the URL says otherwise): with
    asyncpg's default of 10, an outage makes the pool reconnect in the background and log a
    full traceback for every failed try, where the endpoint already logs one line per outage;
    used connections still stay pooled, up to `max_size`.  A host that shares its own
    `Database` keeps its own pool settings.
    """
    from databases import Database, DatabaseURL

    options = DatabaseURL(url).options
    extra: dict[str, Any] = {} if "min_size" in options else {"min_size": 0}
    if "statement_cache_size" in options:
        # Behind a transaction pooler (PgBouncer before 1.21 keeps no prepared statements):
        # `?statement_cache_size=0`, passed on to asyncpg, which `databases` would drop.
        extra["statement_cache_size"] = statement_cache_size(options["statement_cache_size"])
    return Database(url, timeout=timeout, command_timeout=timeout, reset=_keep_session, **extra)


def statement_cache_size(value: str) -> int:
    """The URL's `statement_cache_size`, as asyncpg takes it (0 turns the cache off)."""
    try:
        size = int(value)
    except ValueError:
        size = -1
    if size < 0:
        raise ValueError(f"statement_cache_size must be an integer >= 0, not {value!r}")
    return size


def asyncpg_dsn(url: str | _URL) -> str:
    """A `databases` URL as asyncpg's own `connect` takes it: the pool options that
    `databases` reads (`min_size`, `max_size`, ...) left out, SSL settings kept."""
    from databases import DatabaseURL

    parsed = DatabaseURL(str(url))
    kept = {k: v for k, v in parsed.options.items() if k in _DSN_OPTIONS}
    base = str(parsed.replace(driver=None)).partition("?")[0]
    return base + ("?" + "&".join(f"{k}={v}" for k, v in kept.items()) if kept else "")


def _pool_size(database: Database) -> int:
    """The pool's `max_size`: the URL's or the `Database`'s option, else asyncpg's 10."""
    size = database.options.get("max_size") or database.url.options.get("max_size") or 10
    return max(1, int(size))


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
        # A fair queue in front of the pool.  asyncpg's pool hands a released connection to
        # whoever asks first, and a waiter it had woken that finds it taken waits again at the
        # back: under load some requests waited ten times the median (GET p99/p50 of 7 with 64
        # connections over a pool of 10).  asyncio.Semaphore is first come, first served, and
        # as wide as the pool, so the pool itself never makes anyone wait.
        self._gate = asyncio.Semaphore(_pool_size(database))

    @contextlib.asynccontextmanager
    async def session(self, timeout: float | None = None) -> AsyncIterator[Any]:
        """A pooled asyncpg connection; unreachable or too slow: `StoreUnavailable`.
        `timeout`: this call's own bound instead of the connection's (a batch of writes)."""
        import asyncpg

        seconds = self.timeout if timeout is None else timeout
        deadline = asyncio.timeout(seconds)
        raw: Any = None
        abandon: asyncio.TimerHandle | None = None
        try:
            async with deadline, self._gate:
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
            raise StoreUnavailable(f"PostgreSQL did not answer within {seconds} s") from None
        except (
            OSError,  # refused, reset, unreachable
            asyncpg.InterfaceError,  # the connection was closed, the pool is closing
            asyncpg.PostgresConnectionError,  # SQLSTATE class 08
            asyncpg.exceptions.OperatorInterventionError,  # 57: shutdown, cannot connect now
            asyncpg.exceptions.InsufficientResourcesError,  # 53: too many connections
        ) as exc:
            if deadline.expired():  # e.g. a ROLLBACK on the connection abandoned past it
                raise StoreUnavailable(
                    f"PostgreSQL did not answer within {seconds} s"
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

    def dsn(self) -> str:
        """The database's URL as asyncpg's own `connect` takes it (`asyncpg_dsn`)."""
        return asyncpg_dsn(self.database.url)

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        async with self.session() as raw:
            rows: list[Any] = await raw.fetch(sql, *args)
            return rows

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        async with self.session() as raw:
            return await raw.fetchrow(sql, *args)

    @contextlib.asynccontextmanager
    async def transaction(self, *, timeout: float | None = None) -> AsyncIterator[Any]:
        """A transaction on one pooled connection (asyncpg's `fetch`/`fetchrow` inside), all
        of it within `timeout` seconds (default: the connection's)."""
        async with self.session(timeout) as raw, raw.transaction():
            yield raw

    async def close(self) -> None:
        """Disconnect the `Database`, only if this connection created it."""
        if self.owns_database and self.database.is_connected:
            await self.database.disconnect()
