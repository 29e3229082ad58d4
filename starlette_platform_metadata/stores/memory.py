"""An in-process store for tests and demos: a dict, no I/O."""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from typing import Any

from .base import EMPTY, POLICY_USERNAME, Change, GuardMoved, Record, Revision, Write
from .dumps import DumpError, DumpRow, NotEmpty, StoredClock, StoredRecord, StoredRevision, Table
from .filters import matches
from .rows import plan_rows

__all__ = ["MemoryStore"]


class MemoryStore:
    """Keeps every record, and its history, in dicts.

    `update` runs without awaiting, so on one event loop it is atomic by construction, history
    included.  Data is lost with the process and not shared between workers.
    """

    def __init__(self) -> None:
        self._records: dict[tuple[str, str], Record] = {}
        # Oldest first; a revision's version is always above the ones before it.
        self._history: dict[tuple[str, str], deque[Revision]] = {}
        # Per platform: the newest change sequence number and retention's horizon.
        self._clock: dict[str, list[int]] = {}

    async def get(self, platform_key: str, username: str) -> Record:
        return self._records.get((platform_key, username), EMPTY)

    async def update(self, platform_key: str, username: str, change: Change) -> Record:
        key = (platform_key, username)
        current = self._records.get(key, EMPTY)
        write = change(current)
        if write is None:
            return current
        stored, record, _, purge, revision, trim = plan_rows(current, write)
        if record is not None:
            self._records[key] = record
        if purge:
            self._history.pop(key, None)
        if revision is not None:
            clock = self._clock.setdefault(platform_key, [0, 0])
            clock[0] += 1
            kept = self._history.setdefault(key, deque())
            kept.append(dataclasses.replace(revision, seq=clock[0]))
            if trim is not None:
                while kept and kept[0].version <= trim:
                    dropped = kept.popleft()
                    clock[1] = max(clock[1], dropped.seq or 0)
        return stored

    async def update_guarded(
        self, platform_key: str, username: str, change: Change, guard: tuple[str, Record]
    ) -> Record:
        """`update`, only while the record of `guard[0]` holds `guard[1]` (`GuardedWriter`):
        the check and the write run with no await between them."""
        if self._records.get((platform_key, guard[0]), EMPTY) != guard[1]:
            raise GuardMoved(f"{guard[0]!r} of {platform_key!r} changed")
        return await self.update(platform_key, username, change)

    async def get_many(self, platform_key: str, usernames: Sequence[str]) -> list[Record]:
        return [self._records.get((platform_key, name), EMPTY) for name in usernames]

    async def update_many(
        self, platform_key: str, updates: Sequence[tuple[str, Change]]
    ) -> list[Record]:
        """Every change decided before any is kept, with no await between: all or nothing."""
        if len({username for username, _ in updates}) != len(updates):
            raise ValueError("update_many: each username at most once")
        decided: list[tuple[str, Record, Write | None]] = []
        for username, change in updates:
            current = self._records.get((platform_key, username), EMPTY)
            decided.append((username, current, change(current)))
        # `update` never awaits: each runs to its end before the next, the whole loop too.
        return [
            current if write is None else await self.update(platform_key, username, _fixed(write))
            for username, current, write in decided
        ]

    async def records(
        self,
        platform_key: str,
        *,
        after: str | None = None,
        limit: int = 100,
        filter: Mapping[str, Any] | None = None,
    ) -> list[tuple[str, Record]]:
        found = sorted(
            (username, record)
            for (platform, username), record in self._records.items()
            if platform == platform_key
            and record.exists
            and username != POLICY_USERNAME
            and (after is None or username > after)
        )
        if not filter:
            return found[:limit]
        kept: list[tuple[str, Record]] = []
        for pair in found:
            if len(kept) >= limit:
                break
            if matches(pair[1].metadata, filter):
                kept.append(pair)
        return kept

    async def revisions(
        self, platform_key: str, username: str, *, before: int | None = None, limit: int = 20
    ) -> list[Revision]:
        found: list[Revision] = []
        for revision in reversed(self._history.get((platform_key, username), ())):
            if len(found) >= limit:
                break
            if before is None or revision.version < before:
                found.append(revision)
        return found

    async def changes(
        self,
        platform_key: str,
        *,
        after: int,
        limit: int = 500,
        usernames: Sequence[str] | None = None,
    ) -> list[tuple[str, Revision]]:
        found = [
            (username, revision)
            for (platform, username), kept in self._history.items()
            if platform == platform_key and (usernames is None or username in usernames)
            for revision in kept
            if (revision.seq or 0) > after
        ]
        found.sort(key=lambda pair: pair[1].seq or 0)
        return found[:limit]

    async def position(self, platform_key: str) -> tuple[int, int]:
        seq, horizon = self._clock.get(platform_key, (0, 0))
        return seq, horizon

    async def poll(self) -> bool:
        return False  # one process: the app's own feed tells of every change

    async def dump(self, tables: Sequence[Table] = ()) -> AsyncIterator[DumpRow]:
        """Everything kept (`Dumper`), as it was when the dump began.  The snapshot holds
        references to the store's own immutable rows: no copy of a document."""
        if tables:
            raise ValueError("MemoryStore keeps no host tables")
        records = sorted(self._records.items())
        history = sorted((key, tuple(kept)) for key, kept in self._history.items())
        clocks = sorted((key, tuple(clock)) for key, clock in self._clock.items())
        for (platform_key, username), record in records:
            yield StoredRecord(platform_key, username, record)
        for (platform_key, username), revisions in history:
            for revision in revisions:
                yield StoredRevision(platform_key, username, revision)
        for platform_key, (seq, horizon) in clocks:
            yield StoredClock(platform_key, seq, horizon)

    async def load(
        self,
        rows: AsyncIterable[DumpRow],
        *,
        replace: bool = False,
        tables: Sequence[Table] = (),
    ) -> int:
        """Keep `rows` exactly (`Dumper`): gathered aside, then swapped in at once, so a
        failure part way leaves the store as it was."""
        if tables:
            raise ValueError("MemoryStore keeps no host tables")
        if (self._records or self._history or self._clock) and not replace:
            raise NotEmpty("The store already holds data")
        records: dict[tuple[str, str], Record] = {}
        history: dict[tuple[str, str], deque[Revision]] = {}
        clock: dict[str, list[int]] = {}
        count = 0
        async for row in rows:
            count += 1
            # The checks a database's keys would make: a row twice is a bad dump.
            if isinstance(row, StoredRecord):
                key = (row.platform_key, row.username)
                if key in records:
                    raise DumpError(f"The dump holds the record of {key} twice")
                records[key] = row.record
            elif isinstance(row, StoredRevision):
                kept = history.setdefault((row.platform_key, row.username), deque())
                if kept and kept[-1].version >= row.revision.version:
                    raise DumpError("The dump holds revisions twice or out of order")
                kept.append(row.revision)
            elif isinstance(row, StoredClock):
                if row.platform_key in clock:
                    raise DumpError(f"The dump holds the clock of {row.platform_key} twice")
                clock[row.platform_key] = [row.seq, row.horizon]
            else:
                raise ValueError(f"No table {row.table!r} is being loaded")
        self._records, self._history, self._clock = records, history, clock
        return count

    async def check(self) -> None:
        """Readiness (`HealthChecker`): memory is always there."""


def _fixed(write: Write) -> Change:
    """The change that stores `write`, already decided."""
    return lambda current: write
