"""The kept connections (`sql_connection`): SQLite's loop reads and writer thread, PostgreSQL's
pool, one SQL text for both."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
import uuid
from pathlib import Path

import pytest
from databases import Database, DatabaseURL

from starlette_platform_metadata import DatabaseStore, StoreUnavailable, changes
from starlette_platform_metadata.stores import sql_connection
from starlette_platform_metadata.stores.sql.postgres_connection import PostgresConnection

from .conftest import POSTGRES_URL

pytestmark = pytest.mark.anyio


async def test_a_held_lock_makes_a_statement_wait_then_503(tmp_path: Path) -> None:
    """Reads never wait for a writer; a write waits for the lock up to busy_timeout, then 503."""
    path = tmp_path / "db.sqlite"
    conn = sql_connection(f"sqlite:///{path}", busy_timeout=0.2)
    await conn.open()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        await conn.fetch("CREATE TABLE t (k INTEGER PRIMARY KEY)")
        other.execute("BEGIN IMMEDIATE")
        assert await conn.fetch("SELECT count(*) FROM t") == [(0,)]  # WAL readers never wait
        with pytest.raises(StoreUnavailable):
            await conn.fetch("INSERT INTO t VALUES (1)")
        other.execute("ROLLBACK")
        await conn.fetch("INSERT INTO t VALUES (1)")
        assert await conn.fetch("SELECT k FROM t") == [(1,)]
    finally:
        other.close()
        await conn.close()


async def test_a_store_connected_again_still_never_waits_for_the_lock_on_the_loop(
    tmp_path: Path,
) -> None:
    """A group finds the write lock taken at once (then sleeps on the loop and tries again),
    never in SQLite's busy handler, which would hold the event loop for `busy_timeout`; also
    after the store disconnected and connected again (its new writer connection once kept
    SQLite's wait, as the old one's setting was taken for the new one's, unless the DDL's
    transaction on connect happened to set it)."""
    path = tmp_path / "again.db"
    async with DatabaseStore(f"sqlite:///{path}"):
        pass  # the tables
    store = DatabaseStore(f"sqlite:///{path}", busy_timeout=1.0, create_tables=False)
    await store.update("p", "u", changes.patch({"a": 1}))
    await store.disconnect()
    await store.connect()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def ticking() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(ticking())
    try:
        with pytest.raises(StoreUnavailable):
            await store.update("p", "u", changes.patch({"a": 2}))
        assert ticks >= 20, ticks  # the loop ran on while the write waited for the lock
    finally:
        ticker.cancel()
        other.execute("ROLLBACK")
        other.close()
        await store.disconnect()


async def test_connections_opening_one_new_file_at_once_all_open(tmp_path: Path) -> None:
    """Two workers starting on a new file race to switch it to WAL and to read its header.

    SQLite refuses either at once, without waiting through `busy_timeout`, while the other
    connection is mid-switch; before this was handled, about one start in twenty failed
    (a 500 on the first request).  Many fresh files make the race near certain to show.
    """
    for attempt in range(150):
        url = f"sqlite:///{tmp_path / f'{attempt}.sqlite'}"
        conns = [sql_connection(url, busy_timeout=5) for _ in range(3)]
        try:
            await asyncio.gather(*(conn.open() for conn in conns))
            await asyncio.gather(
                *(conn.fetch("CREATE TABLE IF NOT EXISTS t (k INTEGER)") for conn in conns)
            )
            assert [await conn.fetch("PRAGMA journal_mode") for conn in conns] == [[("wal",)]] * 3
        finally:
            for conn in conns:
                await conn.close()


@pytest.mark.skipif(POSTGRES_URL is None, reason="TEST_POSTGRES_URL is not set (CI sets it)")
async def test_a_pooled_postgres_connection_comes_back_without_an_open_transaction() -> None:
    """The pool skips asyncpg's reset query, but a transaction left open (a task cancelled
    mid-transaction) is still rolled back: the next user of the connection is outside any
    transaction, and the row lock it held is free."""
    import asyncpg

    assert POSTGRES_URL is not None
    url = str(DatabaseURL(POSTGRES_URL).replace(query="min_size=1&max_size=1"))
    conn = sql_connection(url, busy_timeout=5)
    assert isinstance(conn, PostgresConnection)
    table = f"t_{uuid.uuid4().hex[:12]}"
    other = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.fetch(f"CREATE TABLE {table} (k INT PRIMARY KEY, v INT)")
        await conn.fetch(f"INSERT INTO {table} VALUES (1, 0)")
        async with conn.session() as raw:
            backend = await raw.fetchval("SELECT pg_backend_pid()")
            await raw.execute("BEGIN")
            await raw.execute(f"SELECT * FROM {table} WHERE k = 1 FOR UPDATE")
        async with conn.session() as raw:  # the same pooled connection (max_size 1)
            assert await raw.fetchval("SELECT pg_backend_pid()") == backend
            assert not raw.is_in_transaction()
            state = await raw.fetchval(
                "SELECT state FROM pg_stat_activity WHERE pid = pg_backend_pid()"
            )
            assert state == "active"  # running this query, not "idle in transaction"
        await asyncio.wait_for(other.execute(f"UPDATE {table} SET v = 1 WHERE k = 1"), 5)
    finally:
        with contextlib.suppress(Exception):
            await other.execute(f"DROP TABLE IF EXISTS {table}")
        await other.close()
        await conn.close()


async def test_sql_is_written_once_with_dollar_placeholders(tmp_path: Path) -> None:
    """`$2` before `$1`, and one placeholder used twice: SQLite binds them by number too."""
    conn = sql_connection(f"sqlite:///{tmp_path / 'p.db'}")
    await conn.open()
    try:
        row = await conn.fetchrow("SELECT $2, $1, $2 || $1", "a", "b")
        assert tuple(row) == ("b", "a", "ba")
    finally:
        await conn.close()


async def test_a_transaction_commits_together_or_not_at_all(tmp_path: Path) -> None:
    conn = sql_connection(f"sqlite:///{tmp_path / 't.db'}")
    await conn.open()
    try:
        await conn.fetch("CREATE TABLE t (k INTEGER PRIMARY KEY)")
        async with conn.transaction() as tx:
            await tx.fetch("INSERT INTO t VALUES ($1)", 1)
            await tx.fetch("INSERT INTO t VALUES ($1)", 2)
        with pytest.raises(sqlite3.IntegrityError):
            async with conn.transaction() as tx:
                await tx.fetch("INSERT INTO t VALUES ($1)", 3)
                await tx.fetch("INSERT INTO t VALUES ($1)", 1)  # a duplicate: all rolled back
        assert await conn.fetch("SELECT k FROM t ORDER BY k") == [(1,), (2,)]
        # Rolled back also when the task is cancelled inside.
        started = asyncio.Event()

        async def cancelled() -> None:
            async with conn.transaction() as tx:
                await tx.fetch("INSERT INTO t VALUES ($1)", 4)
                started.set()
                await asyncio.sleep(10)

        task = asyncio.ensure_future(cancelled())
        await started.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert await conn.fetch("SELECT k FROM t ORDER BY k") == [(1,), (2,)]
        async with conn.transaction() as tx:  # the writer is free again
            await tx.fetch("INSERT INTO t VALUES ($1)", 5)
        assert (await conn.fetch("SELECT max(k) FROM t")) == [(5,)]
    finally:
        await conn.close()


async def test_sqlite_url_options_are_refused() -> None:
    with pytest.raises(ValueError, match="options"):
        sql_connection("sqlite:///x.db?timeout=3")


@pytest.mark.skipif(POSTGRES_URL is None, reason="TEST_POSTGRES_URL is not set (CI sets it)")
async def test_a_store_never_disconnects_a_database_it_did_not_create() -> None:
    assert POSTGRES_URL is not None
    database = Database(POSTGRES_URL)
    await database.connect()
    try:
        store = DatabaseStore(database=database, table=f"t_{uuid.uuid4().hex[:12]}")
        async with store:
            assert (await store.get("p", "u")).version == 0
        assert database.is_connected
        assert await database.fetch_val("SELECT 1") == 1
    finally:
        await database.disconnect()


async def test_a_store_on_a_hosts_sqlite_database_leaves_it_alone(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'host.db'}")
    await database.connect()
    try:
        async with DatabaseStore(database=database) as store:
            assert (await store.get("p", "u")).version == 0
        assert database.is_connected
        assert await database.fetch_val("SELECT count(*) FROM platform_metadata") == 0
    finally:
        await database.disconnect()


async def test_the_store_checkpoints_so_the_wal_stays_bounded(tmp_path: Path) -> None:
    """Commits never checkpoint on the event loop (automatic checkpoints are off on the
    writer); the store's own checkpoints, on a thread, keep the WAL from growing with every
    write and move the data into the database file."""
    from starlette_platform_metadata import changes

    path = tmp_path / "wal.db"
    async with DatabaseStore(f"sqlite:///{path}") as store:
        for i in range(2500):
            await store.update("p", f"u{i}", changes.replace({"k": "v" * 100, "i": i}))
        await asyncio.sleep(0.3)  # a checkpoint in progress ends
        wal = (tmp_path / "wal.db-wal").stat().st_size
        assert wal < 16 * 1024 * 1024, wal  # about 2.3 pages per commit: 23 MB unchecked
        assert path.stat().st_size > 400 * 1024  # the rows reached the database file
        with contextlib.closing(sqlite3.connect(path)) as other:
            assert other.execute("PRAGMA wal_autocheckpoint").fetchone() == (1000,)


async def test_checkpoints_come_every_thousand_pages_however_large_the_rows(
    tmp_path: Path,
) -> None:
    """Rows of 12 KB (four pages each, written in groups): the WAL still starts over at about
    1,000 pages.  Counted in rows alone (a checkpoint every 1,000 rows), it grew to 3,100."""
    from starlette_platform_metadata import changes

    path = tmp_path / "big.db"
    async with DatabaseStore(f"sqlite:///{path}") as store:
        for start in range(0, 1500, 50):
            await asyncio.gather(
                *(
                    store.update("p", f"u{i}", changes.replace({"k": f"{i:05d}" * 2400}))
                    for i in range(start, start + 50)
                )
            )
        await asyncio.sleep(0.3)  # a checkpoint in progress ends
        assert (await store.get("p", "u1499")).metadata == {"k": "01499" * 2400}
        wal = (tmp_path / "big.db-wal").stat().st_size  # its largest: it never shrinks
    assert wal < 8 * 1024 * 1024, wal  # 1,000 pages and a group: about 5 MB


async def test_writes_go_on_while_a_checkpoint_copies_and_wait_only_for_its_last_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint's long pass (the copy of what the WAL held, its fsyncs) runs while writes
    go on: a write made while it is held up still lands.  Its second pass, under the writer
    lock, waits for the next commit and copies what came meanwhile, and then the next write
    starts the WAL over."""
    import threading

    from starlette_platform_metadata.stores.sql.sqlite_checkpoints import Checkpoints

    entered, release = threading.Event(), threading.Event()
    passes: list[bool] = []  # whether the writer lock was held, per pass
    checkpoint_now = Checkpoints._checkpoint_now

    def held_up(self: Checkpoints) -> int:
        passes.append(self._writer_lock.locked())
        if len(passes) == 1:
            entered.set()
            release.wait(10)
        return checkpoint_now(self)

    monkeypatch.setattr(Checkpoints, "_checkpoint_now", held_up)
    path = tmp_path / "db.sqlite"
    loop = asyncio.get_running_loop()
    async with DatabaseStore(f"sqlite:///{path}") as store:
        i = 0
        while not entered.is_set() and i < 5000:  # the first checkpoint comes after 250 rows
            await store.update("p", f"u{i}", changes.replace({"i": i}))
            i += 1
        assert await loop.run_in_executor(None, entered.wait, 5)
        try:
            during = await asyncio.wait_for(
                store.update("p", "during", changes.replace({"k": "v"})), 3
            )
        finally:
            release.set()
        assert during.metadata == {"k": "v"}
        await asyncio.sleep(0.2)
        # The first pass is over; the last waits for a commit, to run right after it.
        assert len(passes) == 1 and checkpointing()
        await store.update("p", "next", changes.replace({"k": "v"}))
        for _ in range(100):  # the second pass, then the checkpoint ends
            await asyncio.sleep(0.02)
            if len(passes) >= 2 and not checkpointing():
                break
        assert passes[1:2] == [True]  # the last pass held the writer lock
        await store.update("p", "after", changes.replace({"k": "v"}))
        with contextlib.closing(sqlite3.connect(path)) as other:
            # Everything up to the second pass was copied: the write after it started the
            # WAL over, so the WAL holds that one write's frames and nothing older.
            log = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            assert log[0] == 0 and log[1] < 10, log
            assert other.execute("SELECT count(*) FROM platform_metadata").fetchone()[0] == i + 3


