"""SQLite's group commit: updates that arrive while a group is being written go in the next.

SQLite has one write lock per file.  Instead of a transaction per update, the updates queued
meanwhile are written as one group: one `BEGIN IMMEDIATE`, for each update its read, its change
and its rows, one `COMMIT` (`SQLiteConnection.write_then_commit`), so that with
`synchronous=FULL` concurrent writers share one fsync.  `GroupCommit` keeps the queue:
deadlines, cancellation, and retries while another process holds the lock; what a group writes
is its subclass's (`write_group`: the engine, sqlite.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ...metrics import NO_METRICS, Metrics
from ..base import Change, Record, StoreUnavailable
from .sqlite_connection import LockBusy, SQLiteConnection, backoff

__all__ = ["MAX_GROUP", "GroupCommit", "Key", "Queued"]

#: Updates written in one transaction at most.
MAX_GROUP = 512

#: A record's (platform_key, username).
Key = tuple[str, str]


@dataclass(slots=True)
class Queued:
    """An update waiting for its group: `change` for the record of `key`."""

    key: Key
    change: Change
    future: asyncio.Future[Record]
    deadline: float
    # Set while its group is being written: done once the group is committed or failed.
    group: asyncio.Future[None] | None = None
    # `update_guarded`'s guard: (username, state) of a record of the platform that must
    # still hold that state when this update is decided, in the group's transaction.
    guard: tuple[str, Record] | None = None


#: A group's work, done: the updates written, their outcomes, what to do on commit.
_Written = tuple[list[Queued], list[Record | Exception], Callable[[], None]]


class GroupCommit:
    """Updates of one SQLite connection, queued and written a group per transaction.

    Subclasses say what a group writes (`write_group`).  Not a component the engine calls but
    its base: `update` is on every write's path, and a call less there is a coroutine less.
    """

    def __init__(self, connection: SQLiteConnection) -> None:
        self.connection = connection
        self.metrics: Metrics = NO_METRICS  # told each group's size
        self._queue: list[Queued] = []
        self._flusher: asyncio.Task[None] | None = None

    def write_group(
        self, connection: sqlite3.Connection, updates: Sequence[Queued]
    ) -> tuple[list[Record | Exception], Callable[[], None]]:
        """Inside the group's transaction, for each update in order: read, change, write.

        Returns an outcome per update (its record, or what its change raised: that update
        alone is refused, the rest of the group goes on; `GuardMoved` for an update whose
        guard does not hold as the group has it), and what to do once the transaction has
        committed.
        """
        raise NotImplementedError

    async def update(
        self,
        platform_key: str,
        username: str,
        change: Change,
        guard: tuple[str, Record] | None = None,
    ) -> Record:
        """`change` applied to the record in the next group; within `busy_timeout`.  With
        `guard`, only if that record of the platform holds that state (`write_group`)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Record] = loop.create_future()
        deadline = loop.time() + self.connection.busy_timeout
        pending = Queued((platform_key, username), change, future, deadline, guard=guard)
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
        written as a queued group's, then committed, or rolled back as a whole when any change
        refuses.  The writer lock orders it with the queued groups."""
        loop = asyncio.get_running_loop()
        group = [
            Queued((platform_key, username), change, loop.create_future(), 0.0)
            for username, change in updates
        ]

        def work(connection: sqlite3.Connection) -> tuple[list[Record], Callable[[], None]]:
            outcomes, committed = self.write_group(connection, group)
            records: list[Record] = []
            for outcome in outcomes:
                if isinstance(outcome, Exception):
                    raise outcome  # write_then_commit rolls the whole group back
                records.append(outcome)
            return records, committed

        deadline = loop.time() + self.connection.busy_timeout
        attempt = 0
        while True:
            try:
                records, committed = await self.connection.write_then_commit(work)
            except LockBusy:
                now = loop.time()
                if now >= deadline:
                    raise StoreUnavailable("SQLite: the write lock stayed held") from None
                await asyncio.sleep(min(backoff(attempt), deadline - now))
                attempt += 1
                continue
            committed()
            self.metrics.group_committed(len(records))
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
            # One turn of the loop before the first group: the requests read in the same
            # turn as the one that started this flusher, but whose handlers run after the
            # flusher's first step, join its group instead of trailing it in a transaction
            # of their own (in some served runs a third of the groups were such groups of
            # one: benchmarks/README.md, "The PATCH tail, again").
            await asyncio.sleep(0)
            while self._queue:
                now = loop.time()
                group: list[Queued] = []
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
                try:
                    written, outcomes, committed = await self.connection.write_then_commit(
                        self._writing(group)
                    )
                except LockBusy:
                    done.set_result(None)
                    for pending in group:
                        pending.group = None
                    self._queue[:0] = group
                    earliest = min(p.deadline for p in group) - loop.time()
                    await asyncio.sleep(max(0.0, min(backoff(attempt), earliest)))
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
                committed()
                self.metrics.group_committed(len(written))
                attempt = 0
                for pending, outcome in zip(written, outcomes, strict=True):
                    if pending.future.done():
                        continue  # its call was cancelled; the write stands
                    if isinstance(outcome, Exception):
                        pending.future.set_exception(outcome)
                    else:
                        pending.future.set_result(outcome)
        finally:
            self._flusher = None

    def _writing(self, group: list[Queued]) -> Callable[[sqlite3.Connection], _Written]:
        """The group's work inside its transaction: the updates written (not those cancelled
        while the group waited for the lock), their outcomes, and what to do on commit."""

        def work(connection: sqlite3.Connection) -> _Written:
            live = [pending for pending in group if not pending.future.done()]
            return live, *self.write_group(connection, live)

        return work


def _fail(pending: Queued, exc: BaseException) -> None:
    if not pending.future.done():
        if isinstance(exc, asyncio.CancelledError):
            pending.future.cancel()
        else:
            pending.future.set_exception(exc)
