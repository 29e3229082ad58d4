"""Resource limits: one place, documented defaults, overridable by the host."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

__all__ = ["Limits", "check_positive"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one request may send and one record may hold.

    Every refusal names the limit and its value; docs/limits.md lists the exact bodies.

    Attributes:
        max_body_bytes: request body size; larger bodies get 413 as soon as the count passes
            the limit, whether or not a Content-Length was sent, before the body is read whole.
        max_document_bytes: the stored metadata after a write, as compact UTF-8 JSON; 413, and
            nothing is stored.  It also bounds how many keys PATCHes can pile up over time.
            On a platform whose policy has private keys it bounds the keys a member can see
            (without the private ones), so a member's 413 says nothing of the private part.
        max_private_bytes: the private keys of a platform's policy, as a JSON object by
            themselves, after a tenant admin's write (a member's write leaves them as they
            are); 413.  64 KiB as `max_document_bytes`, so that every document storable
            before private keys had a budget of their own still is; a record so holds at
            most about the sum of the two.
        max_depth: nesting depth of the metadata object (the object itself is depth 1); 400.
        max_keys: top-level keys in the `metadata` of one request; 400.
        max_key_length: characters in one top-level key, and in one `delete_keys` entry; 400.
        max_delete_keys: entries in `delete_keys`; 400.
        max_query_value_length: characters in `platform_key` and `username`; 400.
        max_etags: entity tags (and `*`) listed in `If-Match`, and in `If-None-Match`, all
            field lines of each together; 400.  Parsing stops past it, so a long list costs
            no more than the limit.
        max_import_bytes: the NDJSON body of an admin import (`POST <mount>/users/`), counted
            as it arrives like `max_body_bytes`; 413.  It bounds what one import holds in
            memory and how long its one transaction keeps the platform's writes waiting.
    """

    max_body_bytes: int = 256 * 1024
    max_document_bytes: int = 64 * 1024
    max_depth: int = 10
    max_keys: int = 512
    max_key_length: int = 256
    max_delete_keys: int = 512
    max_query_value_length: int = 256
    max_etags: int = 64
    max_import_bytes: int = 4 * 1024 * 1024
    max_private_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        check_positive(self)


def check_positive(limits: Any) -> None:
    """Every field of a limits dataclass must be a positive integer (`ValueError` otherwise)."""
    for field in fields(limits):
        value = getattr(limits, field.name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            name = type(limits).__name__
            raise ValueError(f"{name}.{field.name} must be a positive integer, not {value!r}")
