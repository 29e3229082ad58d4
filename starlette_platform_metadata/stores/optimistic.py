"""What an optimistic writer keeps within a process: `RowTurns` and `RecentRecords`.

One writer at a time per row (`RowTurns`):
A store that writes optimistically (read, decide, compare-and-set) loses every race two
writers of one row run at once, and the loser pays the read and the write again.  Within one
process such races need not happen at all: writers of the same row wait their turn here, in
arrival order, so each one reads what the previous one wrote.  Writers of other rows never
wait.  Across processes the compare-and-set still decides.

The records this process last read or wrote (`RecentRecords`): the basis a compare-and-set
starts from without reading first.  Never an answer: a basis that is not the stored record
makes the compare-and-set fail, and the writer reads and decides again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Hashable

from .base import Record

__all__ = ["RecentRecords", "RowTurns"]


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

