"""Kept database connections for the request path, shared by `DatabaseStore` and hosts.

`databases` is where URLs are parsed and drivers and pools come from, but two of its habits are
too slow for a per-request path: it opens a new aiosqlite connection, with a new thread, each
time it hands out a SQLite connection, and it compiles every query through SQLAlchemy.  These
classes keep connections open and run plain SQL on the driver.

SQLite: statements run synchronously on the event loop thread with `busy_timeout = 0`.  A
primary-key lookup or a one-row UPSERT in WAL mode takes microseconds, far less than handing the
statement to a thread and back.  When another connection holds the write lock, SQLite answers
"busy" at once, changing nothing, and the statement is tried again after a short sleep on the
loop (SQLite's own busy handler's schedule, 1 ms growing to 100 ms), until one deadline,
`busy_timeout` after the statement was first tried; past it, `StoreUnavailable` (503).  Waiting
is one deadline per statement, never a queue: no statement waits behind another's wait.  The
loop thus never waits on a lock, only, rarely, on the disk.  A full disk (`SQLITE_FULL`) or an
I/O error is `StoreUnavailable` too: nothing was written, and it passes when space comes back.

PostgreSQL: a pooled asyncpg connection per call, every step bounded by one deadline, and
connection failures as `StoreUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
import threading
import warnings
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from .errors import StoreUnavailable

if TYPE_CHECKING:
    from databases import Database, DatabaseURL
    from databases.core import Connection

__all__ = ["OpensOnFirstUse", "PostgresConnection", "SQLiteConnection", "postgres_database"]


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


# SQLite's primary result codes (the low byte of the extended code `sqlite_errorcode`).
_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
_UNAVAILABLE_CODES = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN})
# Seconds between tries while another connection holds the lock: SQLite's own busy handler's
# schedule (sqliteDefaultBusyCallback), then its last step for as long as the deadline allows.
_BACKOFF = (0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.025, 0.025, 0.025, 0.05, 0.05, 0.1)


def _code(exc: sqlite3.Error) -> int:
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF


def _is_busy(exc: sqlite3.Error) -> bool:
    return _code(exc) in _BUSY_CODES


def _unavailable(exc: sqlite3.Error) -> StoreUnavailable | None:
    """The 503 an error means, or `None` for an error that is a bug (SQL, schema)."""
    code = _code(exc)
    if code in _BUSY_CODES:
        return StoreUnavailable(f"SQLite: {exc} (lock held past busy_timeout)")
    if code in _UNAVAILABLE_CODES:
        return StoreUnavailable(f"SQLite: {exc}")
    return None


class SQLiteConnection:
    """One SQLite database: a synchronous fast path and a kept aiosqlite connection for waits.

    Args:
        database: the `databases.Database` naming the file.
        busy_timeout: seconds a statement may wait for another connection's lock.
        synchronous: `PRAGMA synchronous` for both connections.
        pragmas: further `PRAGMA` statements run on both connections when they open.

    Every statement is autocommit: each is atomic on its own and none leaves a transaction
    open, even when the awaiting task is cancelled.  `transaction()` is for a few statements
    that must commit together (administrative writes, not the request path).
    """

    def __init__(
        self,
        database: Database,
        *,
        busy_timeout: float,
        synchronous: str = "NORMAL",
        pragmas: Sequence[str] = (),
    ) -> None:
        self.database = database
        self._busy_timeout_ms = int(busy_timeout * 1000)
        self._synchronous = synchronous
        self._pragmas = list(pragmas)
        self._functions: list[tuple[str, int, Callable[..., Any]]] = []
        self._connection: Connection | None = None
        self._raw: Any = None
        self._sync: sqlite3.Connection | None = None
        # Statements handed to the aiosqlite connection must not slip into a `transaction()`
        # another task holds open on it.  (The fast-path connection is separate: a statement
        # there waits for the transaction's write lock like any other connection's.)
        self._lock = asyncio.Lock()

    def add_function(self, name: str, arity: int, function: Callable[..., Any]) -> None:
        """Register a deterministic SQL function on both connections (call before `open`)."""
        self._functions.append((name, arity, function))

    @property
    def is_open(self) -> bool:
        return self._connection is not None

    def _setup(self) -> list[str]:
        return [f"PRAGMA synchronous = {self._synchronous}", *self._pragmas]

    async def _enter_wal(self) -> None:
        """Put the file in WAL mode, which lets readers and one writer work at once.

        The switch needs the file to itself, and while another connection is in the middle of
        the same switch (two workers starting on a new file) SQLite refuses it at once, without
        waiting through `busy_timeout`.  WAL is persistent, so retry until it is on, for at
        most `busy_timeout`.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._busy_timeout_ms / 1000
        while True:
            try:
                await self._raw.execute_fetchall("PRAGMA journal_mode = WAL")
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                if loop.time() >= deadline:
                    raise StoreUnavailable(str(exc)) from exc
            else:
                # "wal", or, on a file system without shared memory, the mode SQLite kept.
                return
            await asyncio.sleep(0.005)

    def _file(self) -> str | None:
        """The file both connections open, or `None` when only one connection can be used."""
        url = self.database.url
        if url.database in ("", ":memory:") or url.options:
            return None  # an in-memory database, or URI options we do not replicate
        name: str = url.database
        return name

    async def open(self) -> None:
        await self.database.connect()
        connection = self.database.connection()
        await connection.__aenter__()
        raw = connection.raw_connection
        _stop_at_exit(raw)
        self._raw = raw
        try:
            # Fetched in full: a statement left with a pending row keeps its cursor open.
            await raw.execute_fetchall(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            path = self._file()
            if path is not None:
                await self._enter_wal()
            for statement in self._setup():
                await self._slow(statement, ())
            for name, arity, function in self._functions:
                await raw.create_function(name, arity, function, deterministic=True)
            if path is not None:
                self._sync = await asyncio.to_thread(self._open_sync, path)
        except BaseException:
            # The next request opens anew: this connection and its thread must not leak, even
            # when the open was cancelled.  aiosqlite's close() stops the thread however it
            # ends; `stop()` is the synchronous fallback for when close() was never reached.
            self._raw = None
            try:
                with contextlib.suppress(Exception):  # the original error is the one to report
                    await connection.__aexit__(None, None, None)
            finally:
                if getattr(raw, "_running", False):
                    raw.stop()
            raise
        self._connection = connection

    def _open_sync(self, path: str) -> sqlite3.Connection:
        """The fast-path connection, opened on a worker thread: its first statements read the
        file's header and WAL index, and may have to wait, up to `busy_timeout`, while another
        connection is converting the file to WAL or recovering it.  Only then does it switch to
        `busy_timeout = 0`, the setting its place on the event loop needs."""
        sync = sqlite3.connect(
            path,
            timeout=self._busy_timeout_ms / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            for statement in self._setup():  # journal_mode is the file's, already set
                sync.execute(statement)
            sync.execute("SELECT count(*) FROM sqlite_master").fetchall()
            sync.execute("PRAGMA busy_timeout = 0")
            for name, arity, function in self._functions:
                sync.create_function(name, arity, function, deterministic=True)
        except sqlite3.OperationalError as exc:
            sync.close()
            if _is_busy(exc):
                raise StoreUnavailable(str(exc)) from exc
            raise
        except BaseException:
            sync.close()
            raise
        return sync

    async def close(self) -> None:
        if self._sync is not None:
            sync, self._sync = self._sync, None
            sync.close()
        if self._connection is not None:
            connection, self._connection, self._raw = self._connection, None, None
            await connection.__aexit__(None, None, None)
            await self.database.disconnect()

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run one statement; its rows.

        Answers within `busy_timeout` of the call: rows, or `StoreUnavailable` when another
        connection held the lock all that time, the disk is full, or the file cannot be written.
        """
        sync = self._sync
        if sync is None:
            return await self._fetch_slow(sql, params)
        deadline: float | None = None
        for attempt in itertools.count():
            try:
                return sync.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    unavailable = _unavailable(exc)
                    if unavailable is None:
                        raise
                    raise unavailable from exc
                error = exc
            # Busy: nothing was done.  Sleep on the loop, never in SQLite, so that the wait has
            # one deadline from the first try and queues behind no other statement's wait.
            now = asyncio.get_running_loop().time()
            if deadline is None:
                deadline = now + self._busy_timeout_ms / 1000
            if now >= deadline:
                raise _unavailable(error) or StoreUnavailable(str(error)) from error
            await asyncio.sleep(min(_BACKOFF[min(attempt, len(_BACKOFF) - 1)], deadline - now))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _fetch_slow(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """Without a fast-path connection (in-memory or URI-option databases): the aiosqlite
        connection, after any `transaction()` in progress, all within `busy_timeout`."""
        try:
            async with asyncio.timeout(self._busy_timeout_ms / 1000):
                await self._lock.acquire()
        except TimeoutError:
            raise StoreUnavailable(
                "SQLite: a transaction held the connection past busy_timeout"
            ) from None
        try:
            return await self._slow(sql, params)
        finally:
            self._lock.release()

    async def _slow(self, sql: str, params: Sequence[Any]) -> list[Any]:
        try:
            rows: list[Any] = list(await self._raw.execute_fetchall(sql, params))
        except sqlite3.OperationalError as exc:
            unavailable = _unavailable(exc)
            if unavailable is None:
                raise
            raise unavailable from exc
        return rows

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Callable[..., Any]]:
        """`BEGIN IMMEDIATE` … `COMMIT` on the aiosqlite connection; yields a `fetch`."""
        async with self._lock:
            await self._slow("BEGIN IMMEDIATE", ())
            try:
                yield self._slow
            except BaseException:
                with contextlib.suppress(Exception):
                    await self._raw.execute("ROLLBACK")
                raise
            else:
                await self._slow("COMMIT", ())


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

    def __init__(self, database: Database, *, timeout: float) -> None:
        self.database = database
        self.timeout = timeout

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

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        async with self.session() as raw:
            rows: list[Any] = await raw.fetch(sql, *args)
            return rows

    async def close(self) -> None:
        if self.database.is_connected:
            await self.database.disconnect()


def _stop_at_exit(raw: Any) -> None:
    """Stop aiosqlite's worker thread when the interpreter exits.

    The thread is not a daemon, and Python joins such threads before `atexit` runs, so a host
    that never calls `disconnect()` would hang on exit.  `threading._register_atexit` runs
    before that join (concurrent.futures relies on it too).
    """
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        with contextlib.suppress(RuntimeError):  # raised when already shutting down
            register(_quiet_stop, weakref.ref(raw))


def _quiet_stop(ref: weakref.ref[Any]) -> None:
    raw = ref()
    if raw is not None and getattr(raw, "_running", False):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw.stop()
