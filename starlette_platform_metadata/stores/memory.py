"""An in-process store for tests and demos: a dict, no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import DocumentTooLarge, PreconditionFailed
from ..payload import dump
from .base import EMPTY, Expect, Record, utcnow

__all__ = ["MemoryStore"]


class MemoryStore:
    """Keeps every record in a dict.

    Each method runs without awaiting, so on one event loop every write is atomic by
    construction.  Data is lost with the process and not shared between workers.
    """

    def __init__(self) -> None:
        self._records: dict[tuple[str, str], Record] = {}

    async def get(self, platform_key: str, username: str) -> Record:
        return self._records.get((platform_key, username), EMPTY)

    def _write(
        self,
        key: tuple[str, str],
        current: Record,
        document: dict[str, Any],
        max_bytes: int | None,
    ) -> Record:
        text = dump(document)
        if max_bytes is not None and len(text.encode()) > max_bytes:
            raise DocumentTooLarge(max_bytes)
        now = utcnow()
        record = Record(text, current.version + 1, current.created_at or now, now)
        self._records[key] = record
        return record

    def _current(self, key: tuple[str, str], expect: Expect | None) -> Record:
        current = self._records.get(key, EMPTY)
        if expect is not None and not expect.admits(current):
            raise PreconditionFailed()
        return current

    async def patch(
        self,
        platform_key: str,
        username: str,
        set: Mapping[str, Any],
        delete: Sequence[str],
        *,
        expect: Expect | None = None,
        max_bytes: int | None = None,
    ) -> Record:
        key = (platform_key, username)
        current = self._current(key, expect)
        document = current.metadata
        for name in delete:
            document.pop(name, None)
        document.update(set)
        return self._write(key, current, document, max_bytes)

    async def replace(
        self,
        platform_key: str,
        username: str,
        metadata: Mapping[str, Any],
        *,
        expect: Expect | None = None,
        max_bytes: int | None = None,
    ) -> Record:
        key = (platform_key, username)
        current = self._current(key, expect)
        return self._write(key, current, dict(metadata), max_bytes)

    async def delete(
        self, platform_key: str, username: str, *, expect: Expect | None = None
    ) -> None:
        key = (platform_key, username)
        current = self._current(key, expect)
        if current.exists:
            self._records[key] = Record("{}", current.version + 1, None, None)
