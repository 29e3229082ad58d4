"""The storage seam: read a record, and replace it atomically with what a change decides.

A store knows nothing of PATCH, PUT, DELETE, ETags or limits.  The package computes every new
record in one pure function (`changes.py`), from the record as stored, and hands that function
to `Store.update`; the store calls it inside its atomic section and keeps what it returns.
README.md, "Writing a store", lists every rule a store keeps; `starlette_platform_metadata.
testing` checks them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable

from ..exceptions import PlatformMetadataError

__all__ = [
    "EMPTY",
    "POLICY_USERNAME",
    "Change",
    "GuardMoved",
    "GuardedWriter",
    "HealthChecker",
    "HistoryReader",
    "Record",
    "ChangeReader",
    "ManyReader",
    "ManyWriter",
    "Revision",
    "RecordLister",
    "SchemaMismatch",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "Write",
    "utcnow",
]


@dataclass(frozen=True, slots=True)
class Record:
    """One user's metadata on one platform.

    Attributes:
        metadata_json: the document as compact JSON text, served as is (`"{}"` while nothing
            is stored).
        version: 0 when nothing was ever stored; one more with every change, deletes
            included, so a version never names two different states.
        created_at / updated_at: aware UTC datetimes; `None` while nothing is stored (never
            written, or deleted: a deleted record keeps its version, a "tombstone").
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


#: The record of a user with nothing ever stored.
EMPTY = Record("{}", 0, None, None)

#: The username under which a platform's policy is stored, as an ordinary record of that
#: platform.  No request can name it (the endpoint refuses control characters in usernames),
#: and it is U+0001, not U+0000, because PostgreSQL text cannot hold U+0000.  `records`
#: leaves it out.
POLICY_USERNAME = "\x01policy"


@dataclass(frozen=True, slots=True)
class Revision:
    """One change of a record as history keeps it.

    Attributes:
        version: the record's version after the change (its ETag number).
        operation: `"patch"`, `"put"`, `"delete"` or `"restore"`.
        actor: the username of the caller who made the change (`None` when not known).
        at: when the change was made (aware UTC).
        metadata_json: the whole document after the change, compact JSON (`"{}"` after a
            delete).
        changed_keys: the top-level keys the change added, changed or removed, sorted.
        created_at: the record's `created_at` after the change (`None` after a delete).
        seq: the change's position in its platform's sequence, in commit order, set by the
            store (`ChangeReader`); `None` in a revision not yet stored.
    """

    version: int
    operation: str
    actor: str | None
    at: datetime
    metadata_json: str
    changed_keys: tuple[str, ...]
    created_at: datetime | None = None
    seq: int | None = None

    @property
    def metadata(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.metadata_json)
        return value


@dataclass(frozen=True, slots=True)
class Write:
    """What a change decided: the record to store, and what happened, for history and events.

    Attributes:
        record: the new state, to store exactly as given (its version is the current one + 1;
            `record.exists` is `False` for a delete, except a member's delete that keeps the
            platform's protected or private keys: what the store keeps is `record.exists`).
            A record with the current version is the current one: store nothing for it (a
            purge of a user with nothing stored).
        operation: `"patch"`, `"put"`, `"delete"` or `"restore"`.
        actor: the username of the authenticated caller who made the change, if known.
        revision: the revision to keep in history with the record, in the same atomic step,
            or `None` (history off, or the policy record).
        keep_revisions: with a revision: afterwards keep only the newest `keep_revisions`
            revisions of this (platform, user).
        purge: delete every revision of this (platform, user) kept so far, before storing
            `revision` (erasure: `DELETE ...&history=purge`).
        changed_keys: the top-level keys the change touched, sorted, when the change knows
            them cheaply (a PATCH); `None`: history works them out.  Stores ignore it.
    """

    record: Record
    operation: str
    actor: str | None = None
    revision: Revision | None = None
    keep_revisions: int = 0
    purge: bool = False
    changed_keys: tuple[str, ...] | None = None


#: A change: the current record in, the `Write` to store out, or `None` to store nothing.  It
#: raises to refuse (a `changes.Refusal`); then nothing may be stored.  Pure and synchronous:
#: a store may call it more than once (after losing a race) and keeps only the last result.
Change = Callable[[Record], "Write | None"]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class StoreError(PlatformMetadataError):
    """Base of the failures a store reports."""


class StoreUnavailable(StoreError):
    """The database is busy or unreachable beyond the bounded wait; nothing was changed.

    The endpoint answers 503 with `Retry-After`.
    """


class SchemaMismatch(StoreError, RuntimeError):
    """The store's tables are not the ones this release knows: another release's schema
    version, or missing.  A `RuntimeError` too, as opening such tables always raised.

    Attributes:
        found: the version the tables record (`None`: the tables or their version row are
            missing).
        expected: the version this release needs.
    """

    def __init__(self, message: str, found: int | None, expected: int) -> None:
        super().__init__(message)
        self.found = found
        self.expected = expected

    @property
    def newer(self) -> bool:
        """The tables are a newer release's: this code must not run on them."""
        return self.found is not None and self.found > self.expected


class GuardMoved(StoreError):
    """`GuardedWriter.update_guarded` stored nothing: the guarding record is not the one the
    caller named any more.  Read it again, decide again."""


