"""Resource limits: one place, documented defaults, overridable by the host."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Limits"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one request may send and one record may hold.

    Attributes:
        max_body_bytes: request body size; larger bodies get 413 before being read whole.
        max_document_bytes: the stored metadata after a write, as compact UTF-8 JSON; 413.
        max_depth: nesting depth of the metadata object (the object itself is depth 1); 400.
        max_keys: top-level keys in `metadata` of one request and in the stored document; 400.
        max_key_length: characters in one top-level key; 400.
        max_delete_keys: entries in `delete_keys`; 400.
        max_query_value_length: characters in `platform_key` and `username`; 400.
    """

    max_body_bytes: int = 256 * 1024
    max_document_bytes: int = 64 * 1024
    max_depth: int = 10
    max_keys: int = 512
    max_key_length: int = 256
    max_delete_keys: int = 512
    max_query_value_length: int = 256
