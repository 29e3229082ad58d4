"""The SQL each database speaks, and how each runs a write as one atomic statement.

This is the one place where SQLite and PostgreSQL differ.  Both keep one row per
(platform_key, username) with a JSON document, a version and two timestamps; a delete leaves a
tombstone row (document NULL, version bumped) so that a version never names two states.

Every write is a single statement that changes the row under the database's own lock, so it
is atomic across tasks, worker processes and hosts without an explicit transaction:

- SQLite: an UPSERT whose new document is computed by `spm_patch`, a Python function registered
  on the connection.  SQLite's JSON path syntax cannot address keys containing `"`, and
  `json_patch` has RFC 7396 semantics (null deletes, objects merge), so the merge is ours.
- PostgreSQL: PUT and DELETE are one conditional UPSERT/UPDATE each; PATCH, whose merge
  PostgreSQL cannot run in the statement, computes the document in Python and writes it with one
  compare-and-set statement on the version it read, falling back to the row lock when it loses
  a race (see `PostgresEngine`).

The hot path talks to the driver connection that `databases` opened, with SQL written here,
because `databases` compiles every query through SQLAlchemy, which costs more than the query.
"""

from __future__ import annotations

import itertools
import json
import re
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from ..connections import PostgresConnection, SQLiteConnection
from ..errors import DocumentTooLarge, PreconditionFailed
from ..payload import dump
from .base import EMPTY, Expect, Record, utcnow

if TYPE_CHECKING:
    from databases import Database

SCHEMA_VERSION = 1
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def check_identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"Not a plain SQL identifier: {name!r}")
    return name


def _condition(expect: Expect | None, version: str, document: str) -> str:
    """SQL for an `Expect`; versions are ints we parsed, so inlining them is safe."""
    if expect is None:
        return "TRUE"
    if expect.versions is None:
        named = f"{document} IS NOT NULL"
    elif not expect.versions:
        named = "FALSE"
    else:
        named = f"{version} IN ({', '.join(str(int(v)) for v in sorted(expect.versions))})"
    sql = f"NOT ({named})" if expect.negate else named
    if expect.also is not None:
        sql += " AND " + _condition(expect.also, version, document)
    return sql


def _upserts(expect: Expect | None) -> bool:
    """Whether a write may create the row: when 'nothing stored' is an acceptable state."""
    return expect is None or expect.admits(EMPTY)


class Engine(Protocol):
    def schema(self) -> list[str]: ...
    async def open(self, create_tables: bool) -> None: ...
    async def close(self) -> None: ...
    async def get(self, platform_key: str, username: str) -> Record: ...
    async def patch(
        self,
        platform_key: str,
        username: str,
        set: Mapping[str, Any],
        delete: Sequence[str],
        expect: Expect | None,
        max_bytes: int | None,
    ) -> Record: ...
    async def replace(
        self,
        platform_key: str,
        username: str,
        document: str,
        expect: Expect | None,
        max_bytes: int | None,
    ) -> Record: ...
    async def delete(self, platform_key: str, username: str, expect: Expect | None) -> None: ...


