"""SQLite's checkpoints (stores/sql/sqlite_checkpoints.py): the WAL kept bounded, in SQLite's
own rhythm of pages, in two passes of which only the last holds writes back."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import pytest

from starlette_platform_metadata import DatabaseStore, changes
from starlette_platform_metadata.stores import sql_connection

pytestmark = pytest.mark.anyio


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
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows of 12 KB (four pages each, written in groups): each checkpoint still starts once
    the WAL holds about 1,000 pages.  Counted in rows alone (a checkpoint every 1,000 rows),
    they started at 3,100.  (The WAL file grows past that start by what is written during the
    first pass, which runs while writes go on: on a loaded machine, a slow pass, 8-10 MB.)"""
    from starlette_platform_metadata import changes
    from starlette_platform_metadata.stores.sql.sqlite_checkpoints import Checkpoints

    pages: list[int] = []  # per pass: a checkpoint's first, then its last, and so on
    checkpoint_now = Checkpoints._checkpoint_now

    def counted(self: Checkpoints) -> int:
        found = checkpoint_now(self)
        pages.append(found)
        return found

    monkeypatch.setattr(Checkpoints, "_checkpoint_now", counted)
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
    starts = pages[0::2]
    assert len(starts) >= 2, pages  # 1,500 rows of ~3 pages: a checkpoint every ~330 rows
    assert max(starts) < 2000, pages  # 1,000 pages and a group or two
    assert wal < 16 * 1024 * 1024, wal


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
