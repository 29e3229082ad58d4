"""Storage backends for platform metadata."""

from __future__ import annotations

from .base import (
    EMPTY,
    POLICY_USERNAME,
    Change,
    ChangeReader,
    GuardedWriter,
    GuardMoved,
    HistoryReader,
    Record,
    ManyReader,
    RecordLister,
    Revision,
    Store,
    StoreError,
    StoreUnavailable,
    Write,
)
from .connections import OpensOnFirstUse, SQLConnection
from .memory import MemoryStore
from .sql import DatabaseStore, sql_connection

__all__ = [
    "EMPTY",
    "POLICY_USERNAME",
    "Change",
    "ChangeReader",
    "DatabaseStore",
    "GuardMoved",
    "GuardedWriter",
    "HistoryReader",
    "MemoryStore",
    "OpensOnFirstUse",
    "Record",
    "ManyReader",
    "RecordLister",
    "Revision",
    "SQLConnection",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "Write",
    "sql_connection",
]