class _SQLEngine:
    """What both dialects share: one table, SQL written once with `$n` placeholders.

    The row is addressed as `r` in every statement (SQLite and PostgreSQL both accept
    `INSERT INTO t AS r` and `UPDATE t AS r`).  Subclasses say how a document goes in and out
    of its column, how timestamps are stored, and how a statement runs.
    """

    #: Column types of the document, the version and the timestamps.
    column_types = {"doc": "TEXT", "int": "INTEGER", "ts": "TEXT"}
    #: The cast that reads the document column as JSON text.
    doc_cast = ""
    #: SQL that turns the document parameter into the column's type.
    doc_in = "$4"

    def __init__(self, table: str) -> None:
        self._table = t = table
        columns = f"metadata{self.doc_cast}, version, created_at, updated_at"
        # RETURNING names columns unqualified: SQLite does not accept the alias there.
        self._returning = f"RETURNING {columns}"
        self._get_sql = self.sql(
            f"SELECT {columns} FROM {t} AS r WHERE r.platform_key = $1 AND r.username = $2"
        )
        insert = (
            f"INSERT INTO {t} AS r (platform_key, username, metadata, version, created_at, "
            "updated_at) VALUES ($1, $2, {new_insert}, 1, $3, $3) "
        )
        self._upsert_head = insert + (
            "ON CONFLICT (platform_key, username) DO UPDATE SET "
            "metadata = {new_update}, version = r.version + 1, "
            "created_at = COALESCE(r.created_at, $3), updated_at = $3 "
        )
        self._insert_only = insert + "ON CONFLICT (platform_key, username) DO NOTHING "
        self._update_head = (
            f"UPDATE {t} AS r SET metadata = {{new_update}}, version = r.version + 1, "
            "created_at = COALESCE(r.created_at, $3), updated_at = $3 "
            "WHERE r.platform_key = $1 AND r.username = $2 "
        )
        self._delete_sql = (
            f"UPDATE {t} AS r SET metadata = NULL, created_at = NULL, updated_at = NULL, "
            "version = r.version + (CASE WHEN r.metadata IS NULL THEN 0 ELSE 1 END) "
            "WHERE r.platform_key = $1 AND r.username = $2 AND {cond} RETURNING version"
        )
        self._exists_sql = self.sql(
            f"SELECT 1 FROM {t} AS r WHERE r.platform_key = $1 AND r.username = $2"
        )

    def schema(self) -> list[str]:
        """The DDL; the primary key's B-tree serves every statement: O(log n) per record."""
        t, types = self._table, self.column_types
        return [
            f"CREATE TABLE IF NOT EXISTS {t} ("
            f"platform_key TEXT NOT NULL, username TEXT NOT NULL, metadata {types['doc']}, "
            f"version {types['int']} NOT NULL, created_at {types['ts']}, updated_at {types['ts']}, "
            "PRIMARY KEY (platform_key, username))",
            f"CREATE TABLE IF NOT EXISTS {t}_schema (version INTEGER NOT NULL)",
            f"INSERT INTO {t}_schema (version) SELECT {SCHEMA_VERSION} "
            f"WHERE NOT EXISTS (SELECT 1 FROM {t}_schema)",
        ]

    def sql(self, text: str) -> str:
        """`text` in this dialect's placeholder style."""
        return text

    async def query(self, sql: str, params: Sequence[Any]) -> list[Any]:
        raise NotImplementedError

    def now(self) -> Any:
        raise NotImplementedError

    def timestamp(self, value: Any) -> datetime | None:
        raise NotImplementedError

    def _record(self, row: Sequence[Any]) -> Record:
        metadata, version, created, updated = row
        if metadata is None:
            return Record("{}", version, None, None)
        return Record(metadata, version, self.timestamp(created), self.timestamp(updated))

    async def get(self, platform_key: str, username: str) -> Record:
        rows = await self.query(self._get_sql, (platform_key, username))
        return self._record(rows[0]) if rows else EMPTY

    async def _conditional_write(
        self, params: Sequence[Any], new_insert: str, new_update: str, expect: Expect | None
    ) -> Record:
        """One statement that writes only when `expect` holds; 412 when it matched no row."""
        cond = _condition(expect, "r.version", "r.metadata")
        if _upserts(expect):
            sql = self._upsert_head.format(new_insert=new_insert, new_update=new_update)
            if expect is not None:
                sql += f"WHERE {cond} "
        else:
            sql = self._update_head.format(new_update=new_update) + f"AND {cond} "
        rows = await self.query(self.sql(sql + self._returning), params)
        if not rows:
            raise PreconditionFailed()
        return self._record(rows[0])

    async def replace(
        self,
        platform_key: str,
        username: str,
        document: str,
        expect: Expect | None,
        max_bytes: int | None,
    ) -> Record:
        if max_bytes is not None and len(document.encode()) > max_bytes:
            raise DocumentTooLarge(max_bytes)
        params = (platform_key, username, self.now(), document)
        return await self._conditional_write(params, self.doc_in, self.doc_in, expect)

    async def delete(self, platform_key: str, username: str, expect: Expect | None) -> None:
        cond = (
            "r.metadata IS NOT NULL"
            if expect is None
            else _condition(expect, "r.version", "r.metadata")
        )
        rows = await self.query(
            self.sql(self._delete_sql.format(cond=cond)), (platform_key, username)
        )
        if rows or expect is None:
            return
        if _upserts(expect):
            if not await self.query(self._exists_sql, (platform_key, username)):
                return
        raise PreconditionFailed()


def _merged(old: str | None, delete: Sequence[str], set: Mapping[str, Any]) -> str:
    """The document a PATCH leaves: `delete` keys removed, then `set` keys set, as `dump` text."""
    document: dict[str, Any] = json.loads(old) if old else {}
    for key in delete:
        document.pop(key, None)
    document.update(set)
    return dump(document)


class _TooLarge(Exception):
    pass


class _Patch:
    """A PATCH in flight, for `spm_patch` to find by its ticket."""

    __slots__ = ("delete", "max_bytes", "set", "too_large")

    def __init__(
        self, delete: Sequence[str], set: Mapping[str, Any], max_bytes: int | None
    ) -> None:
        self.delete = delete
        self.set = set
        self.max_bytes = max_bytes
        self.too_large = False


