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
from .errors import MAX_DOCUMENT_BYTES
from .exceptions import PlatformMetadataError
from .jsontext import dump
from .jsonvalues import identical_json
from .member_errors import member_schema_errors
from .policy import Policy, forbidden_patch_keys, member_delete, member_put
from .sizes import oversized
from .stores.base import Change, Record, Revision, Write, utcnow

__all__ = [
    "DocumentTooLarge",
    "KeysForbidden",
    "PreconditionFailed",
    "Refusal",
    "SchemaViolation",
    "changed_keys",
    "delete",
    "patch",
    "replace",
    "with_history",
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
    """The document would be larger than `limit` bytes of compact UTF-8 JSON.

    Attributes:
        name: the `Limits` field it is over: `"max_document_bytes"` (the document, or on a
            platform with private keys the part a member sees), or `"max_private_bytes"`
            (the private keys, on a tenant admin's write); see sizes.py.
    """

    def __init__(self, record: Record, limit: int, name: str = MAX_DOCUMENT_BYTES) -> None:
        super().__init__(record)
        self.limit = limit
        self.name = name


class KeysForbidden(Refusal):
    """A member's write names keys the platform policy keeps for tenant admins.

    Attributes:
        keys: every such key, sorted.
    """

    def __init__(self, record: Record, keys: list[str]) -> None:
        super().__init__(record)
        self.keys = keys


class SchemaViolation(Refusal):
    """The document the write would store does not satisfy the platform's schema.

    Attributes:
        errors: `"<JSON Pointer>: <message>"` for each failure (`Policy.schema_errors`, or
            `member_errors.member_schema_errors` for a member's write).
    """

    def __init__(self, record: Record, errors: list[str]) -> None:
        super().__init__(record)
        self.errors = errors


def _check(conditions: Conditions | None, current: Record) -> None:
    if conditions is not None and not conditions.admits(current):
        raise PreconditionFailed(current, conditions.refusal(current))


def _check_schema(
    policy: Policy | None, current: Record, document: dict[str, Any], member: bool
) -> None:
    if policy is not None and not policy.valid(document):
        if member and policy.private_keys:
            # The document holds what the member may not read: so may the errors.
            raise SchemaViolation(current, member_schema_errors(policy, document))
        raise SchemaViolation(current, policy.schema_errors(document))


def _store(
    current: Record,
    document: str,
    operation: str,
    actor: str | None,
    max_bytes: int | None,
    changed: tuple[str, ...] | None = None,
) -> Write:
    if max_bytes is not None and len(document.encode()) > max_bytes:
        raise DocumentTooLarge(current, max_bytes)
    return _stored(current, document, operation, actor, changed)


def _store_checked(
    current: Record,
    document: dict[str, Any],
    operation: str,
    actor: str | None,
    policy: Policy,
    member: bool,
    budget: tuple[int | None, int | None],
    changed: tuple[str, ...] | None = None,
) -> Write:
    """`_store` under a policy: the size limits measure the parts apart (sizes.py)."""
    text = dump(document)
    max_bytes, max_private_bytes = budget
    over = oversized(
        text,
        document,
        policy=policy,
        member=member,
        max_bytes=max_bytes,
        max_private_bytes=max_private_bytes,
    )
    if over is not None:
        name, limit = over
        raise DocumentTooLarge(current, limit, name)
    return _stored(current, text, operation, actor, changed)


def _stored(
    current: Record,
    document: str,
    operation: str,
    actor: str | None,
    changed: tuple[str, ...] | None,
) -> Write:
    now = utcnow()
    record = Record(document, current.version + 1, current.created_at or now, now)
    return Write(record, operation, actor, changed_keys=changed)


def patch(
    set: Mapping[str, Any],
    delete: Sequence[str] = (),
    *,
    conditions: Conditions | None = None,
    max_bytes: int | None = None,
    actor: str | None = None,
    policy: Policy | None = None,
    member: bool = False,
    max_private_bytes: int | None = None,
) -> Change:
    """Remove the `delete` keys, then set the `set` keys; creates the record if needed.

    With a `policy`, the result must satisfy its schema; with `member`, the member-view rules
    of its protected and private keys hold too (checked first), against the stored document.
    With private keys in the policy, `max_bytes` bounds the keys a member sees and
    `max_private_bytes` (default `max_bytes`) the private ones, on a tenant admin's write.
    """
    if policy is not None and policy.is_default:
        policy = None

    def change(current: Record) -> Write:
        _check(conditions, current)
        document = current.metadata
        values = set
        if member and policy is not None:
            if forbidden := forbidden_patch_keys(policy, document, set, delete):
                raise KeysForbidden(current, forbidden)
            # What is left of them equals the stored value: keep its stored form (7.0 stays 7.0).
            values = {key: value for key, value in set.items() if not policy.is_protected(key)}
        changed = _patched_keys(document, delete, values)
        for key in delete:
            document.pop(key, None)
        document.update(values)
        _check_schema(policy, current, document, member)
        if policy is not None:
            budget = (max_bytes, max_private_bytes)
            return _store_checked(
                current, document, "patch", actor, policy, member, budget, changed
            )
        return _store(current, dump(document), "patch", actor, max_bytes, changed)

    return change


def _patched_keys(
    document: Mapping[str, Any], delete: Sequence[str], values: Mapping[str, Any]
) -> tuple[str, ...]:
    """The keys a PATCH changes, for history: from the keys it names alone, with no second
    parse of either document."""
    changed = []
    for key in {*delete, *values}:
        if key in values:
            if key not in document or not identical_json(document[key], values[key]):
                changed.append(key)
        elif key in document:  # deleted, not set again
            changed.append(key)
    return tuple(sorted(changed))


def replace(
    metadata: Mapping[str, Any],
    *,
    conditions: Conditions | None = None,
    max_bytes: int | None = None,
    actor: str | None = None,
    policy: Policy | None = None,
    member: bool = False,
    operation: str = "put",
    max_private_bytes: int | None = None,
) -> Change:
    """Replace the whole document; creates the record if needed.

    With a `policy`, the result must satisfy its schema; with `member`, the body replaces only
    the keys a member may change (`policy.member_put`), against the stored document.
    `operation` names it in history: `"put"`, or `"restore"` for a restore.  The size limits
    are `patch`'s.
    """
    if policy is not None and policy.is_default:
        policy = None
    if policy is None:
        document = dump(metadata)  # the same text whatever the record: rendered once

        def change(current: Record) -> Write:
            _check(conditions, current)
            return _store(current, document, operation, actor, max_bytes)

        return change
    rules = policy

    def guarded(current: Record) -> Write:
        _check(conditions, current)
        document = dict(metadata)
        if member:
            result = member_put(rules, current.metadata, metadata)
            if isinstance(result, list):
                raise KeysForbidden(current, result)
            document = result
        _check_schema(rules, current, document, member)
        budget = (max_bytes, max_private_bytes)
        return _store_checked(current, document, operation, actor, rules, member, budget)

    return guarded


def delete(
    *,
    conditions: Conditions | None = None,
    actor: str | None = None,
    policy: Policy | None = None,
    member: bool = False,
) -> Change:
    """Remove the document, keeping its version; deleting nothing stores nothing.

    With `member` and a `policy` protecting or hiding keys, the stored protected and private
    keys stay: if any do, the record remains with just them (and must satisfy the schema).
    """

    def change(current: Record) -> Write | None:
        _check(conditions, current)
        if not current.exists:
            return None
        if member and policy is not None and (policy.protected_keys or policy.private_keys):
            kept = member_delete(policy, current.metadata)
            if kept:
                _check_schema(policy, current, kept, member)
                now = utcnow()
                record = Record(dump(kept), current.version + 1, current.created_at, now)
                return Write(record, "delete", actor)
        return Write(Record("{}", current.version + 1, None, None), "delete", actor)

    return change


def changed_keys(before: Record, after: Record) -> tuple[str, ...]:
    """The top-level keys added, changed or removed between two records, sorted.

    A value counts as changed when its JSON text changed (`7` to `7.0` is a change: the
    stored document is not the same)."""
    if before.metadata_json == after.metadata_json:
        return ()
    old = before.metadata if before.exists else {}
    new = after.metadata if after.exists else {}
    return tuple(
        sorted(
            key
            for key in old.keys() | new.keys()
            if key not in old or key not in new or not identical_json(old[key], new[key])
        )
    )


def with_history(change: Change, keep: int, *, purge: bool = False) -> Change:
    """`change`, keeping a `Revision` of what it writes (when `keep` > 0) in the same write.

    The store keeps the newest `keep` revisions of the user.  With `purge`, every earlier
    revision goes (erasure); the change itself is still kept as the one revision left, its
    document `{}` after a delete.  A purge that changes nothing (nothing stored) still purges.
    """

    def recorded(current: Record) -> Write | None:
        write = change(current)
        if write is None:
            if not purge:
                return None
            return Write(current, "delete", purge=True)
        if keep <= 0:
            return Write(write.record, write.operation, write.actor, purge=purge)
        record = write.record
        revision = Revision(
            version=record.version,
            operation=write.operation,
            actor=write.actor,
            at=record.updated_at or utcnow(),
            metadata_json=record.metadata_json if record.exists else "{}",
            changed_keys=(
                write.changed_keys
                if write.changed_keys is not None
                else changed_keys(current, record)
            ),
            created_at=record.created_at,
        )
        return Write(record, write.operation, write.actor, revision, keep, purge)

    return recorded
