"""The tables: their DDL on each database, the schema-version row, and opening on them.

`DatabaseStore`'s tables (`schema()`, what `python -m starlette_platform_metadata schema`
prints) and the steps that make any set of tables ready on first use (`open_tables`): one
transaction of `CREATE ... IF NOT EXISTS`, serialized between processes on PostgreSQL; the
version recorded in `<name>_schema`, and refused when it is another release's.  A host's own
tables use the same steps (example_host/db.py).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence

from ..base import SchemaMismatch, StoreUnavailable
from ..connections import SQLConnection, SQLTransaction

__all__ = [
    "SCHEMA_VERSION",
    "check_identifier",
    "check_version",
    "history_schema",
    "listing_schema",
    "open_tables",
    "schema",
    "sqlite_history_upgrade",
    "upgrade_schema",
    "version_rows",
]

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
    of version 2 first (`upgrade_schema`)."""
    t = check_identifier(table)
    types = _TYPES[dialect]
    return [
        f"CREATE TABLE IF NOT EXISTS {t} ("
        f"platform_key TEXT NOT NULL, username TEXT NOT NULL, metadata {types['doc']}, "
        f"version {types['int']} NOT NULL, created_at {types['ts']}, updated_at {types['ts']}, "
        "PRIMARY KEY (platform_key, username))",
        *history_schema(t, dialect),
        *listing_schema(t, dialect),
        *version_rows(t, SCHEMA_VERSION),
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


def version_rows(name: str, version: int) -> list[str]:
    """`<name>_schema`: one row, the schema version of the tables named `name`.  Written once;
    raised when the tables were an older release's (whose statements only add what is
    missing); a newer release's is left for `open_tables` to refuse."""
    v = f"{check_identifier(name)}_schema"
    return [
        f"CREATE TABLE IF NOT EXISTS {v} (version INTEGER NOT NULL)",
        f"INSERT INTO {v} (version) SELECT {version} WHERE NOT EXISTS (SELECT 1 FROM {v})",
        f"UPDATE {v} SET version = {version} WHERE version < {version}",
    ]


# Several processes may start at once, and CREATE TABLE IF NOT EXISTS races on PostgreSQL: the
# DDL runs under a transaction-level advisory lock, keyed by the tables' name.
_DDL_LOCK = "SELECT pg_advisory_xact_lock(720531, hashtext($1))"


async def upgrade_schema(tx: SQLTransaction, table: str, dialect: str) -> None:
    """Inside the DDL's transaction, before `schema()`: what older tables need beyond the
    statements that add what is missing.  SQLite's history of schema version 2 is converted
    (`sqlite_history_upgrade`); PostgreSQL needs nothing."""
    if dialect != "sqlite":
        return
    columns = await tx.fetch(f"SELECT name FROM pragma_table_info('{table}_history')")
    if ("username",) in {tuple(row) for row in columns}:
        for statement in sqlite_history_upgrade(table):
            await tx.fetch(statement)


async def open_tables(
    connection: SQLConnection,
    name: str,
    version: int,
    statements: Sequence[str] | None,
    *,
    before: Callable[[SQLTransaction], Awaitable[None]] | None = None,
    missing: str = "",
) -> None:
    """Open `connection` on the tables named `name`, ready for this release; on any failure
    close it again and raise.

    Args:
        statements: the DDL, ending in `version_rows(name, version)`, run in one transaction;
            `None`: the tables were created ahead of time (runtime DDL off).
        before: runs first inside the DDL's transaction (an upgrade of older tables).
        missing: what to do when the tables are missing, for the error.

    Raises:
        SchemaMismatch: `<name>_schema` is missing or records another version than `version`
            (a `RuntimeError`).
        RuntimeError: the PostgreSQL database does not use UTF8 (text of any language must
            fit).
    """
    await connection.open()
    try:
        if connection.dialect == "postgresql":
            encoding = await connection.fetchrow("SHOW server_encoding")
            if encoding[0] != "UTF8":
                raise RuntimeError(f"Table {name} needs a UTF8 database, not {encoding[0]}")
        if statements is not None:
            async with connection.transaction() as tx:
                # PostgreSQL: tables already at this version run no DDL at all.  `IF NOT
                # EXISTS` still locks: CREATE INDEX takes a SHARE lock on its table, and a
                # process opening while others write deadlocked with their writes.
                current = False
                if connection.dialect == "postgresql":
                    await tx.fetch(_DDL_LOCK, name)
                    current = await _at_version(tx, name, version)
                if before is not None and not current:
                    await before(tx)
                for statement in () if current else statements:
                    await tx.fetch(statement)
        await check_version(connection, name, version, missing)
    except BaseException:
        await connection.close()
        raise


async def _at_version(tx: SQLTransaction, name: str, version: int) -> bool:
    """Whether PostgreSQL's `<name>_schema` exists and records exactly `version`."""
    row = await tx.fetchrow("SELECT to_regclass($1) IS NOT NULL", f"{name}_schema")
    if not row[0]:
        return False
    row = await tx.fetchrow(f"SELECT max(version) FROM {name}_schema")
    return row is not None and row[0] == version


async def check_version(
    connection: SQLConnection, name: str, version: int, missing: str = ""
) -> None:
    """The tables named `name` record schema version `version`, asked of the database now.

    Raises:
        SchemaMismatch: `<name>_schema` is missing or records another version.
        StoreUnavailable: the database did not answer.
    """
    try:
        row = await connection.fetchrow(f"SELECT max(version) FROM {name}_schema")
    except StoreUnavailable:
        raise
    except Exception as exc:
        hint = f": {missing}" if missing else ""
        raise SchemaMismatch(
            f"Table {name} or {name}_schema is missing{hint}", None, version
        ) from exc
    if row is None or row[0] != version:
        found = None if row is None else row[0]
        raise SchemaMismatch(
            f"Table {name} has schema version {found}; this release needs {version}",
            found,
            version,
        )
