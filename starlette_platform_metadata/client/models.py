"""What the client returns: frozen dataclasses read from the contract's JSON bodies."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

__all__ = [
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
