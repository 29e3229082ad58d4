"""The kept SQLite connections: the fast path on the loop, waits on the thread."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from databases import Database

from starlette_platform_metadata.connections import SQLiteConnection
from starlette_platform_metadata.errors import StoreUnavailable

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
