"""The kept SQLite connections: the fast path on the loop, waits on the thread."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid
from pathlib import Path

import pytest
from databases import Database, DatabaseURL

from starlette_platform_metadata.connections import (
    PostgresConnection,
    SQLiteConnection,
    postgres_database,
)
from starlette_platform_metadata.errors import StoreUnavailable

from .conftest import POSTGRES_URL

pytestmark = pytest.mark.anyio


async def test_a_held_lock_sends_the_statement_to_the_thread_then_503(tmp_path: Path) -> None:
    """The fast path never waits: a held write lock makes the thread wait, then 503."""
    path = tmp_path / "db.sqlite"
    conn = SQLiteConnection(Database(f"sqlite:///{path}"), busy_timeout=0.2)
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


async def test_connections_opening_one_new_file_at_once_all_open(tmp_path: Path) -> None:
    """Two workers starting on a new file race to switch it to WAL and to read its header.

    SQLite refuses either at once, without waiting through `busy_timeout`, while the other
    connection is mid-switch; before this was handled, about one start in twenty failed
    (a 500 on the first request).  Many fresh files make the race near certain to show.
    """
    for attempt in range(150):
        url = f"sqlite:///{tmp_path / f'{attempt}.sqlite'}"
        conns = [SQLiteConnection(Database(url), busy_timeout=5) for _ in range(3)]
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
    conn = PostgresConnection(postgres_database(url, timeout=5), timeout=5)
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
