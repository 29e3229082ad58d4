"""Writers of one PostgreSQL row in a process: the first writes at once, later ones together.

With 64 writers on one row, taking turns (one compare-and-set each, as before) made the row's
rate one round trip plus the event loop's delay per write: 0.32-0.47 of a bare upsert route,
whose upserts queue on the row lock inside PostgreSQL (benchmarks/README.md).  So writers that
arrive while a write of their row is in flight queue here (`RowWriters`), and one task writes
the whole queue as one step: each change runs, in arrival order, on the record the one before
produced (`combine`), and one compare-and-set statement stores the last record with every
revision, the clock moved by as many, and one NOTIFY (`batch_sql`).  Each writer is answered
with its own record, or its own refusal, once the statement is in.  A batch that cannot be one
step (no record remembered, a purge, a write that changes nothing, retention shorter than the
batch, another process's write in between) is written one change at a time, as before.

A queued writer that waits longer than the store's timeout is answered 503 and its change is
dropped from the queue, unless a batch already took it: then its write is in flight, and it
waits for the answer.  When the database does not answer in time (`StoreUnavailable`), the
writers queued behind are answered 503 at once, unwritten, instead of each being tried and
waiting out a timeout of its own: an outage costs every request one timeout, not several.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any

from ..base import Change, Record, StoreUnavailable
from ..rows import plan_rows

__all__ = ["Combined", "Queued", "RowWriters", "combine"]

Guard = tuple[str, Record] | None


class Queued:
    """A writer waiting for its row: its change, its guard, and where its answer goes."""

    __slots__ = ("change", "future", "guard", "taken")

    def __init__(self, change: Change, guard: Guard, future: asyncio.Future[Record]) -> None:
        self.change = change
        self.guard = guard
        self.future = future
        self.taken = False  # a batch holds it: its write may be in flight


@dataclass(slots=True)
class Combined:
    """Changes run one after another from `basis`: what one statement stores.

    `final` and `document` are the row's new state; `steps` each written record with its
    revision (all `None` with history off); `trim` retention's bound after the last;
    `answers` each change's record, or the exception it raised, in order."""

    final: Record
    document: str | None
    steps: list[tuple[Record, Any]]
    trim: int
    answers: list[Record | Exception]


def combine(basis: Record, changes: list[Change]) -> Combined | None:
    """The changes run in order, each on the record the one before stored (the first on
    `basis`); `None` when they cannot be one statement (see the module docstring)."""
    state = basis
    answers: list[Record | Exception] = []
    steps: list[tuple[Record, Any]] = []
    document: str | None = None
    trim = 0
    for change in changes:
        try:
            write = change(state)
        except Exception as exc:  # its refusal, decided on the record before it
            answers.append(exc)
            continue
        if write is None:
            answers.append(state)
            continue
        _, record, document, purge, revision, bound = plan_rows(state, write)
        if purge or record is None or (steps and (revision is None) != (steps[0][1] is None)):
            return None  # a purge, nothing to store, or history kept by some writes only
        steps.append((record, revision))
        trim = bound or 0
        answers.append(record)
        state = record
    if not steps or steps[0][0].version <= trim:
        return None  # nothing to store, or retention drops a revision of the batch itself
    return Combined(state, document, steps, trim, answers)


class RowWriters:
    """Per row: the first writer writes (`single`); those arriving meanwhile queue, and one
    task hands each batch to `batch`, which answers every writer's future."""

    def __init__(
        self,
        single: Callable[[Hashable, Change, Guard], Awaitable[Record]],
        batch: Callable[[Hashable, list[Queued]], Awaitable[None]],
        timeout: float,
    ) -> None:
        self.single = single
        self.batch = batch
        self.timeout = timeout
        self.queues: dict[Hashable, list[Queued]] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    async def write(self, key: Hashable, change: Change, guard: Guard) -> Record:
        queue = self.queues.get(key)
        if queue is None:
            queue = self.queues[key] = []
            outage: StoreUnavailable | None = None
            try:
                return await self.single(key, change, guard)
            except StoreUnavailable as exc:
                outage = exc
                raise
            finally:
                if queue and outage is None:  # writers came meanwhile: a task writes them
                    task = asyncio.get_running_loop().create_task(self._drain(key, queue))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
                else:
                    # The database did not answer in time: those who came meanwhile hear it
                    # now rather than each waiting out a timeout of their own.
                    del self.queues[key]
                    _answer_all(queue, outage or StoreUnavailable("the store is closing"))
        item = Queued(change, guard, asyncio.get_running_loop().create_future())
        # Its answer is read even if this writer is gone (cancelled): no "never retrieved".
        item.future.add_done_callback(_retrieve)
        queue.append(item)
        try:
            return await asyncio.wait_for(asyncio.shield(item.future), self.timeout)
        except TimeoutError:
            if not item.taken:
                queue.remove(item)
                raise StoreUnavailable(
                    f"PostgreSQL did not answer within {self.timeout} s"
                ) from None
            return await item.future  # in flight: its statement has its own deadline
        except asyncio.CancelledError:
            if not item.taken:
                with contextlib.suppress(ValueError):
                    queue.remove(item)
            raise

    async def _drain(self, key: Hashable, queue: list[Queued]) -> None:
        taken: list[Queued] = []
        try:
            while queue:
                taken = queue[:]
                del queue[:]
                for item in taken:
                    item.taken = True
                try:
                    await self.batch(key, taken)
                except Exception as exc:  # an outage: every writer taken or queued hears it
                    _answer_all([*taken, *queue], exc)
                    del queue[:]
                _answer_all(taken, RuntimeError("a batch left a writer unanswered"))
        finally:
            del self.queues[key]
            # Cancelled (the loop is closing): the outcome of what was taken is unknown.
            _answer_all([*taken, *queue], StoreUnavailable("the store is closing"))


def _answer_all(items: list[Queued], exc: Exception) -> None:
    """`exc` to every writer of `items` not answered yet."""
    for item in items:
        if not item.future.done():
            item.future.set_exception(exc)


def _retrieve(future: asyncio.Future[Record]) -> None:
    if not future.cancelled():
        future.exception()
