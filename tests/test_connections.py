"""The kept SQLite connections: the fast path on the loop, waits on the thread."""

from __future__ import annotations

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
