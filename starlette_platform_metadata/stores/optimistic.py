"""What an optimistic writer keeps within a process: `RowTurns`, `RecentRecords` and
`SentWrites`.

One writer at a time per row (`RowTurns`):
A store that writes optimistically (read, decide, compare-and-set) loses every race two
writers of one row run at once, and the loser pays the read and the write again.  Within one
process such races need not happen at all: writers of the same row wait their turn here, in
arrival order, so each one reads what the previous one wrote.  Writers of other rows never
wait.  Across processes the compare-and-set still decides.

The records this process last read or wrote (`RecentRecords`): the basis a compare-and-set
starts from without reading first.  Never an answer: a basis that is not the stored record
makes the compare-and-set fail, and the writer reads and decides again.

The compare-and-set statements sent and not yet settled (`SentWrites`): a writer hands the
row's turn on once its statement is sent, so the next write of the row travels while this one
waits for the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from typing import Any

from .base import Record

__all__ = ["RecentRecords", "RowTurns", "SentWrites", "applied"]

#: Sends one statement; sets the event (if any) just before the statement is written.
Send = Callable[[str, tuple[Any, ...], "asyncio.Event | None"], Awaitable[Any]]


class Turn:
    """A key's lock and how many hold it or wait for it."""

    __slots__ = ("count", "lock")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.count = 0


class RowTurns:
    """First come, first served per key; an entry lives only while someone holds or waits."""

    def __init__(self) -> None:
        self.entries: dict[Hashable, Turn] = {}

    @contextlib.asynccontextmanager
    async def turn(self, key: Hashable, timeout: float) -> AsyncIterator[None]:
        """Hold `key`'s turn; waiting longer than `timeout` raises `TimeoutError`."""
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = Turn()
        entry.count += 1
        try:
            if entry.lock.locked():
                async with asyncio.timeout(timeout):
                    await entry.lock.acquire()
            else:
                await entry.lock.acquire()
            try:
                yield
            finally:
                entry.lock.release()
        finally:
            entry.count -= 1
            if entry.count == 0:
                del self.entries[key]


class RecentRecords:
    """The last record seen per key, least recently used first out, bounded by the bytes of
    their documents (`max_bytes`)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.records: OrderedDict[Hashable, Record] = OrderedDict()

    def get(self, key: Hashable) -> Record | None:
        record = self.records.get(key)
        if record is not None:
            self.records.move_to_end(key)
        return record

    def put(self, key: Hashable, record: Record) -> None:
        self.discard(key)
        size = len(record.metadata_json)
        if size > self.max_bytes // 16:  # a few large documents would evict everything
            return
        self.records[key] = record
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, evicted = self.records.popitem(last=False)
            self.bytes -= len(evicted.metadata_json)

    def discard(self, key: Hashable) -> None:
        old = self.records.pop(key, None)
        if old is not None:
            self.bytes -= len(old.metadata_json)


def applied(attempt: asyncio.Future[Any]) -> bool:
    """Whether a settled compare-and-set stored its record (a row came back)."""
    return not attempt.cancelled() and attempt.exception() is None and attempt.result() is not None


def retrieve(attempt: asyncio.Future[Any]) -> None:
    """Mark a sent statement's failure as seen: its writer may have been cancelled."""
    if not attempt.cancelled():
        attempt.exception()


class SentWrites:
    """Per row, the compare-and-set last sent while it is unsettled."""

    def __init__(self, send: Send) -> None:
        self.send_statement = send
        self.unsettled: dict[Hashable, asyncio.Future[Any]] = {}

    async def send(self, key: Hashable, sql: str, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        """Send the statement (`attempt`); return once it is written, or settled if it
        fails before: the future of its row back, or `None`."""
        sent = asyncio.Event()
        previous = self.unsettled.get(key)
        attempt = asyncio.ensure_future(self.attempt(sql, args, sent, previous))
        attempt.add_done_callback(retrieve)
        self.unsettled[key] = attempt
        attempt.add_done_callback(functools.partial(self.settled, key))
        waiting = asyncio.ensure_future(sent.wait())
        await asyncio.wait((attempt, waiting), return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        return attempt

    async def attempt(
        self,
        sql: str,
        args: tuple[Any, ...],
        sent: asyncio.Event,
        previous: asyncio.Future[Any] | None,
    ) -> Any:
        """A compare-and-set sent after `previous` (the row's write sent before it, if still
        unsettled then).  Sent on two connections, the two may reach the row in either order;
        if this one came first it found the row still before `previous`'s write and failed.
        So when it fails and `previous` applied, it is sent again, once: the row now holds
        its basis unless another process wrote meanwhile."""
        row = await self.send_statement(sql, args, sent)
        if row is None and previous is not None:
            await asyncio.wait((previous,))
            if applied(previous):
                row = await self.send_statement(sql, args, None)
        return row

    def settled(self, key: Hashable, attempt: asyncio.Future[Any]) -> None:
        if self.unsettled.get(key) is attempt:
            del self.unsettled[key]
