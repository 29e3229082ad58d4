"""The pure core of every write: the current record in, the record to store out.

PATCH, PUT and DELETE are each a `Change` built here and run by the store inside its atomic
section, against the record as stored at that moment: the merge, the preconditions and the
size limit are decided once, here, for every store.  A change refuses by raising a `Refusal`
that carries the record it saw, so the answer (a 412 and its ETag) needs no second read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .conditional import Conditions
from .exceptions import PlatformMetadataError
from .jsontext import dump
from .stores.base import Change, Record, Write, utcnow

__all__ = [
    "DocumentTooLarge",
    "PreconditionFailed",
    "Refusal",
    "delete",
    "patch",
    "replace",
]


class Refusal(PlatformMetadataError):
    """A change refused the write; nothing was stored.

    Attributes:
        record: the record the change saw.
    """

    def __init__(self, record: Record) -> None:
        super().__init__(record)
        self.record = record


class PreconditionFailed(Refusal):
    """`If-Match` / `If-None-Match` did not hold for `record`.

    Attributes:
        reason: which condition failed, a key of `errors.PRECONDITION_DETAILS`.
    """

    def __init__(self, record: Record, reason: str = "changed") -> None:
        super().__init__(record)
        self.reason = reason


class DocumentTooLarge(Refusal):
    """The document would be larger than `limit` bytes of compact UTF-8 JSON."""

    def __init__(self, record: Record, limit: int) -> None:
        super().__init__(record)
        self.limit = limit


def _check(conditions: Conditions | None, current: Record) -> None:
    if conditions is not None and not conditions.admits(current):
        raise PreconditionFailed(current, conditions.refusal(current))


def _store(
    current: Record, document: str, operation: str, actor: str | None, max_bytes: int | None
) -> Write:
    if max_bytes is not None and len(document.encode()) > max_bytes:
        raise DocumentTooLarge(current, max_bytes)
    now = utcnow()
    return Write(
        Record(document, current.version + 1, current.created_at or now, now), operation, actor
    )


def patch(
    set: Mapping[str, Any],
    delete: Sequence[str] = (),
    *,
    conditions: Conditions | None = None,
    max_bytes: int | None = None,
    actor: str | None = None,
) -> Change:
    """Remove the `delete` keys, then set the `set` keys; creates the record if needed."""

    def change(current: Record) -> Write:
        _check(conditions, current)
        document = current.metadata
        for key in delete:
            document.pop(key, None)
        document.update(set)
        return _store(current, dump(document), "patch", actor, max_bytes)

    return change


def replace(
    metadata: Mapping[str, Any],
    *,
    conditions: Conditions | None = None,
    max_bytes: int | None = None,
    actor: str | None = None,
) -> Change:
    """Replace the whole document; creates the record if needed."""
    document = dump(metadata)  # the same text whatever the record: rendered once

    def change(current: Record) -> Write:
        _check(conditions, current)
        return _store(current, document, "replace", actor, max_bytes)

    return change


def delete(*, conditions: Conditions | None = None, actor: str | None = None) -> Change:
    """Remove the document, keeping its version; deleting nothing stores nothing."""

    def change(current: Record) -> Write | None:
        _check(conditions, current)
        if not current.exists:
            return None
        return Write(Record("{}", current.version + 1, None, None), "delete", actor)

    return change
