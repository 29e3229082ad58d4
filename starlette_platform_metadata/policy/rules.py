"""The member-view rules of a policy: what a member reads of a document, and what its PATCH,
PUT and DELETE may change, as functions of the stored document."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..jsonvalues import json_equal
from .model import Policy

__all__ = ["forbidden_patch_keys", "member_delete", "member_put", "member_view"]


def _restricted(policy: Policy, key: str) -> bool:
    return policy.is_private(key) or policy.is_protected(key)


def _may_not_set(policy: Policy, stored: Mapping[str, Any], key: str, value: Any) -> bool:
    """A private key, or a protected key to anything but its stored value (or not stored)."""
    if policy.is_private(key):
        return True
    return policy.is_protected(key) and (key not in stored or not json_equal(value, stored[key]))


def member_view(policy: Policy, document: Mapping[str, Any]) -> dict[str, Any]:
    """`document` as a member reads it: private keys left out."""
    return {key: value for key, value in document.items() if not policy.is_private(key)}


def forbidden_patch_keys(
    policy: Policy,
    stored: Mapping[str, Any],
    set: Mapping[str, Any],
    delete: Iterable[str],
) -> list[str]:
    """The keys a member's PATCH may not touch, sorted; `[]` when it may go ahead.

    A private key named in `set` or `delete`; a protected key set to anything but its stored
    value (`json_equal`), or set while not stored; a stored protected key in `delete`, even
    if `set` puts it back.  Setting a protected key to its stored value, or deleting one that
    is not stored, changes nothing and is allowed.
    """
    forbidden = {key for key, value in set.items() if _may_not_set(policy, stored, key, value)}
    forbidden.update(
        key
        for key in delete
        if policy.is_private(key) or (policy.is_protected(key) and key in stored)
    )
    return sorted(forbidden)


def member_put(
    policy: Policy, stored: Mapping[str, Any], body: Mapping[str, Any]
) -> dict[str, Any] | list[str]:
    """The document a member's PUT of `body` leaves, or the sorted keys that refuse it.

    `body` replaces the keys the member may change; stored protected and private keys stay.
    A protected key may be in `body` only with its stored value (so GET, edit, PUT works),
    and then keeps its stored value exactly; a private key may not be in it at all.
    """
    forbidden = sorted(
        key for key, value in body.items() if _may_not_set(policy, stored, key, value)
    )
    if forbidden:
        return forbidden
    document = {
        key: stored[key] if policy.is_protected(key) else value for key, value in body.items()
    }
    for key, value in stored.items():
        if key not in document and _restricted(policy, key):
            document[key] = value
    return document


def member_delete(policy: Policy, stored: Mapping[str, Any]) -> dict[str, Any]:
    """What a member's DELETE leaves: the stored protected and private keys (`{}`: none)."""
    return {key: value for key, value in stored.items() if _restricted(policy, key)}