@runtime_checkable
class Store(Protocol):
    """Where metadata lives: one record per (platform, user), read and replaced atomically."""

    async def get(self, platform_key: str, username: str) -> Record:
        """The stored record; `EMPTY` when nothing was ever stored."""
        ...

    async def update(self, platform_key: str, username: str, change: Change) -> Record:
        """Atomically: read the record, call `change` on it, store what it returns.

        Returns the record now stored (the current one when `change` returned `None`).
        Whatever `change` raises propagates, and nothing is stored.  No other update of the
        same (platform, user) may come between the read and the write, in this process or any
        other sharing the database.  Raise `StoreUnavailable` when the database stays busy or
        unreachable past the store's bound.
        """
        ...


@runtime_checkable
class ManyReader(Protocol):
    """The optional store method that reads several records of one platform at once.

    The endpoint reads a platform's policy and a user's record on every GET: a store with it
    answers both in one statement (on PostgreSQL, one round trip instead of two).
    """

    async def get_many(self, platform_key: str, usernames: Sequence[str]) -> list[Record]:
        """The records of `usernames`, in that order, each as `get` would return it."""
        ...


@runtime_checkable
class GuardedWriter(Protocol):
    """The optional store method that writes only while another record of the platform is
    as the caller last saw it.

    A write is decided on the platform's policy (its record under `POLICY_USERNAME`).  A
    store with this method lets the endpoint decide on the policy record it read last,
    instead of reading it again before each write: the store checks it in the same atomic
    step (on PostgreSQL, in the write's one statement: one round trip instead of two).
    """

    async def update_guarded(
        self, platform_key: str, username: str, change: Change, guard: tuple[str, Record]
    ) -> Record:
        """As `update`, but only if the record of the username `guard[0]` still holds
        `guard[1]` (its whole state: version, `updated_at`, document; `EMPTY` for none) when
        the call runs: otherwise raise `GuardMoved`, having stored nothing.  (PostgreSQL
        checks it in the write's own statement; a store may check it just before its atomic
        step, which is what reading the policy first gave.)"""
        ...


@runtime_checkable
class RecordLister(Protocol):
    """The optional store method that lists a platform's stored documents.

    A store with it lets a policy PUT count the documents its schema refuses (without it the
    PUT answers `violating_documents` as `null`) and serves the admin listing and export
    (`<mount>/users/`; without it, 404).
    """

    async def records(
        self,
        platform_key: str,
        *,
        after: str | None = None,
        limit: int = 100,
        filter: Mapping[str, Any] | None = None,
    ) -> list[tuple[str, Record]]:
        """Up to `limit` `(username, record)` pairs of `platform_key` with a stored document.

        Ordered by username, starting after `after` (keyset pagination: `username > after`);
        tombstones and the reserved `POLICY_USERNAME` record are left out.  With `filter`,
        only documents that `stores.filters.matches` it (each of its top-level keys stored
        with an equal JSON value).  A store whose `records` takes no `filter` still works:
        the listing then filters each page in Python.
        """
        ...


@runtime_checkable
class ManyWriter(Protocol):
    """The optional store method that changes several records of one platform atomically.

    The admin import (`POST <mount>/users/`) needs it: all of its changes or none.  Without
    it, the import answers 404.
    """

    async def update_many(
        self, platform_key: str, updates: Sequence[tuple[str, Change]]
    ) -> list[Record]:
        """As `update` for each `(username, change)` (distinct usernames), all in one atomic
        step: the records now stored, in the order given.  When any change raises, nothing
        at all is stored and the exception propagates."""
        ...


@runtime_checkable
class HistoryReader(Protocol):
    """The optional store method that reads a user's history (`<mount>/history/`).

    A store with it keeps each `Write.revision` in the same atomic step as its record, drops
    all but the newest `Write.keep_revisions`, and honours `Write.purge` (README.md, "Writing
    a store", rule 8).  Without it, the history and restore resources answer 404.
    """

    async def revisions(
        self, platform_key: str, username: str, *, before: int | None = None, limit: int = 20
    ) -> list[Revision]:
        """Up to `limit` revisions of the user, newest first, with `version < before` if given."""
        ...


@runtime_checkable
class ChangeReader(Protocol):
    """The optional store methods behind live changes (`<mount>/events/`).

    A store with them numbers each stored revision in its platform's sequence (`Revision.seq`:
    1, 2, 3, ... in commit order, across every process and host sharing the database), and
    remembers the highest `seq` retention has dropped (`horizon`), so a stream resuming from
    before it knows that it missed changes.  A purge is not counted: erased changes must not
    be replayed.
    """

    async def changes(
        self,
        platform_key: str,
        *,
        after: int,
        limit: int = 500,
        usernames: Sequence[str] | None = None,
    ) -> list[tuple[str, Revision]]:
        """Up to `limit` `(username, revision)` of the platform with `seq > after`, by `seq`;
        only those of `usernames` if given (the users whose streams are open)."""
        ...

    async def position(self, platform_key: str) -> tuple[int, int]:
        """`(seq, horizon)`: the platform's newest `seq` (0: none) and retention's horizon."""
        ...

    async def poll(self) -> bool:
        """Cheap: may any process have committed a change since the last call?  Called a few
        times a second by each process that has streams open."""
        ...


@runtime_checkable
class HealthChecker(Protocol):
    """The optional store method behind readiness (`Health`, `<readyz>`).

    A store with it answers whether it can serve now, in one round trip to its database.
    Without it, readiness reads one record no one has (`get`) instead, and cannot tell
    tables of another release.
    """

    async def check(self) -> None:
        """Return once the database answered and its tables are this release's.

        Raises `StoreUnavailable` when it is busy or unreachable, `SchemaMismatch` when the
        tables record another schema version (a newer release migrated them, say) or are
        gone.  Checked anew on every call, never remembered from startup.
        """
        ...
