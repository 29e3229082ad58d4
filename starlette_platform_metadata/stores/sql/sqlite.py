"""SQLite: reads on the event loop, writes on one writer thread, committed in groups.

Two connections to one file, both with Python's own `sqlite3`:

- **Reads** run synchronously on the event loop thread.  A primary-key lookup in WAL mode takes
  microseconds, far less than a trip to a thread and back, and a reader never waits for a
  writer.  In the rare case SQLite answers "busy" (e.g. while another process recovers the
  file), the read is tried again after a short sleep on the loop, until `busy_timeout`.
- **Writes** go to a writer thread (a one-thread executor) with its own connection.  Updates
  that arrive while one is being written wait and then go together: one `BEGIN IMMEDIATE`, for
  each update a read, the package's change and a write, one `COMMIT`.  So the event loop never
  waits on the disk (a commit, a checkpoint, an fsync), and in durable mode
  (`synchronous=FULL`) concurrent writers share one fsync: group commit.

Why not aiosqlite: its public API runs one statement per trip to its thread; a group commit
needs a read, Python, and a write per update, many updates, under one lock, in one trip.  An
executor thread is the standard library's, and it never keeps the interpreter from exiting.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from ...jsontext import dump, keys_json
from ..base import EMPTY, Change, Record, StoreUnavailable
from ..rows import plan_rows
from .reads import REVISION_COLUMNS, SQLReads

logger = logging.getLogger("starlette_platform_metadata")

__all__ = ["LockBusy", "SQLiteConnection", "SQLiteEngine"]

T = TypeVar("T")

# SQLite's primary result codes (the low byte of the extended code `sqlite_errorcode`).
_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
_UNAVAILABLE_CODES = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN})
# Seconds between tries while another connection holds a lock: SQLite's own busy handler's
# schedule (sqliteDefaultBusyCallback), then its last step for as long as the deadline allows.
_BACKOFF = (0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.025, 0.025, 0.025, 0.05, 0.05, 0.1)
_PLACEHOLDER = re.compile(r"\$(\d+)")
#: User ids by (platform, username): assigned in a transaction, or remembered once committed.
_Ids = dict[tuple[str, str], int]
#: Updates written in one transaction at most.
MAX_GROUP = 512
#: A checkpoint comes once the WAL holds about this many pages, SQLite's own rhythm (its
#: automatic checkpoint, off on our writer, runs at 1,000), or after this many commits, whichever
#: is first.  The commit count bounds the WAL when writes come one at a time (about five pages
#: each).  Checkpointing more often costs writes: each checkpoint holds them back for its copy,
#: its fsyncs and two trips to a thread (benchmarks/README.md, "The checkpoint rhythm").
CHECKPOINT_PAGES = 1000
CHECKPOINT_COMMITS = 200
#: Pages cannot be counted as they are written, rows can (`total_changes`): each checkpoint
#: says how many pages the WAL held, and the rows until the next one follow what a row cost
#: (a revision, a retention delete and a large document each add pages), within these bounds.
#: The first checkpoint comes after the fewest.
CHECKPOINT_ROWS = (250, 20_000)


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
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpointing = False
        self._checkpointed_at = 0  # `total_changes` at the last checkpoint
        self._checkpoint_rows = CHECKPOINT_ROWS[0]
        self._commits = 0  # since the last checkpoint
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

    async def close(self) -> None:
        reader, writer, checkpointer = self._reader, self._writer, self._checkpointer
        executor = self._executor
        self._reader = self._writer = self._checkpointer = None
        self._executor = None
        if reader is not None and reader is not writer:
            reader.close()
        if checkpointer is not None and executor is not None:
            executor.submit(checkpointer.close)  # after a checkpoint in progress
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
            await asyncio.sleep(min(_BACKOFF[min(attempt, len(_BACKOFF) - 1)], deadline - now))
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
            self._checkpoint_soon(writer)
            return result

    def _checkpoint_soon(self, writer: sqlite3.Connection) -> None:
        """Checkpoint on a thread once enough rows or commits were written since the last."""
        if self._executor is None or self._checkpointing:
            return
        self._commits += 1
        rows = writer.total_changes - self._checkpointed_at
        if rows < self._checkpoint_rows and self._commits < CHECKPOINT_COMMITS:
            return
        self._checkpointing, self._commits = True, 0
        task = asyncio.get_running_loop().create_task(self._checkpoint())
        task.add_done_callback(self._checkpointed)

    async def _checkpoint(self) -> None:
        """Copy what the WAL holds into the database file, on a thread, between two writes.

        As SQLite's own automatic checkpoint, it runs while no write of ours is in progress
        (under the writer lock), so that once it has copied everything the next write starts
        the WAL over instead of growing it; our writes wait meanwhile (queued, never on the
        loop).  PASSIVE: readers and other processes are never waited for or blocked."""
        executor = self._executor
        async with self._writer_lock:
            writer = self._writer
            if executor is None or writer is None:
                return
            # No write of ours runs under the lock: these are the rows the WAL holds pages of.
            rows = writer.total_changes - self._checkpointed_at
            self._checkpointed_at = writer.total_changes
            loop = asyncio.get_running_loop()
            pages = await loop.run_in_executor(executor, self._checkpoint_now)
            self._checkpoint_rows = rows_until_checkpoint(rows, pages)

    def _checkpoint_now(self) -> int:
        """A passive checkpoint; the pages the WAL held (-1 when SQLite cannot say)."""
        if self._checkpointer is None:
            self._checkpointer = self._connect(wal=False)
        row = self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(row[1])

    def _checkpointed(self, task: asyncio.Task[None]) -> None:
        self._checkpointing = False
        if not task.cancelled() and task.exception() is not None:
            logger.warning("SQLite checkpoint failed: %s", task.exception())

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
                yield _Transaction(self)
            except BaseException:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._on_writer(_rollback))
                raise
            await self._on_writer(_commit)
            if self._writer is not None:
                self._checkpoint_soon(self._writer)


def rows_until_checkpoint(rows: int, pages: int) -> int:
    """The rows to write before the next checkpoint, after `rows` filled the WAL with `pages`:
    as many as fill `CHECKPOINT_PAGES`, within `CHECKPOINT_ROWS`.  The WAL's pages include
    other processes' and, after a checkpoint that could not finish (a reader was behind), older
    ones: then the estimate errs towards checkpointing sooner."""
    low, high = CHECKPOINT_ROWS
    if pages < 0:  # not in WAL mode: nothing to measure
        return low
    if pages == 0:
        return high
    return max(low, min(high, rows * CHECKPOINT_PAGES // pages))


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


class _Transaction:
    """Statements inside `SQLiteConnection.transaction()`, each a trip to the writer thread."""

    def __init__(self, connection: SQLiteConnection) -> None:
        self._connection = connection

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        sql = translate(sql)
        return await self._connection._on_writer(lambda c: c.execute(sql, args).fetchall())

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None


# --- the store's engine ------------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    key: tuple[str, str]
    change: Change
    future: asyncio.Future[Record]
    deadline: float
    # Set while its group is being written: done once the group is committed or failed.
    group: asyncio.Future[None] | None = None


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


# A record's created_at is written again with every change: render each once (bounded).  Not
# for `updated_at`, new with every write: its misses would only push the created_at out.
_timestamp = functools.lru_cache(maxsize=4096)(_iso)


# A record is read far more often than written, so the same timestamps come back read after
# read: parse each once (a bounded cache; what it holds is in the table anyway).
_fromisoformat = functools.lru_cache(maxsize=4096)(datetime.fromisoformat)


def _parse_timestamp(value: str | None) -> datetime | None:
    return None if value is None else _fromisoformat(value)


class SQLiteEngine(SQLReads):
    """The metadata table on a `SQLiteConnection`: reads on the loop, group-committed writes."""

    def __init__(self, connection: SQLiteConnection, table: str) -> None:
        super().__init__(connection, table)
        self.connection = connection
        t = table
        self._get_sql_native = translate(self._get_sql)  # run on sqlite3 directly
        self._many_one = (
            f"SELECT username, metadata, version, created_at, updated_at FROM {t} "
            "WHERE platform_key = ?1 AND username "
        )
        self._many_sql: dict[int, str] = {}
        self._put_sql = (
            f"INSERT INTO {t} (platform_key, username, metadata, version, created_at, "
            "updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
            "ON CONFLICT (platform_key, username) DO UPDATE SET metadata = excluded.metadata, "
            "version = excluded.version, created_at = excluded.created_at, "
            "updated_at = excluded.updated_at"
        )
        # History is keyed by user ids (store.py, `history_schema`).  A reader finds the
        # id in the statement itself (one search of the UNIQUE index, evaluated once).
        h, users = f"{t}_history", f"{t}_user_ids"
        find_user = f"SELECT id FROM {users} WHERE platform_key = $1 AND username = $2"
        user = f"({find_user})"
        self._user_id_sql = translate(find_user)
        self._new_user_sql = f"INSERT INTO {users} (platform_key, username) VALUES (?1, ?2)"
        self._user_ids: _Ids = {}
        # Once this engine has written a revision, a record read for a user whose id it does
        # not remember also reads the id (hosts with history off never pay for it).
        self._keeps_history = False
        self._get_with_id_sql = translate(self._get_sql.replace(" FROM ", f", {user} FROM ", 1))
        self._revisions_sql = (
            f"SELECT {REVISION_COLUMNS} FROM {h} WHERE user_id = {user} "
            "AND version < $3 ORDER BY version DESC LIMIT $4"
        )
        self._changes_sql = (
            f"SELECT u.username, {REVISION_COLUMNS} FROM {h} AS h JOIN {users} AS u "
            "ON u.id = h.user_id WHERE h.platform_key = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        )
        self._changes_of_sql = self._changes_sql.replace(
            "AND seq > $2", "AND seq > $2 AND u.username IN (SELECT value FROM json_each($4))"
        )
        self._insert_revision_sql = (
            f"INSERT INTO {h} (user_id, platform_key, version, operation, actor, at, metadata, "
            "changed_keys, created_at, seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) "
            "ON CONFLICT (user_id, version) DO UPDATE SET "
            "operation = excluded.operation, actor = excluded.actor, at = excluded.at, "
            "metadata = excluded.metadata, changed_keys = excluded.changed_keys, "
            "created_at = excluded.created_at, seq = excluded.seq"
        )
        self._purge_sql = f"DELETE FROM {h} WHERE user_id = ?1"
        # Retention: the revisions of versions older than the newest `keep` (`?2` is
        # `version - keep`), one range of the primary key.
        self._trim_sql = f"DELETE FROM {h} WHERE user_id = ?1 AND version <= ?2"
        self._position_sql_native = translate(self._position_sql)
        self._clock_sql = (
            f"INSERT INTO {t}_clock (platform_key, seq, horizon) VALUES (?1, ?2, 0) "
            "ON CONFLICT (platform_key) DO UPDATE SET seq = excluded.seq"
        )
        # Before retention drops a user's oldest revisions: the newest `seq` among them.
        # One statement per platform and group: `?2` is a JSON object {"user id": version
        # bound}, one primary-key probe a member, in SQLite's C rather than a statement each
        # (CROSS JOIN keeps the members the outer loop: the other order scans the history).
        # An object, not an array of pairs: `json_each` hands over each key and value as they
        # are, where `pair ->> 0` would parse each pair again (4,800 instructions a write).
        self._horizon_sql = (
            f"UPDATE {t}_clock SET horizon = max(horizon, coalesce((SELECT max(h.seq) FROM "
            f"json_each(?2) AS bound CROSS JOIN {h} AS h ON h.user_id = CAST(bound.key AS "
            "INTEGER) AND h.version <= bound.value), 0)) WHERE platform_key = ?1"
        )
        self._data_version: int | None = None
        self._queue: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None

    def timestamp(self, value: Any) -> datetime | None:
        return _parse_timestamp(value)

    async def get_many(self, platform_key: str, usernames: Sequence[str]) -> list[Record]:
        if not usernames:
            return []
        sql = self._many_sql.get(len(usernames))
        if sql is None:
            sql = _select_many(self._many_one, len(usernames))
            if len(usernames) <= _FEW:  # one text per count (a GET asks for two): keep a few
                self._many_sql[len(usernames)] = sql
        rows = await self.connection.fetch(sql, platform_key, *usernames)
        found = {row[0]: self._record(row[1:]) for row in rows}
        return [found.get(name, EMPTY) for name in usernames]

    async def update(self, platform_key: str, username: str, change: Change) -> Record:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Record] = loop.create_future()
        deadline = loop.time() + self.connection.busy_timeout
        pending = _Pending((platform_key, username), change, future, deadline)
        self._queue.append(pending)
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        try:
            return await future
        except asyncio.CancelledError:
            # `future` is cancelled with us.  Still queued, it is dropped.  If its group has
            # reached the database, the write happens or not with the group: wait for that,
            # so that the store is settled when this call ends, as after any other answer.
            group = pending.group
            if group is not None and not group.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait({group})
            raise

    async def update_many(
        self, platform_key: str, updates: Sequence[tuple[str, Change]]
    ) -> list[Record]:
        """The updates as one group of their own, in one transaction: every change decided and
        written by the group machinery (`_write_group`), then committed, or rolled back as a
        whole when any change refuses.  The writer lock orders it with the queued groups."""
        loop = asyncio.get_running_loop()
        group = [
            _Pending((platform_key, username), change, loop.create_future(), 0.0)
            for username, change in updates
        ]
        new_ids: _Ids = {}

        def work(connection: sqlite3.Connection) -> list[Record]:
            records: list[Record] = []
            for outcome in self._write_group(connection, group, new_ids):
                if isinstance(outcome, BaseException):
                    raise outcome  # write_then_commit rolls the whole group back
                records.append(outcome)
            return records

        deadline = loop.time() + self.connection.busy_timeout
        attempt = 0
        while True:
            try:
                records = await self.connection.write_then_commit(work)
            except LockBusy:
                now = loop.time()
                if now >= deadline:
                    raise StoreUnavailable("SQLite: the write lock stayed held") from None
                step = _BACKOFF[min(attempt, len(_BACKOFF) - 1)]
                await asyncio.sleep(min(step, deadline - now))
                attempt += 1
                continue
            self._remember(new_ids)
            return records

    async def _flush(self) -> None:
        """Write what is queued, a group per transaction, until nothing is left.

        While another connection holds the write lock, the group is tried again after a short
        sleep (SQLite's own busy schedule), joined by what arrived meanwhile; each update
        gives up at its own deadline, and one cancelled while waiting is dropped.
        """
        loop = asyncio.get_running_loop()
        attempt = 0
        try:
            while self._queue:
                now = loop.time()
                group: list[_Pending] = []
                done: asyncio.Future[None] = loop.create_future()
                for pending in self._queue[:MAX_GROUP]:
                    if pending.future.done():
                        continue  # cancelled before it was written
                    if pending.deadline <= now:
                        _fail(pending, StoreUnavailable("SQLite: the write lock stayed held"))
                        continue
                    pending.group = done
                    group.append(pending)
                del self._queue[:MAX_GROUP]
                if not group:
                    continue
                new_ids: _Ids = {}
                try:
                    outcomes = await self.connection.write_then_commit(
                        functools.partial(self._write_group, group=group, new_ids=new_ids)
                    )
                except LockBusy:
                    done.set_result(None)
                    for pending in group:
                        pending.group = None
                    self._queue[:0] = group
                    earliest = min(p.deadline for p in group) - loop.time()
                    step = _BACKOFF[min(attempt, len(_BACKOFF) - 1)]
                    await asyncio.sleep(max(0.0, min(step, earliest)))
                    attempt += 1
                    continue
                except BaseException as exc:  # nothing of the group was written
                    done.set_result(None)
                    for pending in group:
                        _fail(pending, exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                done.set_result(None)
                self._remember(new_ids)
                attempt = 0
                for pending, outcome in zip(group, outcomes, strict=True):
                    if pending.future.done():
                        continue  # its call was cancelled; the write stands (or never was)
                    if isinstance(outcome, BaseException):
                        pending.future.set_exception(outcome)
                    else:
                        pending.future.set_result(outcome)
        finally:
            self._flusher = None

    def _write_group(
        self,
        connection: sqlite3.Connection,
        group: list[_Pending],
        new_ids: _Ids,
    ) -> list[Record | BaseException]:
        """Inside the group's transaction: for each update, read and change; then the writes.

        The group's rows go in with one `executemany` per statement at the end (the loop over
        them runs in C, not Python): a later update of the same record in the group reads what
        an earlier one decided from `written`, never from the table.
        """
        written: dict[tuple[str, str], Record] = {}
        outcomes: list[Record | BaseException] = []
        rows = _GroupRows()
        clocks = rows.clocks
        for pending in group:
            if pending.future.done():  # cancelled while the group waited: never written
                outcomes.append(asyncio.CancelledError())
                continue
            current = written.get(pending.key)
            if current is None:
                if (
                    self._keeps_history
                    and pending.key not in self._user_ids
                    and pending.key not in new_ids
                ):
                    # Its id, if it has one, comes with the record: no statement of its own.
                    row = connection.execute(self._get_with_id_sql, pending.key).fetchone()
                    if row is not None:
                        if row[4] is not None:
                            self._remember({pending.key: row[4]})
                        row = row[:4]
                else:
                    row = connection.execute(self._get_sql_native, pending.key).fetchone()
                current = self._record(row)
            try:
                write = pending.change(current)
            except Exception as exc:  # a refusal (or a bug) of this update alone
                outcomes.append(exc)
                continue
            if write is None:
                outcomes.append(current)
                continue
            plan = plan_rows(current, write)
            record = plan.record
            updated = None
            if record is not None:
                updated = _iso(record.updated_at)
                # The record's last state in the group is the one written.
                rows.records[pending.key] = (
                    *pending.key,
                    plan.document,
                    record.version,
                    _timestamp(record.created_at),
                    updated,
                )
                written[pending.key] = record
            if plan.purge:  # after this record's earlier revisions, before its next ones
                self._write_rows(connection, rows)
                user_id = self._found_user_id(connection, pending.key, new_ids)
                if user_id is not None:
                    connection.execute(self._purge_sql, (user_id,))
            revision = plan.revision
            if revision is not None:
                self._keeps_history = True
                platform_key = pending.key[0]
                user_id = self._user_ids.get(pending.key) or self._user_id(
                    connection, pending.key, new_ids
                )
                seq = clocks.get(platform_key)
                if seq is None:  # the group holds the write lock: nobody else moves it
                    row = connection.execute(self._position_sql_native, (platform_key,)).fetchone()
                    seq = row[0] if row else 0
                clocks[platform_key] = seq = seq + 1
                at = (
                    updated
                    if updated is not None and revision.at == plan.stored.updated_at
                    else _iso(revision.at)
                )
                rows.revisions.append(
                    (
                        user_id,
                        platform_key,
                        revision.version,
                        revision.operation,
                        revision.actor,
                        at,
                        revision.metadata_json,
                        keys_json(revision.changed_keys),
                        _timestamp(revision.created_at),
                        seq,
                    )
                )
                # A user's later revision in the group moves the bound up: one range delete
                # per user and group.
                if plan.trim is not None:
                    rows.trims[user_id] = (platform_key, plan.trim)
            outcomes.append(plan.stored)
        self._write_rows(connection, rows)
        return outcomes

    def _found_user_id(
        self, connection: sqlite3.Connection, key: tuple[str, str], new_ids: _Ids
    ) -> int | None:
        """The user's id in `<table>_user_ids` if it has one, inside the group's transaction:
        remembered, or found (committed, by us or another process: it never changes)."""
        user_id = self._user_ids.get(key) or new_ids.get(key)
        if user_id is None:
            row = connection.execute(self._user_id_sql, key).fetchone()
            if row is not None:
                user_id = row[0]
                self._remember({key: user_id})
        return user_id

    def _user_id(self, connection: sqlite3.Connection, key: tuple[str, str], new_ids: _Ids) -> int:
        """The user's id, assigned now if it has none; a new id goes to `new_ids`, for the
        engine to remember once the transaction has committed."""
        user_id = self._found_user_id(connection, key, new_ids)
        if user_id is None:
            user_id = connection.execute(self._new_user_sql, key).lastrowid
            assert user_id is not None
            new_ids[key] = user_id
        return user_id

    def _remember(self, ids: _Ids) -> None:
        """Keep committed user ids; a bounded memo (the table has them all)."""
        if len(self._user_ids) + len(ids) > _USER_IDS:
            self._user_ids.clear()
        self._user_ids.update(ids)

    def _write_rows(self, connection: sqlite3.Connection, rows: _GroupRows) -> None:
        if rows.records:
            connection.executemany(self._put_sql, rows.records.values())
        if rows.revisions:
            connection.executemany(self._insert_revision_sql, rows.revisions)
            connection.executemany(self._clock_sql, rows.clocks.items())
        if rows.trims:
            bounds: dict[str, dict[int, int]] = {}
            for user_id, (platform_key, version) in rows.trims.items():
                bounds.setdefault(platform_key, {})[user_id] = version
            connection.executemany(
                self._horizon_sql, [(key, dump(users)) for key, users in bounds.items()]
            )
            connection.executemany(
                self._trim_sql, [(user_id, bound) for user_id, (_, bound) in rows.trims.items()]
            )
        rows.records.clear()
        rows.revisions.clear()
        rows.trims.clear()  # the clocks stay: the group's later revisions count on from them

    def _names(self, usernames: Sequence[str]) -> Any:
        return dump(list(usernames))

    async def poll(self) -> bool:
        """Whether any connection (ours, another process's) committed since the last call:
        `PRAGMA data_version`, microseconds on the loop."""
        rows = await self.connection.fetch("PRAGMA data_version")
        version: int = rows[0][0]
        moved = version != self._data_version
        self._data_version = version
        return moved

    async def close(self) -> None:
        """Forget the user ids: the store may connect again to another file of the same name.
        (The connection is the store's.)"""
        self._user_ids.clear()
        self._keeps_history = False


@dataclass(slots=True)
class _GroupRows:
    """Rows a group writes, in order: records, revisions, platform clocks, retention.

    Records and retention bounds are keyed by user: when the group changes a user several
    times (one popular record), only the last state and the highest bound are written, the
    same rows as one write after another would leave, in one statement each."""

    records: dict[tuple[str, str], tuple[Any, ...]] = field(default_factory=dict)
    revisions: list[tuple[Any, ...]] = field(default_factory=list)
    clocks: dict[str, int] = field(default_factory=dict)
    trims: dict[int, tuple[str, int]] = field(default_factory=dict)


#: User ids the engine remembers, at most (about 100 bytes each); past it, it starts over.
_USER_IDS = 100_000

#: Up to this many names, `get_many` runs one primary-key search per name.
_FEW = 8


def _select_many(one: str, count: int) -> str:
    """The statement of `get_many` for `count` names (`?2`...), `one` ending in `username `.

    A few names: a search each, `UNION ALL` (a name twice comes back twice, which the caller's
    dict absorbs).  `username IN (?2, ?3)` first builds a temporary table of the list: 5.7 us
    against 4.3 for the two names of every GET, measured on the loop's connection.  More
    names: the `IN` list, one statement of any length."""
    if count <= _FEW:
        return " UNION ALL ".join(f"{one}= ?{i}" for i in range(2, count + 2))
    marks = ", ".join(f"?{i}" for i in range(2, count + 2))
    return f"{one}IN ({marks})"


def _fail(pending: _Pending, exc: BaseException) -> None:
    if not pending.future.done():
        if isinstance(exc, asyncio.CancelledError):
            pending.future.cancel()
        else:
            pending.future.set_exception(exc)
