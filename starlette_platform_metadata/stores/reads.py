"""Reading the metadata table: the same SQL and the same row-to-record rule on both databases."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .base import EMPTY, POLICY_USERNAME, Record
from .connections import SQLConnection

__all__ = ["SQLReads"]

# `CAST(... AS TEXT)`: PostgreSQL's `json` column as the exact text stored; a no-op on SQLite.
_COLUMNS = "CAST(metadata AS TEXT), version, created_at, updated_at"


class SQLReads:
    """`get` and `records` of an engine, written once with `$1` placeholders.

    Subclasses say how a stored timestamp becomes a `datetime` (`timestamp`).
    """

    def __init__(self, connection: SQLConnection, table: str) -> None:
        self.reader = connection
        self._get_sql = (
            f"SELECT {_COLUMNS} FROM {table} WHERE platform_key = $1 AND username = $2"
        )
        # Keyset pagination on the primary key's order; the policy record is not a document.
        self._records_sql = (
            f"SELECT username, {_COLUMNS} FROM {table} "
            "WHERE platform_key = $1 AND username > $2 AND username <> $3 "
            "AND metadata IS NOT NULL ORDER BY username LIMIT $4"
        )

    def timestamp(self, value: Any) -> datetime | None:
        """A stored timestamp as an aware datetime (the driver's own, by default)."""
        return value  # type: ignore[no-any-return]

    def _record(self, row: Sequence[Any] | None) -> Record:
        """A row as a record: no row is nothing stored; a NULL document is a tombstone."""
        if row is None:
            return EMPTY
        metadata, version, created, updated = row
        if metadata is None:
            return Record("{}", version, None, None)
        return Record(metadata, version, self.timestamp(created), self.timestamp(updated))

    async def get(self, platform_key: str, username: str) -> Record:
        rows = await self.reader.fetch(self._get_sql, platform_key, username)
        return self._record(rows[0] if rows else None)

    async def records(
        self, platform_key: str, after: str | None, limit: int
    ) -> list[tuple[str, Record]]:
        rows = await self.reader.fetch(
            self._records_sql, platform_key, after or "", POLICY_USERNAME, limit
        )
        return [(row[0], self._record(row[1:])) for row in rows]
