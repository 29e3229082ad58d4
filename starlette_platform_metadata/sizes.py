"""What the stored-size limits measure (issue 22).

Without private keys, a document is one budget: its compact UTF-8 JSON against
`Limits.max_document_bytes`, as it always was.  On a platform whose policy has private keys, a
member binary-searching the 413 of its writes would otherwise learn the exact size of what it
may not read.  So there the two parts are budgets of their own, each measured as a JSON
object by itself: the keys a member can see against `max_document_bytes`, and the private keys
against `Limits.max_private_bytes`.  A member's write never changes the private part, and is
measured on what the member sees only, so what a member learns from a 413 depends on nothing
else; the private part is checked on tenant admins' writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import MAX_DOCUMENT_BYTES, MAX_PRIVATE_BYTES
from .jsontext import dump
from .policy import Policy

__all__ = ["oversized"]


def oversized(
    text: str,
    document: Mapping[str, Any],
    *,
    policy: Policy | None,
    member: bool,
    max_bytes: int | None,
    max_private_bytes: int | None = None,
) -> tuple[str, int] | None:
    """The size limit a write of `document` (as the compact JSON `text`) is over, as the
    name of its `Limits` field and its value; `None` when it fits.

    `max_private_bytes` defaults to `max_bytes`.  `document` is only looked at when the text
    may hold a private key of `policy`.
    """
    if policy is None or not policy.private_keys or not policy.may_hold_private(text):
        # No private key stored: the whole text is what a member sees, measured as always.
        if max_bytes is not None and len(text.encode()) > max_bytes:
            return MAX_DOCUMENT_BYTES, max_bytes
        return None
    visible: dict[str, Any] = {}
    private: dict[str, Any] = {}
    for key, value in document.items():
        (private if policy.is_private(key) else visible)[key] = value
    if max_bytes is not None and len(dump(visible).encode()) > max_bytes:
        return MAX_DOCUMENT_BYTES, max_bytes
    limit = max_bytes if max_private_bytes is None else max_private_bytes
    if not member and limit is not None and len(dump(private).encode()) > limit:
        return MAX_PRIVATE_BYTES, limit
    return None
