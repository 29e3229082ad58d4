"""`DatabaseStore`: metadata in SQLite (default) or PostgreSQL, named through `databases`."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..base import Change, Record, Revision, StoreUnavailable
from ..connections import OpensOnFirstUse, SQLConnection
from .dialects import Engine, backend

if TYPE_CHECKING:
    # `databases` brings SQLAlchemy (~130 ms and 100 modules to import): it loads when a
    # `DatabaseStore` is built, not when the package is imported (issue 23).
    from databases import Database, DatabaseURL

__all__ = ["DatabaseStore"]

#: 1: the metadata table; 2: its history table (`<table>_history`), added on first use; 3: on
#: SQLite, history keyed by user ids (`<table>_user_ids`), converted from 2 on first use.
SCHEMA_VERSION = 3
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# Column types of the document, the version and the timestamps.  PostgreSQL keeps the
# document as `json`, not `jsonb`: see postgres.py.
_TYPES = {
    "sqlite": {"doc": "TEXT", "int": "INTEGER", "ts": "TEXT"},
    "postgresql": {"doc": "JSON", "int": "BIGINT", "ts": "TIMESTAMPTZ"},
}


def check_identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"Not a plain SQL identifier: {name!r}")
    return name


def schema(table: str, dialect: str) -> list[str]:
    """The DDL: one row per (platform, user); a delete leaves a tombstone row (document and
    timestamps NULL, version kept), so a version never names two states.  The primary key's
    B-tree serves every statement: O(log n) per record.  Running it again upgrades a table of
    schema version 1 (it adds the history tables); `DatabaseStore` converts SQLite's history
    of version 2 first (`sqlite_history_upgrade`)."""
    t = check_identifier(table)
    types = _TYPES[dialect]
    return [
        f"CREATE TABLE IF NOT EXISTS {t} ("
        f"platform_key TEXT NOT NULL, username TEXT NOT NULL, metadata {types['doc']}, "
        f"version {types['int']} NOT NULL, created_at {types['ts']}, updated_at {types['ts']}, "
        "PRIMARY KEY (platform_key, username))",
        *history_schema(t, dialect),
        *listing_schema(t, dialect),
        f"CREATE TABLE IF NOT EXISTS {t}_schema (version INTEGER NOT NULL)",
        f"INSERT INTO {t}_schema (version) SELECT {SCHEMA_VERSION} "
        f"WHERE NOT EXISTS (SELECT 1 FROM {t}_schema)",
        f"UPDATE {t}_schema SET version = {SCHEMA_VERSION} WHERE version < {SCHEMA_VERSION}",
    ]


def history_schema(table: str, dialect: str) -> list[str]:
    """One row per kept revision, and each platform's change clock.

    The primary key (user, version) serves a user's history: the newest page (a backward
    range scan), the insert, and retention (a range delete), each O(log n) plus the rows it
    touches.  `seq` numbers a platform's changes in commit order (the clock row is locked by
    every write of the platform until it commits); its index serves live changes ("the
    platform's changes after seq n").  `changed_keys` is a JSON array.

    On PostgreSQL the user is (platform_key, username).  On SQLite it is an integer id from
    `<table>_user_ids`, which numbers each (platform, user) once and never renumbers: a
    revision's key is then two integers instead of two strings, so a user's whole history
    fits a few hundred bytes of index and four or more users share a leaf page; a write dirties
    (and the WAL receives) about half the pages (benchmarks/README.md, "History keyed by
    integer user ids")."""
    types = _TYPES[dialect]
    h = f"{table}_history"
    if dialect == "sqlite":
        tables = _sqlite_history_tables(table)
    else:
        tables = [
            f"CREATE TABLE IF NOT EXISTS {h} (platform_key TEXT NOT NULL, username TEXT NOT "
            f"NULL, {_revision_columns(dialect)}, PRIMARY KEY (platform_key, username, version))"
        ]
    return [
        *tables,
        f"CREATE INDEX IF NOT EXISTS {h}_seq ON {h} (platform_key, seq)",
        f"CREATE TABLE IF NOT EXISTS {table}_clock (platform_key TEXT PRIMARY KEY, "
        f"seq {types['int']} NOT NULL, horizon {types['int']} NOT NULL)",
    ]


def _sqlite_history_tables(table: str) -> list[str]:
    """SQLite's user ids, and its history keyed by them."""
    columns = _revision_columns("sqlite")
    return [
        f"CREATE TABLE IF NOT EXISTS {table}_user_ids (id INTEGER PRIMARY KEY, "
        "platform_key TEXT NOT NULL, username TEXT NOT NULL, UNIQUE (platform_key, username))",
        f"CREATE TABLE IF NOT EXISTS {table}_history (user_id INTEGER NOT NULL, "
        f"platform_key TEXT NOT NULL, {columns}, PRIMARY KEY (user_id, version))",
    ]


def _revision_columns(dialect: str) -> str:
    """A revision's own columns, the same on both databases but for their types."""
    types = _TYPES[dialect]
    return (
        f"version {types['int']} NOT NULL, seq {types['int']} NOT NULL, "
        f"operation TEXT NOT NULL, actor TEXT, at {types['ts']} NOT NULL, "
        f"created_at {types['ts']}, metadata {types['doc']} NOT NULL, changed_keys TEXT NOT NULL"
    )


def sqlite_history_upgrade(table: str) -> list[str]:
    """SQLite, schema version 2 to 3: the history table keyed by (platform, username, version)
    becomes the one keyed by (user id, version), its rows kept.  Run inside one transaction,
    before `schema()`, only on a history table that still has a `username` column."""
    h = f"{table}_history"
    columns = "version, seq, operation, actor, at, created_at, metadata, changed_keys"
    return [
        f"DROP INDEX IF EXISTS {h}_seq",
        f"ALTER TABLE {h} RENAME TO {h}_v2",
        *_sqlite_history_tables(table),
        f"INSERT OR IGNORE INTO {table}_user_ids (platform_key, username) "
        f"SELECT platform_key, username FROM {h}_v2 ORDER BY platform_key, username",
        f"INSERT INTO {h} (user_id, platform_key, {columns}) SELECT u.id, o.platform_key, "
        f"{', '.join('o.' + c for c in columns.split(', '))} FROM {h}_v2 AS o "
        f"JOIN {table}_user_ids AS u "
        "ON u.platform_key = o.platform_key AND u.username = o.username",
        f"DROP TABLE {h}_v2",
    ]


def listing_schema(table: str, dialect: str) -> list[str]:
    """The index of filtered listings (`records(filter=...)`, `stores/filters.py`).

    PostgreSQL: a GIN index on the document as `jsonb` (`jsonb_path_ops`: containment `@>`
    only, a third of the default operator class's size).  The column stays `json`, the exact
    text, so round trips stay exact; the index holds the parsed form.  `IF NOT EXISTS`: run at
    every startup, it builds once (on a large existing table, create it ahead of time with
    `CREATE INDEX CONCURRENTLY` under the same name: docs/listing.md).  SQLite has no index
    for arbitrary keys: a filtered page scans the platform's primary-key range from the cursor
    and reads each document's key (`json_type` / `json_extract`) until the page is full."""
    if dialect != "postgresql":
        return []
    return [
        f"CREATE INDEX IF NOT EXISTS {table}_metadata_jsonb ON {table} "
        "USING gin ((metadata::jsonb) jsonb_path_ops)"
    ]


class DatabaseStore(OpensOnFirstUse):
    """A `Store` on a SQL database.

    Args:
        url: a `databases` URL: `sqlite:///file.db` (the default is `sqlite:///platform_metadata.db`)
            or `postgresql://user:pass@host/db` (needs the `postgresql` extra; pool size per
            process with `?min_size=..&max_size=..`, see docs/postgresql.md).
        database: a `databases.Database` the host already has, instead of `url`.  The store
            never disconnects it.
        table: the table name; `<table>_schema` records the schema version next to it.
        create_tables: create the tables on first use; turn off where runtime DDL is forbidden
            and run the statements of `schema()` ahead of time.
        busy_timeout: seconds an operation may take before the request is answered 503: waiting
            for another process's lock (SQLite); for a pooled connection, a (re)connection and
            the statements together (PostgreSQL).
        synchronous: SQLite's `PRAGMA synchronous` (`NORMAL` is durable across process crashes
            in WAL mode; `FULL` also across power loss: concurrent writers share each fsync).

    The store connects on first use, so it works inside a mounted app whose lifespan never runs;
    hosts that prefer to connect at startup call `connect()` / `disconnect()` from their own
    lifespan, or use the store as an async context manager.
    """

    def __init__(
        self,
        url: str | DatabaseURL | None = None,
        *,
        database: Database | None = None,
        table: str = "platform_metadata",
        create_tables: bool = True,
        busy_timeout: float = 5.0,
        synchronous: str = "NORMAL",
    ) -> None:
        super().__init__()
        if database is not None and url is not None:
            raise ValueError("Pass either url or database, not both.")
        self.table = check_identifier(table)
        self._create_tables = create_tables
        picked = backend(
            database if database is not None else url or "sqlite:///platform_metadata.db",
            busy_timeout=busy_timeout,
            synchronous=synchronous,
        )
        self.connection: SQLConnection = picked.connection
        self.dialect = self.connection.dialect
        self._engine: Engine = picked.engine(self.table)

    def schema(self) -> list[str]:
        """The DDL statements that create this store's tables."""
        return schema(self.table, self.dialect)

    async def _open(self) -> None:
        await self.connection.open()
        try:
            await self._prepare()
        except BaseException:
            await self.connection.close()
            raise

    async def _prepare(self) -> None:
        t = self.table
        if self.dialect == "postgresql":
            encoding = await self.connection.fetchrow("SHOW server_encoding")
            if encoding[0] != "UTF8":
                raise RuntimeError(f"DatabaseStore needs a UTF8 database, not {encoding[0]}")
        if self._create_tables:
            async with self.connection.transaction() as tx:
                if self.dialect == "postgresql":
                    # Several workers may start at once, and CREATE TABLE IF NOT EXISTS races.
                    await tx.fetch("SELECT pg_advisory_xact_lock(720531, hashtext($1))", t)
                else:
                    columns = await tx.fetch(f"SELECT name FROM pragma_table_info('{t}_history')")
                    if ("username",) in {tuple(row) for row in columns}:
                        for statement in sqlite_history_upgrade(t):
                            await tx.fetch(statement)
                for statement in self.schema():
                    await tx.fetch(statement)
        try:
            row = await self.connection.fetchrow(f"SELECT max(version) FROM {t}_schema")
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise RuntimeError(
                f"Table {t} or {t}_schema is missing: create them with the statements of "
                "DatabaseStore.schema() (python -m starlette_platform_metadata schema)"
            ) from exc
        if row[0] != SCHEMA_VERSION:
            raise RuntimeError(
                f"Table {t} has schema version {row[0]}; this release needs {SCHEMA_VERSION}"
            )

    async def _close(self) -> None:
        await self._engine.close()
        await self.connection.close()

    async def get(self, platform_key: str, username: str) -> Record:
        if not self._ready:  # not `await ensure_open()`: a coroutine per read costs here
            await self.connect()
        return await self._engine.get(platform_key, username)

    async def update(self, platform_key: str, username: str, change: Change) -> Record:
        if not self._ready:
            await self.connect()
        return await self._engine.update(platform_key, username, change)

    async def get_many(self, platform_key: str, usernames: Sequence[str]) -> list[Record]:
        """Several records of one platform in one statement (`ManyReader`)."""
        if not self._ready:
            await self.connect()
        return await self._engine.get_many(platform_key, usernames)

    async def records(
        self,
        platform_key: str,
        *,
        after: str | None = None,
        limit: int = 100,
        filter: Mapping[str, Any] | None = None,
    ) -> list[tuple[str, Record]]:
        """A platform's stored documents by username: one primary-key range scan per page
        (with a filter on PostgreSQL, the GIN index's candidates where it is cheaper)."""
        await self.ensure_open()
        return await self._engine.records(platform_key, after, limit, filter)

    async def update_many(
        self, platform_key: str, updates: Sequence[tuple[str, Change]]
    ) -> list[Record]:
        """Several changes of one platform in one transaction: all stored, or none
        (`ManyWriter`)."""
        if len({username for username, _ in updates}) != len(updates):
            raise ValueError("update_many: each username at most once")
        await self.ensure_open()
        return await self._engine.update_many(platform_key, updates)

    async def revisions(
        self, platform_key: str, username: str, *, before: int | None = None, limit: int = 20
    ) -> list[Revision]:
        """A user's revisions, newest first (`HistoryReader`): one primary-key range scan."""
        if not self._ready:
            await self.connect()
        return await self._engine.revisions(platform_key, username, before, limit)

    async def changes(
        self,
        platform_key: str,
        *,
        after: int,
        limit: int = 500,
        usernames: Sequence[str] | None = None,
    ) -> list[tuple[str, Revision]]:
        """The platform's changes after `seq` (`ChangeReader`): one index range scan."""
        if not self._ready:
            await self.connect()
        return await self._engine.changes(platform_key, after, limit, usernames)

    async def position(self, platform_key: str) -> tuple[int, int]:
        if not self._ready:
            await self.connect()
        return await self._engine.position(platform_key)

    async def poll(self) -> bool:
        """SQLite: `PRAGMA data_version` moved (any connection committed); PostgreSQL: a
        NOTIFY arrived on the store's one listening connection."""
        if not self._ready:
            await self.connect()
        return await self._engine.poll()
