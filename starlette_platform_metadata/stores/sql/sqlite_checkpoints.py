"""SQLite's WAL checkpoints, run by the store on a thread, the last pass between two writes.

A checkpoint copies what the WAL holds into the database file, with an fsync: on the event loop
it would stall every request of the process, so the writer connection turns SQLite's automatic
checkpoint off and `Checkpoints` runs them instead, on a thread of the connection's, in
SQLite's own rhythm (docs/stores.md, "SQLite, where the disk waits go").
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sqlite3
import threading
from collections.abc import Callable

logger = logging.getLogger("starlette_platform_metadata")

__all__ = [
    "CHECKPOINT_COMMITS",
    "CHECKPOINT_PAGES",
    "CHECKPOINT_ROWS",
    "Checkpoints",
    "rows_until_checkpoint",
]

#: A checkpoint comes once the WAL holds about this many pages, SQLite's own rhythm (its
#: automatic checkpoint, off on our writer, runs at 1,000), or after this many commits, whichever
#: is first.  The commit count bounds the WAL when writes come one at a time (about five pages
#: each).  Checkpointing more often costs writes: each checkpoint holds them back for its copy,
#: its fsyncs and two trips to a thread (benchmarks/README.md, "The checkpoint rhythm"; since
#: then only the last pass holds writes back: "The PATCH tail").
CHECKPOINT_PAGES = 1000
CHECKPOINT_COMMITS = 200
#: Pages cannot be counted as they are written, rows can (`total_changes`): each checkpoint
#: says how many pages the WAL held, and the rows until the next one follow what a row cost
#: (a revision, a retention delete and a large document each add pages), within these bounds.
#: The first checkpoint comes after the fewest.
CHECKPOINT_ROWS = (250, 20_000)


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


class Checkpoints:
    """The checkpoints of one open writer connection.

    Args:
        writer: the connection whose commits fill the WAL (its `total_changes` counts rows).
        writer_lock: held by every write of ours; a checkpoint's last pass holds it too, so
            that it runs between two writes, as SQLite's own automatic checkpoint would.
        executor: the connection's threads; a checkpoint runs on one of them.
        connect: opens the checkpoint's own connection (on the thread, at the first one).
    """

    def __init__(
        self,
        writer: sqlite3.Connection,
        writer_lock: asyncio.Lock,
        executor: concurrent.futures.ThreadPoolExecutor,
        connect: Callable[[], sqlite3.Connection],
    ) -> None:
        self._writer: sqlite3.Connection | None = writer
        self._writer_lock = writer_lock
        self._executor = executor
        self._connect = connect
        self._connection: sqlite3.Connection | None = None
        # Held on the threads while the checkpoint's connection is used or closed: the
        # executor has two threads, and closing a connection in the middle of a statement on
        # it crashes the process.
        self._using = threading.Lock()
        self._running = False
        self._at = 0  # `total_changes` at the last checkpoint
        self._rows = CHECKPOINT_ROWS[0]
        self._commits = 0  # since the last checkpoint
        # Set by the next commit of ours: the last pass waits for it (`_checkpoint`).
        self._committed: asyncio.Future[None] | None = None

    def after_commit(self) -> None:
        """Checkpoint on a thread once enough rows or commits were written since the last;
        a checkpoint waiting for a commit to run its last pass after runs it now."""
        self._end_wait()
        writer = self._writer
        if writer is None or self._running:
            return
        self._commits += 1
        rows = writer.total_changes - self._at
        if rows < self._rows and self._commits < CHECKPOINT_COMMITS:
            return
        self._running, self._commits = True, 0
        task = asyncio.get_running_loop().create_task(self._checkpoint())
        task.add_done_callback(self._done)

    async def _checkpoint(self) -> None:
        """Copy what the WAL holds into the database file, on a thread, in two passes.

        The first pass runs while our writes go on: it fsyncs the WAL and copies what the WAL
        held when it started, the long part.  The second runs under the writer lock, while
        no write of ours is in progress, as SQLite's own automatic checkpoint would: it copies
        only what was written during the first, so that once it has copied everything the
        next write starts the WAL over instead of growing it.  Writes wait (queued, never on
        the loop) for the second pass alone (benchmarks/README.md, "The PATCH tail").

        The second pass starts right after a commit of ours, when the next group is furthest
        off: under load, requests come and go in waves, a group a wave, and the pass runs
        while the wave's answers go out and the next wave is read, instead of holding back a
        group that is ready ("The PATCH tail, again").  PASSIVE: readers and other processes
        are never waited for or blocked."""
        loop = asyncio.get_running_loop()
        if self._writer is None:  # closed meanwhile
            return
        first = await loop.run_in_executor(self._executor, self._checkpoint_now)
        if self._writer is None:  # closed meanwhile: no commit will come
            return
        self._committed = loop.create_future()
        try:
            await self._committed
        finally:
            self._committed = None
        async with self._writer_lock:
            writer = self._writer
            if writer is None:  # closed meanwhile
                return
            # No write of ours runs under the lock: these are the rows the WAL holds pages of
            # (the first pass copied most of them, and left them in the WAL until it starts
            # over).
            rows = writer.total_changes - self._at
            self._at = writer.total_changes
            pages = await loop.run_in_executor(self._executor, self._checkpoint_now)
        # When the first pass copied everything and a write began after it, that write
        # started the WAL over: the rows' pages are the first pass's and the second's.
        if 0 <= pages < first:
            pages += first
        self._rows = rows_until_checkpoint(rows, pages)

    def _checkpoint_now(self) -> int:
        """A passive checkpoint; the pages the WAL held (-1 when SQLite cannot say)."""
        with self._using:
            if self._writer is None:  # closed since this pass was sent to the thread
                return -1
            if self._connection is None:
                self._connection = self._connect()
            row = self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            return int(row[1])

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running = False
        if not task.cancelled() and task.exception() is not None:
            logger.warning("SQLite checkpoint failed: %s", task.exception())

    def close(self) -> None:
        """No checkpoint from now on; the checkpoint's connection closes on a thread, after
        the pass in progress, if any."""
        self._writer = None
        self._end_wait()  # no commit will come: a checkpoint waiting for one ends
        self._executor.submit(self._close_connection)

    def _end_wait(self) -> None:
        """A checkpoint waiting for the next commit (`_checkpoint`) goes on."""
        committed = self._committed
        if committed is not None and not committed.done():
            committed.set_result(None)

    def _close_connection(self) -> None:
        with self._using:
            connection, self._connection = self._connection, None
            if connection is not None:
                connection.close()
