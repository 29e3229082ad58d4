"""SQLite's kept connections: reads on the event loop, writes and commits on a writer thread.

Two connections to one file, both with Python's own `sqlite3`:

- **Reads** run synchronously on the event loop thread.  A primary-key lookup in WAL mode takes
  microseconds, far less than a trip to a thread and back, and a reader never waits for a
  writer.  In the rare case SQLite answers "busy" (e.g. while another process recovers the
  file), the read is tried again after a short sleep on the loop, until `busy_timeout`.
- **Writes** take the writer connection, one user at a time: a transaction of a host's
  (`transaction()`, each statement a trip to the writer thread), or the store's group of
  updates (`write_then_commit`: its statements on the loop, the `COMMIT` on the thread when it
  fsyncs; sqlite.py and sqlite_groups.py).  So the event loop never waits on the disk (a
  commit, a checkpoint, an fsync); checkpoints are sqlite_checkpoints.py's.

Why not aiosqlite: its public API runs one statement per trip to its thread; a group commit
needs a read, Python, and a write per update, many updates, under one lock, in one trip.  An
executor thread is the standard library's, and it never keeps the interpreter from exiting.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from ..base import StoreUnavailable
from .sqlite_checkpoints import Checkpoints

__all__ = [
    "LockBusy",
    "SQLiteConnection",
    "backoff",
    "is_busy",
    "translate",
    "unavailable",
]

T = TypeVar("T")

# SQLite's primary result codes (the low byte of the extended code `sqlite_errorcode`).
_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
_UNAVAILABLE_CODES = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN})
# Seconds between tries while another connection holds a lock: SQLite's own busy handler's
# schedule (sqliteDefaultBusyCallback), then its last step for as long as the deadline allows.
_BACKOFF = (0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.025, 0.025, 0.025, 0.05, 0.05, 0.1)
_PLACEHOLDER = re.compile(r"\$(\d+)")


def backoff(attempt: int) -> float:
    """Seconds to sleep after failed try `attempt` (from 0) while another connection holds a
    lock: SQLite's own busy schedule, 1 ms growing to 100 ms."""
    return _BACKOFF[min(attempt, len(_BACKOFF) - 1)]


def _code(exc: sqlite3.Error) -> int:
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF


def is_busy(exc: sqlite3.Error) -> bool:
    """Another connection holds a lock SQLite needed; nothing was done."""
    return _code(exc) in _BUSY_CODES


def unavailable(exc: sqlite3.Error) -> StoreUnavailable | None:
    """The 503 an error means, or `None` for an error that is a bug (SQL, schema)."""
    code = _code(exc)
    if code in _BUSY_CODES:
        return StoreUnavailable(f"SQLite: {exc} (a lock was held past busy_timeout)")
    if code in _UNAVAILABLE_CODES:
        return StoreUnavailable(f"SQLite: {exc}")
    return None


def translate(sql: str, _cache: dict[str, str] = {}) -> str:  # noqa: B006 - a memo on purpose
    """PostgreSQL's `$1` placeholders as SQLite's numbered `?1`: SQL is written once."""
    translated = _cache.get(sql)
    if translated is None:
        if len(_cache) >= 512:  # a handful of statements exist; never grow without bound
            _cache.clear()
        translated = _cache[sql] = _PLACEHOLDER.sub(r"?\1", sql)
    return translated


def _run_mapped(function: Callable[[], T]) -> T:
    """`function()`, with SQLite's "busy", "full" and I/O errors as `StoreUnavailable`."""
    try:
        return function()
    except sqlite3.OperationalError as exc:
        mapped = unavailable(exc)
        if mapped is None:
            raise
        raise mapped from exc