_PLACEHOLDER = re.compile(r"\$(\d+)")


class SQLiteEngine(_SQLEngine):
    """Kept connections to one SQLite file (see `connections.SQLiteConnection`).

    Each of our statements is complete and atomic on its own, so no transaction is ever left
    open, even when the awaiting task is cancelled.  Several processes share the file through
    WAL and `busy_timeout`.  Timestamps are stored as RFC 3339 text.
    """

    def __init__(
        self, database: Database, table: str, busy_timeout: float, synchronous: str
    ) -> None:
        self._translated: dict[str, str] = {}
        super().__init__(table)
        self._conn = SQLiteConnection(database, busy_timeout=busy_timeout, synchronous=synchronous)
        self._conn.add_function("spm_patch", 2, self._merge)
        self._patches: dict[int, _Patch] = {}
        self._tickets = itertools.count()

    def sql(self, text: str) -> str:
        # A handful of distinct statements exist; translate each once, not on every request.
        translated = self._translated.get(text)
        if translated is None:
            if len(self._translated) >= 256:  # If-Match versions are inlined: keep it bounded
                self._translated.clear()
            translated = self._translated[text] = _PLACEHOLDER.sub(r"?\1", text)
        return translated

    def now(self) -> str:
        return utcnow().isoformat().replace("+00:00", "Z")

    def timestamp(self, value: Any) -> datetime | None:
        return None if value is None else datetime.fromisoformat(value)

    def _merge(self, old: str | None, ticket: int) -> str:
        # Runs inside SQLite while the statement holds the write lock.  The PATCH's keys come
        # as Python objects through `ticket`, not as JSON parameters: no encoding round trip.
        patch = self._patches[ticket]
        text = _merged(old, patch.delete, patch.set)
        if patch.max_bytes is not None and len(text.encode()) > patch.max_bytes:
            patch.too_large = True
            raise _TooLarge
        return text

    async def open(self, create_tables: bool) -> None:
        await self._conn.open()
        if create_tables:
            try:
                for statement in self.schema():
                    await self.query(statement, ())
            except BaseException:
                await self._conn.close()
                raise

    async def close(self) -> None:
        await self._conn.close()

    async def query(self, sql: str, params: Sequence[Any]) -> list[Any]:
        return await self._conn.fetch(sql, params)

    async def patch(
        self,
        platform_key: str,
        username: str,
        set: Mapping[str, Any],
        delete: Sequence[str],
        expect: Expect | None,
        max_bytes: int | None,
    ) -> Record:
        ticket = next(self._tickets)
        patch = self._patches[ticket] = _Patch(delete, set, max_bytes)
        try:
            return await self._conditional_write(
                (platform_key, username, self.now(), ticket),
                "spm_patch(NULL, $4)",
                "spm_patch(r.metadata, $4)",
                expect,
            )
        except sqlite3.OperationalError:
            if patch.too_large:
                assert max_bytes is not None
                raise DocumentTooLarge(max_bytes) from None
            raise
        finally:
            # Also when cancelled while a thread still runs the statement: `_merge` then
            # finds no ticket, and the statement fails without writing.
            del self._patches[ticket]