async def test_closing_waits_for_a_checkpoint_pass_in_progress(tmp_path: Path) -> None:
    """The checkpoint's connection is closed only after the pass running on it: the store's
    threads are two, and closing a connection in the middle of a statement on another thread
    crashed the test process (a segfault in CI)."""
    import threading
    import time

    conn = sql_connection(f"sqlite:///{tmp_path / 'db.sqlite'}")
    await conn.open()
    entered = threading.Event()
    events: list[str] = []

    class Slow:
        """The checkpoint's connection, its statement slow."""

        def __init__(self, connection: sqlite3.Connection) -> None:
            self.connection = connection

        def execute(self, sql: str) -> sqlite3.Cursor:
            entered.set()
            time.sleep(0.3)
            events.append("statement done")
            return self.connection.execute(sql)

        def close(self) -> None:
            events.append("closed")
            self.connection.close()

    checkpoints = conn._checkpoints  # type: ignore[attr-defined]
    connect = checkpoints._connect
    checkpoints._connect = lambda: Slow(connect())
    checkpoint = asyncio.create_task(checkpoints._checkpoint())
    assert await asyncio.get_running_loop().run_in_executor(None, entered.wait, 5)
    await conn.close()
    await asyncio.wait({checkpoint}, timeout=5)
    assert checkpoint.done()  # it ends: no commit will come for a last pass to follow
    for _ in range(100):
        if "closed" in events:
            break
        await asyncio.sleep(0.02)
    assert events == ["statement done", "closed"]


