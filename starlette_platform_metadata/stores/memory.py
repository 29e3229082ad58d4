"""An in-process store for tests and demos: a dict, no I/O."""

from __future__ import annotations

from collections.abc import Sequence

from .base import EMPTY, POLICY_USERNAME, Change, Record

__all__ = ["MemoryStore"]


class MemoryStore:
    """Keeps every record in a dict.

    `update` runs without awaiting, so on one event loop it is atomic by construction.  Data
    is lost with the process and not shared between workers.
    """

    def __init__(self) -> None:
        self._records: dict[tuple[str, str], Record] = {}

    async def get(self, platform_key: str, username: str) -> Record:
        return self._records.get((platform_key, username), EMPTY)

    async def update(self, platform_key: str, username: str, change: Change) -> Record:
        key = (platform_key, username)
        current = self._records.get(key, EMPTY)
        write = change(current)
        if write is None:
            return current
        self._records[key] = write.record
        return write.record

    async def get_many(self, platform_key: str, usernames: Sequence[str]) -> list[Record]:
        return [self._records.get((platform_key, name), EMPTY) for name in usernames]

    async def records(
        self, platform_key: str, *, after: str | None = None, limit: int = 100
    ) -> list[tuple[str, Record]]:
        found = sorted(
            (username, record)
            for (platform, username), record in self._records.items()
            if platform == platform_key
            and record.exists
            and username != POLICY_USERNAME
            and (after is None or username > after)
        )
        return found[:limit]