class PostgresEngine(_SQLEngine):
    """asyncpg connections from the pool `databases` keeps, one per call.

    The document is a `json` column, not `jsonb`: `json` keeps the exact text we wrote, so a
    document reads back byte for byte as SQLite and `MemoryStore` render it.  `jsonb` would
    store numbers as `numeric`, turning `1e300` into a 301-digit integer and `1e16` into an int
    and dropping the sign of `-0.0`.

    PUT and DELETE are one conditional statement each, as on SQLite.  A PATCH needs the current
    document, and PostgreSQL cannot run our merge inside the statement, so it is a compare-and-
    set: read the row, compute the new document and its size in Python exactly as the other
    stores do, then write it with one statement that only applies while the row still has the
    version that was read (or, for a first write, only if no row exists yet).  A lost race
    changes nothing; the PATCH then repeats under `SELECT ... FOR UPDATE` in a transaction, so
    under contention writers queue on the row lock instead of retrying without bound.  So
    `max_bytes` is checked on the very text that gets stored, a refused write never changes the
    table, and the uncontended path holds no transaction across round trips.  (A `jsonb` merge
    in SQL with a size test in its WHERE clause could not measure the compact size the contract
    defines: PostgreSQL renders JSON with spaces, sorted keys and its own number formats.)

    Every operation, including waiting for a pooled connection and reconnecting, is bounded by
    `timeout`; connection failures and timeouts become `StoreUnavailable` (503).  The pool
    replaces broken connections on the next acquire, so the store recovers by itself when the
    server is back.
    """

    # `json`, not `jsonb`: see the class docstring.
    column_types = {"doc": "JSON", "int": "BIGINT", "ts": "TIMESTAMPTZ"}
    doc_cast = "::text"
    doc_in = "$4::json"

    def __init__(self, database: Database, table: str, timeout: float) -> None:
        super().__init__(table)
        self._conn = PostgresConnection(database, timeout=timeout)
        t = table
        self._insert_sql = self._insert_only.format(new_insert=self.doc_in) + self._returning
        self._swap_sql = (
            self._update_head.format(new_update=self.doc_in)
            + "AND r.version = $5 "
            + self._returning
        )
        # A row to lock for a first write (see `patch`): it reads exactly like nothing stored.
        self._placeholder_sql = (
            f"INSERT INTO {t} (platform_key, username, metadata, version) "
            "VALUES ($1, $2, NULL, 0) ON CONFLICT (platform_key, username) DO NOTHING"
        )
        self._lock_sql = self._get_sql + " FOR UPDATE"

    def now(self) -> datetime:
        return utcnow()

    def timestamp(self, value: Any) -> datetime | None:
        return value  # type: ignore[no-any-return]

    async def open(self, create_tables: bool) -> None:
        t = self._table
        async with self._conn.session() as raw:
            encoding = await raw.fetchval("SHOW server_encoding")
            if encoding != "UTF8":
                raise RuntimeError(f"DatabaseStore needs a UTF8 database, not {encoding}")
            if create_tables:
                async with raw.transaction():
                    # Several workers may start at once, and CREATE TABLE IF NOT EXISTS races.
                    await raw.execute("SELECT pg_advisory_xact_lock(720531, hashtext($1))", t)
                    for statement in self.schema():
                        await raw.execute(statement)
            found = await raw.fetchval(
                "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL",
                t,
                f"{t}_schema",
            )
            if not found:
                raise RuntimeError(
                    f"Table {t} or {t}_schema is missing: create them with the statements of "
                    "DatabaseStore.schema() (python -m starlette_platform_metadata schema)"
                )
            version = await raw.fetchval(f"SELECT max(version) FROM {t}_schema")
            if version != SCHEMA_VERSION:
                raise RuntimeError(
                    f"Table {t} has schema version {version}; this release needs {SCHEMA_VERSION}"
                )

    async def close(self) -> None:
        await self._conn.close()

    async def query(self, sql: str, params: Sequence[Any]) -> list[Any]:
        return await self._conn.fetch(sql, *params)

    async def patch(
        self,
        platform_key: str,
        username: str,
        set: Mapping[str, Any],
        delete: Sequence[str],
        expect: Expect | None,
        max_bytes: int | None,
    ) -> Record:
        async with self._conn.session() as raw:
            row = await raw.fetchrow(self._get_sql, platform_key, username)
            written = await self._swap(
                raw, row, platform_key, username, set, delete, expect, max_bytes
            )
            if written is not None:
                return self._record(written)
            # Another writer got in between our read and our write.  Retrying the swap could
            # lose again and again under contention, so take the row lock instead: writers then
            # queue on it and each one makes progress.  A placeholder row (version 0, no
            # document, which reads exactly like "nothing stored") gives a first write a row to
            # lock; a refusal rolls it back with everything else.
            async with raw.transaction():
                await raw.execute(self._placeholder_sql, platform_key, username)
                row = await raw.fetchrow(self._lock_sql, platform_key, username)
                written = await self._swap(
                    raw, row, platform_key, username, set, delete, expect, max_bytes
                )
                assert written is not None, "the row is locked: the swap cannot lose"
                return self._record(written)

    async def _swap(
        self,
        raw: Any,
        row: Any,
        platform_key: str,
        username: str,
        set: Mapping[str, Any],
        delete: Sequence[str],
        expect: Expect | None,
        max_bytes: int | None,
    ) -> Any:
        """Write the merge of `row` if the row is still as read; `None` when it was not."""
        current = EMPTY if row is None else self._record(row)
        if expect is not None and not expect.admits(current):
            raise PreconditionFailed()
        document = _merged(row[0] if row is not None else None, delete, set)
        if max_bytes is not None and len(document.encode()) > max_bytes:
            raise DocumentTooLarge(max_bytes)
        params: tuple[Any, ...] = (platform_key, username, utcnow(), document)
        if row is None:
            return await raw.fetchrow(self._insert_sql, *params)
        return await raw.fetchrow(self._swap_sql, *params, current.version)