async def test_a_wal_started_over_between_the_passes_still_counts_every_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the first pass copied everything and a write began after it, that write started
    the WAL over: the last pass then finds only the pages written since.  The rows until the
    next checkpoint count the pages of both passes; counted on the last pass's alone (90
    pages for 4,000 rows), the next checkpoint came 20,000 rows later, at 5,000 pages."""
    from starlette_platform_metadata.stores.sql.sqlite_checkpoints import (
        Checkpoints,
        rows_until_checkpoint,
    )

    conn = sql_connection(f"sqlite:///{tmp_path / 'db.sqlite'}")
    await conn.open()
    try:
        checkpoints = conn._checkpoints  # type: ignore[attr-defined]
        found = iter([1000, 90])  # the pages each pass finds in the WAL
        monkeypatch.setattr(Checkpoints, "_checkpoint_now", lambda self: next(found))
        checkpoints._running = True  # this test's checkpoint, none of the store's own
        checkpoints._at = -4000  # 4,000 rows since the last checkpoint
        checkpoint = asyncio.create_task(checkpoints._checkpoint())
        await asyncio.sleep(0.05)
        checkpoints.after_commit()  # the commit the last pass waits for
        await asyncio.wait_for(checkpoint, 5)
        assert checkpoints._rows == rows_until_checkpoint(4000, 1090) == 3669
    finally:
        await conn.close()


async def test_closing_ends_a_checkpoint_waiting_for_a_commit(tmp_path: Path) -> None:
    """A checkpoint whose last pass waits for the next commit ends when the connection closes:
    no commit will come, and a task left pending would outlive the store."""
    conn = sql_connection(f"sqlite:///{tmp_path / 'db.sqlite'}")
    await conn.open()
    checkpoints = conn._checkpoints  # type: ignore[attr-defined]
    checkpoints._running = True
    checkpoint = asyncio.create_task(checkpoints._checkpoint())
    for _ in range(250):
        if checkpoints._committed is not None:
            break
        await asyncio.sleep(0.02)
    assert checkpoints._committed is not None  # the first pass is over
    await conn.close()
    await asyncio.wait_for(checkpoint, 5)


def checkpointing() -> bool:
    """Whether a store's checkpoint task is still running on this loop."""
    return any(
        (task.get_coro().__qualname__ or "").startswith("Checkpoints.")
        for task in asyncio.all_tasks()
        if not task.done()
    )


