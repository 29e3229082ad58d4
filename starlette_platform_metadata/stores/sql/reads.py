"""The SQL both databases share: reading records and history.

Written once with `$1` placeholders (SQLite's engine translates them to `?1`).  SQLite keys
its history by user ids (schema.py, `history_schema`): its engine rewrites the two history
reads for that layout."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from ...metrics import NO_METRICS, Metrics
from ..base import EMPTY, POLICY_USERNAME, Record, Revision
from ..connections import SQLConnection
from ..filters import SQLFilter, matches

__all__ = ["SQLReads"]

# `CAST(... AS TEXT)`: PostgreSQL's `json` column as the exact text stored; a no-op on SQLite.
_COLUMNS = "CAST(metadata AS TEXT), version, created_at, updated_at"
REVISION_COLUMNS = (
    "version, operation, actor, at, CAST(metadata AS TEXT), changed_keys, created_at, seq"
)
#: Above every version: "before nothing" when paging history from its newest revision.
_NO_VERSION = 2**62


class SQLReads:
    """`get` and `records` of an engine, written once with `$1` placeholders.

    Subclasses say how a stored timestamp becomes a `datetime` (`timestamp`), and give the
    SQL of a listing's filter in their dialect (`filter_sql`, stores/filters.py).
    """

    def __init__(
        self,
        connection: SQLConnection,
        table: str,
        filter_sql: Callable[[Mapping[str, Any], int], SQLFilter],
    ) -> None:
        self.reader = connection
        self.metrics: Metrics = NO_METRICS  # `DatabaseStore.report_to` sets the app's
        self._get_sql = (
            f"SELECT {_COLUMNS} FROM {table} WHERE platform_key = $1 AND username = $2"
        )
        # Keyset pagination on the primary key's order; the policy record is not a document.
        self._records_sql = (
            f"SELECT username, {_COLUMNS} FROM {table} "
            "WHERE platform_key = $1 AND username > $2 AND username <> $3 "
            "AND metadata IS NOT NULL ORDER BY username LIMIT $4"
        )
        # The same scan with a filter's conditions (`stores/filters.py`) before the ORDER BY.
        self._filtered_sql = self._records_sql.replace(" ORDER BY", "{where} ORDER BY")
        self._filter_sql = filter_sql
        h = f"{table}_history"
        # The newest page: a backward range scan of the primary key, `limit` rows.
        self._revisions_sql = (
            f"SELECT {REVISION_COLUMNS} FROM {h} WHERE platform_key = $1 AND username = $2 "
            "AND version < $3 ORDER BY version DESC LIMIT $4"
        )
        self._changes_sql = (
            f"SELECT username, {REVISION_COLUMNS} FROM {h} WHERE platform_key = $1 "
            "AND seq > $2 ORDER BY seq LIMIT $3"
        )
        self._position_sql = f"SELECT seq, horizon FROM {table}_clock WHERE platform_key = $1"

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

    def _revision(self, row: Sequence[Any]) -> Revision:
        version, operation, actor, at, metadata, changed, created, seq = row
        at = self.timestamp(at)
        assert at is not None
        return Revision(
            version,
            operation,
            actor,
            at,
            metadata,
            tuple(json.loads(changed)),
            self.timestamp(created),
            seq,
        )

    async def changes(
        self, platform_key: str, after: int, limit: int, usernames: Sequence[str] | None
    ) -> list[tuple[str, Revision]]:
        if usernames is None:
            rows = await self.reader.fetch(self._changes_sql, platform_key, after, limit)
        else:
            # Only the watched users' rows become Python objects; the rest stay in the database.
            rows = await self.reader.fetch(
                self._changes_of_sql, platform_key, after, limit, self._names(usernames)
            )
        return [(row[0], self._revision(row[1:])) for row in rows]

    #: `_changes_sql` for the users in `$4` (each engine's way of passing a list).
    _changes_of_sql = ""

    def _names(self, usernames: Sequence[str]) -> Any:
        """`usernames` as the engine's `$4` of `_changes_of_sql`."""
        return list(usernames)

    async def position(self, platform_key: str) -> tuple[int, int]:
        rows = await self.reader.fetch(self._position_sql, platform_key)
        return (rows[0][0], rows[0][1]) if rows else (0, 0)

    async def revisions(
        self, platform_key: str, username: str, before: int | None, limit: int
    ) -> list[Revision]:
        rows = await self.reader.fetch(
            self._revisions_sql,
            platform_key,
            username,
            _NO_VERSION if before is None else before,
            limit,
        )
        return [self._revision(row) for row in rows]

    async def records(
        self,
        platform_key: str,
        after: str | None,
        limit: int,
        filter: Mapping[str, Any] | None = None,
    ) -> list[tuple[str, Record]]:
        if not filter:
            rows = await self.reader.fetch(
                self._records_sql, platform_key, after or "", POLICY_USERNAME, limit
            )
            return [(row[0], self._record(row[1:])) for row in rows]
        where = self._filter_sql(filter, 5)
        sql = self._filtered_sql.format(where=where.where)
        found: list[tuple[str, Record]] = []
        while True:
            rows = await self.reader.fetch(
                sql, platform_key, after or "", POLICY_USERNAME, limit, *where.params
            )
            for row in rows:
                record = self._record(row[1:])
                if not where.recheck or matches(record.metadata, filter):
                    found.append((row[0], record))
            # SQL narrowed, Python decided: read on while candidates fell through.
            if len(found) >= limit or len(rows) < limit:
                return found[:limit]
            after = rows[-1][0]
