"""One writer at a time per row, within a process: `RowTurns`.

A store that writes optimistically (read, decide, compare-and-set) loses every race two
writers of one row run at once, and the loser pays the read and the write again.  Within one
process such races need not happen at all: writers of the same row wait their turn here, in
arrival order, so each one reads what the previous one wrote.  Writers of other rows never
wait.  Across processes the compare-and-set still decides.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Hashable

__all__ = ["RowTurns"]


class Turn:
    """A key's lock and how many hold it or wait for it."""

    __slots__ = ("lock", "count")

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
