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