class SQLiteConnection:
    """Kept connections to one SQLite database, for the store and for a host's own tables.

    Args:
        path: the database file, or `":memory:"` (then one connection serves both roles and
            nothing runs on a thread).
        busy_timeout: seconds any operation may wait for another connection's lock before
            `StoreUnavailable`.
        synchronous: `PRAGMA synchronous` (`NORMAL`: durable across process crashes in WAL
            mode; `FULL`: across power loss too, an fsync per commit, shared by the group).
        pragmas: further `PRAGMA` statements run on every connection when it opens.

    SQL uses PostgreSQL's `$1` placeholders on both databases.
    """

    dialect = "sqlite"

    def __init__(
        self,
        path: str,
        *,
        busy_timeout: float = 5.0,
        synchronous: str = "NORMAL",
        pragmas: Sequence[str] = (),
    ) -> None:
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"Unknown PRAGMA synchronous value: {synchronous!r}")
        self.path = path
        self.busy_timeout = busy_timeout
        self._setup = [f"PRAGMA synchronous = {synchronous.upper()}", *pragmas]
        self._memory = path in ("", ":memory:")
        # FULL and EXTRA fsync the WAL at every commit: then commits go to the writer thread.
        self._commit_on_thread = synchronous.upper() in ("FULL", "EXTRA")
        self._reader: sqlite3.Connection | None = None
        self._writer: sqlite3.Connection | None = None
        self._checkpoints: Checkpoints | None = None  # a file's, while open
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        # One user of the writer connection at a time: a transaction spans several trips to
        # the thread, and nothing else may run inside it.
        self._writer_lock = asyncio.Lock()
        self._busy_ms: int | None = None

    # --- opening and closing -------------------------------------------------------------

    def _connect(self, *, wal: bool) -> sqlite3.Connection:
        """A connection in autocommit mode, set up; waits up to `busy_timeout` for locks."""
        connection = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            if wal:
                self._enter_wal(connection)
            for statement in self._setup:
                connection.execute(statement).fetchall()
            # Reads the header and the WAL index: may wait for another connection's recovery.
            connection.execute("SELECT count(*) FROM sqlite_master").fetchall()
        except BaseException:
            connection.close()
            raise
        return connection

    def _enter_wal(self, connection: sqlite3.Connection) -> None:
        """Put the file in WAL mode, which lets readers and one writer work at once.

        While another connection is in the middle of the same switch (two workers starting on
        a new file) SQLite refuses it at once, without waiting through `busy_timeout`.  WAL is
        persistent, so retry until it is on, for at most `busy_timeout`.
        """
        attempts = int(self.busy_timeout / 0.005) + 1
        for _ in range(attempts):
            try:
                connection.execute("PRAGMA journal_mode = WAL").fetchall()
                return  # "wal", or, on a file system without shared memory, the mode kept
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
                error = exc
            time.sleep(0.005)
        raise unavailable(error) or StoreUnavailable(str(error)) from error

    async def open(self) -> None:
        """Open both connections; `StoreUnavailable` when locks stay held past the timeout."""
        self._busy_ms = None  # a new writer waits `busy_timeout` until told otherwise
        if self._memory:
            connection = _run_mapped(lambda: self._connect(wal=False))
            self._reader = self._writer = connection
            return
        # Two threads: commits that fsync, and checkpoints, which may run at the same time.
        executor = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="spm-sqlite")
        loop = asyncio.get_running_loop()
        try:
            self._writer = await _opened(
                loop.run_in_executor(executor, _run_mapped, lambda: self._connect(wal=True))
            )
            # Checkpoints (copying the WAL into the database file, with an fsync) are the
            # store's on the checkpoint thread, never a commit's on the event loop.
            self._writer.execute("PRAGMA wal_autocheckpoint = 0").fetchall()
            # The reader also opens on a thread: its first read may wait for a recovery.
            reader = await _opened(
                loop.run_in_executor(None, _run_mapped, lambda: self._connect(wal=False))
            )
            reader.execute("PRAGMA busy_timeout = 0")  # the loop must never wait in SQLite
            self._reader = reader
        except BaseException:
            writer, self._writer = self._writer, None
            if writer is not None:
                with contextlib.suppress(Exception):
                    await loop.run_in_executor(executor, writer.close)
            executor.shutdown(wait=False)
            raise
        self._executor = executor
        self._checkpoints = Checkpoints(
            self._writer, self._writer_lock, executor, lambda: self._connect(wal=False)
        )

    async def close(self) -> None:
        reader, writer, checkpoints = self._reader, self._writer, self._checkpoints
        executor = self._executor
        self._reader = self._writer = self._checkpoints = None
        self._executor = None
        if reader is not None and reader is not writer:
            reader.close()
        if checkpoints is not None:
            checkpoints.close()
        if writer is not None:
            async with self._writer_lock:
                if executor is None:
                    writer.close()
                else:
                    await asyncio.get_running_loop().run_in_executor(executor, writer.close)
        if executor is not None:
            executor.shutdown(wait=False)

    # --- statements ----------------------------------------------------------------------

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        """Run one statement on the event loop thread; its rows.

        For reads and small writes.  Answers within `busy_timeout`: rows, or
        `StoreUnavailable` when another connection held a lock all that time, the disk is
        full, or the file cannot be written.
        """
        reader = self._reader
        if reader is None:
            raise RuntimeError("SQLiteConnection is not open")
        sql = translate(sql)
        deadline: float | None = None
        attempt = 0
        while True:
            try:
                return reader.execute(sql, args).fetchall()
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise unavailable(exc) or exc from None
                error = exc
            # Busy: nothing was done.  Sleep on the loop, never in SQLite, so that the wait
            # has one deadline from the first try and queues behind no other statement.
            now = asyncio.get_running_loop().time()
            if deadline is None:
                deadline = now + self.busy_timeout
            if now >= deadline:
                raise unavailable(error) or StoreUnavailable(str(error)) from error
            await asyncio.sleep(min(backoff(attempt), deadline - now))
            attempt += 1

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def write_then_commit(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`BEGIN IMMEDIATE`, `work(connection)` on the event loop thread, `COMMIT` on the
        writer thread; rolled back if anything fails.

        The statements of `work` touch only SQLite's page cache (in WAL mode a write reaches
        the disk at commit), so they cost less on the loop than trips to a thread would, and
        the loop keeps the GIL while they run; the commit (its writes, a checkpoint now and
        then, and with `synchronous=FULL` an fsync) is the disk wait, and it runs on the thread.

        Raises `LockBusy` at once, having done nothing, when another connection holds the
        write lock; SQLite errors that mean "unavailable" as `StoreUnavailable`.
        """
        async with self._writer_lock:
            writer = self._writer
            if writer is None:
                raise RuntimeError("SQLiteConnection is not open")
            self.wait_for_locks(writer, 0)
            try:
                writer.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if is_busy(exc):
                    raise LockBusy from None
                raise unavailable(exc) or exc from None
            try:
                result = _run_mapped(lambda: work(writer))
                if not self._commit_on_thread:
                    # WAL, synchronous=NORMAL, no automatic checkpoint: the commit appends the
                    # group's pages to the WAL in the OS's cache, with no fsync.
                    _run_mapped(lambda: _commit(writer))
            except BaseException:
                _rollback(writer)
                raise
            if self._commit_on_thread:
                try:
                    await asyncio.shield(self._on_writer(_commit))
                except BaseException:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(self._on_writer(_rollback))
                    raise
            self._checkpoint_soon()
            return result

    def _checkpoint_soon(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.after_commit()

    async def _on_writer(self, function: Callable[[sqlite3.Connection], T]) -> T:
        writer = self._writer
        if writer is None:
            raise RuntimeError("SQLiteConnection is not open")
        if self._executor is None:
            return _run_mapped(lambda: function(writer))
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, _run_mapped, lambda: function(writer)
        )

    def wait_for_locks(self, connection: sqlite3.Connection, seconds: float) -> None:
        """Set how long `connection`'s next statements wait for another's lock (writer thread)."""
        ms = max(0, int(seconds * 1000))
        if ms != self._busy_ms:
            connection.execute(f"PRAGMA busy_timeout = {ms}").fetchall()
            self._busy_ms = ms

    @contextlib.asynccontextmanager
    async def transaction(self, *, timeout: float | None = None) -> AsyncIterator[_Transaction]:
        """`BEGIN IMMEDIATE` … `COMMIT` on the writer connection; rolled back on any error.
        Only the wait for the write lock has a bound, `busy_timeout`: once it is held, the
        statements take what they take, so `timeout` (PostgreSQL's whole deadline) changes
        nothing here."""
        async with self._writer_lock:

            def begin(connection: sqlite3.Connection) -> None:
                self.wait_for_locks(connection, self.busy_timeout)
                connection.execute("BEGIN IMMEDIATE")

            await self._on_writer(begin)
            try:
                yield _Transaction(self._on_writer)
            except BaseException:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._on_writer(_rollback))
                raise
            await self._on_writer(_commit)
            self._checkpoint_soon()


class LockBusy(Exception):
    """Another connection holds the write lock; nothing was done."""


async def _opened(opening: asyncio.Future[sqlite3.Connection]) -> sqlite3.Connection:
    """The connection a thread opens; closed, not leaked, when the open is cancelled while
    the thread is still at it (a thread cannot be stopped: its result arrives later)."""
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        opening.add_done_callback(_close_unclaimed)
        raise


def _close_unclaimed(opening: asyncio.Future[sqlite3.Connection]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()


def _commit(connection: sqlite3.Connection) -> None:
    connection.execute("COMMIT")


def _rollback(connection: sqlite3.Connection) -> None:
    if connection.in_transaction:
        connection.execute("ROLLBACK")


_Statement = Callable[[sqlite3.Connection], list[Any]]


class _Transaction:
    """Statements inside `SQLiteConnection.transaction()`, each a trip to the writer thread."""

    def __init__(self, on_writer: Callable[[_Statement], Awaitable[list[Any]]]) -> None:
        self._on_writer = on_writer

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        sql = translate(sql)
        return await self._on_writer(lambda c: c.execute(sql, args).fetchall())

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None
