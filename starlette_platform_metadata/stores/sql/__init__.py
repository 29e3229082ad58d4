"""`DatabaseStore` and the kept connections, on SQLite or PostgreSQL, named through `databases`.

    store.py                DatabaseStore: opens on first use, hands each call to its engine
    dialects.py             the one switch: a URL picks the database's connection and engine
    schema.py               the tables' DDL, the schema-version row, opening on ready tables
    reads.py                the read SQL both engines share
    sqlite.py               the SQLite engine: what a group of updates writes
    sqlite_groups.py        SQLite's group commit: the queue, deadlines, retries
    sqlite_connection.py    SQLite's kept connections: reads on the loop, a writer thread
    sqlite_checkpoints.py   SQLite's WAL checkpoints, on a thread between two writes
    postgres.py             the PostgreSQL engine: the row lock, history in the same statement
    postgres_connection.py  PostgreSQL's pooled connections, one deadline per call
    sqlite_dumps.py         SQLite: a dump's snapshot, a load's transaction
    sqlite_backup.py        SQLite: a consistent copy of the live file (the online backup API)
    postgres_dumps.py       PostgreSQL: a dump's snapshot, a load's transaction
"""

from __future__ import annotations

from .dialects import sql_connection
from .store import DatabaseStore

__all__ = ["DatabaseStore", "sql_connection"]