def test_the_rows_between_checkpoints_follow_what_a_row_cost() -> None:
    """After each checkpoint the store writes as many rows as fill about 1,000 WAL pages,
    within bounds: history (a revision and a retention delete beside each record, 1,000
    rows filled 360 pages) checkpoints after 2,777 rows; small rows not more often than every
    20,000 (then 200 commits bound the WAL); large documents not less often than every 250."""
    from starlette_platform_metadata.stores.sql.sqlite_checkpoints import rows_until_checkpoint

    assert rows_until_checkpoint(1000, 360) == 2777
    assert rows_until_checkpoint(1000, 48) == 20_000
    assert rows_until_checkpoint(250, 4000) == 250
    assert rows_until_checkpoint(500, 0) == 20_000  # nothing reached the WAL
    assert rows_until_checkpoint(500, -1) == 250  # SQLite could not say: as often as allowed


@pytest.mark.skipif(POSTGRES_URL is None, reason="TEST_POSTGRES_URL is not set (CI sets it)")
async def test_pooled_connections_are_handed_out_first_come_first_served() -> None:
    """Thirty callers over a pool of three, each asking again as soon as it is served: every
    caller gets its connection in the order it asked.  asyncpg's pool alone lets a newcomer
    take a connection a woken waiter was about to get, and sends that waiter to the back of
    the queue again: under load some requests waited ten times the median."""
    assert POSTGRES_URL is not None
    url = str(DatabaseURL(POSTGRES_URL).replace(query="min_size=3&max_size=3"))
    conn = sql_connection(url, busy_timeout=30)
    assert isinstance(conn, PostgresConnection)
    tickets = itertools.count()
    served: list[int] = []

    async def caller() -> None:
        for _ in range(20):
            ticket = next(tickets)
            async with conn.session() as raw:
                served.append(ticket)
                await raw.fetchval("SELECT 1")

    try:
        await conn.fetch("SELECT 1")
        await asyncio.gather(*(caller() for _ in range(30)))
        overtaken = sum(1 for a, b in zip(served, served[1:]) if b < a)
        assert overtaken == 0, f"{overtaken} of {len(served)} were served before an earlier one"
    finally:
        await conn.close()
