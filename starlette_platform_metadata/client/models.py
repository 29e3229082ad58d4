"""What the client returns: frozen dataclasses read from the contract's JSON bodies."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

__all__ = [
    "Change",
    "ListedRecord",
    "MetadataRecord",
    "Page",
    "PlatformPolicy",
    "PolicyUpdate",
    "PolicyViolation",
    "Revision",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class MetadataRecord:
    """One user's metadata on one platform, as a GET, PATCH, PUT or restore answered it.

    Attributes:
        username: whose metadata it is.
        platform_key: the platform it belongs to.
        metadata: the document (`{}` when nothing is stored).
        etag: the response's `ETag`, e.g. `'"7"'`: pass it as `if_match` to write only if
            nothing changed since.
        version: the version the ETag names (0 while nothing was ever stored).
        created_at: when the record was created; `None` when nothing is stored.
        updated_at: when it last changed; `None` when nothing is stored.
    """

    username: str
    platform_key: str
    metadata: dict[str, Any]
    etag: str
    version: int
    created_at: datetime | None
    updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class ListedRecord:
    """One stored record as `list_users` and `export` give it: a `MetadataRecord` without
    `etag` and `version`, which the listing's answers do not carry (`get` the record for
    them).  `import_` takes these back as they are.

    Attributes:
        username: whose metadata it is.
        platform_key: the platform it belongs to.
        metadata: the document.
        created_at: when the record was created.
        updated_at: when it last changed.
    """

    username: str
    platform_key: str
    metadata: dict[str, Any]
    created_at: datetime | None
    updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class Revision:
    """One change in a record's history, newest first.

    Attributes:
        version: the record's version after the change (the number in its ETag).
        operation: `"patch"`, `"put"`, `"delete"` or `"restore"`.
        actor: the username that made the change (the admin, when an admin acted).
        at: when the change was made (aware, UTC).
        metadata: the whole document after the change (`{}` after a delete).
        changed_keys: top-level keys added, changed or removed by it, sorted.
    """

    version: int
    operation: str
    actor: str | None
    at: datetime
    metadata: dict[str, Any]
    changed_keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PlatformPolicy:
    """A platform's policy as GET or PUT `<mount>/policy/` answered it.

    Attributes:
        platform_key: the platform.
        protected_keys: keys members may read but not change (exact keys or `prefix*`).
        private_keys: keys members may neither read nor change; `None` in a member's view,
            which does not include them.
        schema: the JSON Schema every stored document must satisfy, or `None`.
        version: 0 before any PUT, +1 per PUT or DELETE.
        updated_at: when it last changed, `None` before any change.
        etag: the response's `ETag` (`None` for a policy the host fixes in code).
        raw: the whole response body.
    """

    platform_key: str
    protected_keys: tuple[str, ...]
    private_keys: tuple[str, ...] | None
    schema: Any
    version: int
    updated_at: datetime | None
    etag: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class PolicyViolation:
    """A stored document the new schema refuses, with the schema's messages."""

    username: str
    errors: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PolicyUpdate:
    """What a policy PUT (or its dry run) answered.

    Attributes:
        policy: the policy as saved (for a dry run: as it would be, with the stored
            `version`, `updated_at` and `etag`).
        violating_documents: how many stored documents of the platform the schema refuses;
            `None` when the server's store cannot count them.
        examples: at most 20 of them, by username.
        raw: the whole response body.
    """

    policy: PlatformPolicy
    violating_documents: int | None
    examples: tuple[PolicyViolation, ...]
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a cursor-paginated answer: its results and the `next` URL, if any."""

    results: tuple[T, ...]
    next: str | None


EventName = Literal["snapshot", "change", "reset"]


@dataclass(frozen=True, slots=True)
class Change:
    """One event of a live-changes stream (`watch`).

    Attributes:
        event: `"snapshot"` (the state now: first on a one-user stream opened without a
            cursor, or resumed from one older than the history kept), `"change"` (one change,
            in version order per user) or `"reset"` (an `all_users` stream resumed from a
            cursor older than the history kept: list the users again, then follow on; every
            field below is empty in it).
        id: the event's id, the cursor `watch` resumes from (`last_event_id=` takes it).
        platform_key: the platform.
        username: whose record changed; `None` in a `"reset"`.
        metadata: the document after the change, as this caller may see it (`{}` after a
            delete, and in a `"reset"`).
        version: the record's version after it (0 in the snapshot of a record never
            written); `None` in a `"reset"`.
        actor: who made the change; `None` in a snapshot or a reset.
        operation: `"patch"`, `"put"` (an import's too), `"delete"` or `"restore"`; `None`
            in a snapshot or a reset.
        created_at: as a GET shows it (`None` when nothing is stored).
        updated_at: as a GET shows it (`None` when nothing is stored).
    """

    event: EventName
    id: str
    platform_key: str
    username: str | None
    metadata: dict[str, Any]
    version: int | None
    actor: str | None
    operation: str | None
    created_at: datetime | None
    updated_at: datetime | None

    @property
    def etag(self) -> str | None:
        """The ETag of the version this event leaves (the version quoted), to pass as
        `if_match`; `None` in a `"reset"`."""
        return None if self.version is None else f'"{self.version}"'

    @property
    def record(self) -> MetadataRecord | None:
        """The record as this event leaves it, ETag included; `None` in a `"reset"`."""
        if self.username is None or self.version is None:
            return None
        return MetadataRecord(
            username=self.username,
            platform_key=self.platform_key,
            metadata=self.metadata,
            etag=f'"{self.version}"',
            version=self.version,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )
