"""Storage backends for platform metadata."""

from __future__ import annotations

from .base import ANY_RECORD, EMPTY, NO_RECORD, Expect, Record, Store
from .memory import MemoryStore
from .sql import DatabaseStore

__all__ = [
    "ANY_RECORD",
    "EMPTY",
    "NO_RECORD",
    "DatabaseStore",
    "Expect",
    "MemoryStore",
    "Record",
    "Store",
]
