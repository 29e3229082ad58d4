"""Storage backends for platform metadata."""

from __future__ import annotations

from .base import EMPTY, Change, Record, Store, StoreError, StoreUnavailable, Write
from .connections import OpensOnFirstUse, SQLConnection, sql_connection
from .memory import MemoryStore
from .sql import DatabaseStore

__all__ = [
    "EMPTY",
    "Change",
    "DatabaseStore",
    "MemoryStore",
    "OpensOnFirstUse",
    "Record",
    "SQLConnection",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "Write",
    "sql_connection",
]
