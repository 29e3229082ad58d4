"""The storage seam: one JSON document per (platform, user), versioned, written atomically."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable

__all__ = ["ANY_RECORD", "EMPTY", "NO_RECORD", "Expect", "Record", "Store", "utcnow"]


@dataclass(frozen=True, slots=True)
class Record:
    """One user's metadata on one platform.

    Attributes:
        metadata_json: the document as compact JSON text (rendered into responses as is).
        version: 0 when nothing was ever stored; grows by one with every change, deletes
            included, so a version never names two different states.
        created_at / updated_at: `None` while nothing is stored.
    """

    metadata_json: str
    version: int
    created_at: datetime | None
    updated_at: datetime | None

    @property
    def metadata(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.metadata_json)
        return value

    @property
    def exists(self) -> bool:
        return self.created_at is not None


EMPTY = Record("{}", 0, None, None)


@dataclass(frozen=True, slots=True)
class Expect:
    """A precondition (from `If-Match` / `If-None-Match`) checked atomically with the write.

    Attributes:
        versions: the record versions it names; `None` names "a record is stored" (the `*`
            of either header).  Version 0 is a user with nothing ever stored.
        negate: the record must *not* be in that state (`If-None-Match`).
        also: a further precondition that must hold as well (both headers on one request).

    A store evaluates `admits(current_record)` under the same lock as its write, or renders
    the equivalent condition into its write statement as `DatabaseStore` does.
    """

    versions: frozenset[int] | None
    negate: bool = False
    also: Expect | None = None

    def admits(self, record: Record) -> bool:
        named = record.exists if self.versions is None else record.version in self.versions
        if named == self.negate:
            return False
        return self.also is None or self.also.admits(record)


ANY_RECORD = Expect(None)
NO_RECORD = Expect(None, negate=True)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@runtime_checkable
class Store(Protocol):
    """Where metadata lives.  Every write is atomic and linearizable per (platform, user).

    Writes raise `PreconditionFailed` when `expect` does not hold, `DocumentTooLarge` when the
    result would exceed `max_bytes` of compact UTF-8 JSON, and `StoreUnavailable` when the
    backend stays busy or unreachable; in all three cases nothing is changed.
    """

    async def get(self, platform_key: str, username: str) -> Record:
        """Return the record, or `EMPTY`-like with its version when nothing is stored."""
        ...

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
        """Remove the `delete` keys, then set the `set` keys; create the record if needed."""
        ...

    async def replace(
        self,
        platform_key: str,
        username: str,
        metadata: Mapping[str, Any],
        *,
        expect: Expect | None = None,
        max_bytes: int | None = None,
    ) -> Record:
        """Replace the whole document; create the record if needed."""
        ...

    async def delete(
        self, platform_key: str, username: str, *, expect: Expect | None = None
    ) -> None:
        """Remove the document; deleting nothing succeeds."""
        ...
