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

import asyncio
import contextlib
import json
import re
import sqlite3
import threading
import warnings
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import DocumentTooLarge, PreconditionFailed, StoreUnavailable
from ..payload import dump
from .base import EMPTY, Expect, Record, utcnow

if TYPE_CHECKING:
    from databases import Database
    from databases.core import Connection

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
        return f"{document} IS NOT NULL"
    if not expect.versions:
        return "FALSE"
    return f"{version} IN ({', '.join(str(int(v)) for v in sorted(expect.versions))})"


def _upserts(expect: Expect | None) -> bool:
    """Whether a write may create the row: without a condition, or when 'nothing stored' is
    one of the acceptable states."""
    return expect is None or (expect.versions is not None and 0 in expect.versions)


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


def _ts(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_ts(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


class _TooLarge(Exception):
    pass


def _stop_at_exit(raw: Any) -> None:
    """Stop aiosqlite's worker thread when the interpreter exits.

    The thread is not a daemon, and Python joins such threads before `atexit` runs, so a host
    that never calls `disconnect()` would hang on exit.  `threading._register_atexit` runs
    before that join (concurrent.futures relies on it too).
    """
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        with contextlib.suppress(RuntimeError):  # raised when already shutting down
            register(_quiet_stop, weakref.ref(raw))


def _quiet_stop(ref: weakref.ref[Any]) -> None:
    raw = ref()
    if raw is not None and getattr(raw, "_running", False):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw.stop()


class SQLiteEngine:
    """One long-lived aiosqlite connection per store.

    `databases` opens a new aiosqlite connection, and with it a new thread, for every
    connection it hands out; one kept connection avoids that on every request.  Statements on
    it run one at a time on its thread, and each of ours is a complete atomic statement, so no
    transaction is ever left open, even when the awaiting task is cancelled.  Several processes
    share the file through WAL and `busy_timeout`.
    """

    def __init__(
        self, database: Database, table: str, busy_timeout: float, synchronous: str
    ) -> None:
        self._database = database
        self._table = table
        self._busy_timeout_ms = int(busy_timeout * 1000)
        self._synchronous = synchronous
        self._connection: Connection | None = None
        self._raw: Any = None
        self._too_large: int | None = None
        t = table
        returning = "RETURNING metadata, version, created_at, updated_at"
        self._get_sql = (
            f"SELECT metadata, version, created_at, updated_at FROM {t} "
            "WHERE platform_key = ?1 AND username = ?2"
        )
        self._upsert_head = (
            f"INSERT INTO {t} (platform_key, username, metadata, version, created_at, updated_at) "
            "VALUES (?1, ?2, {new_insert}, 1, ?3, ?3) "
            "ON CONFLICT (platform_key, username) DO UPDATE SET "
            "metadata = {new_update}, version = version + 1, "
            "created_at = COALESCE(created_at, ?3), updated_at = ?3 "
        )
        self._update_head = (
            f"UPDATE {t} SET metadata = {{new_update}}, version = version + 1, "
            "created_at = COALESCE(created_at, ?3), updated_at = ?3 "
            "WHERE platform_key = ?1 AND username = ?2 "
        )
        self._returning = returning
        self._delete_sql = (
            f"UPDATE {t} SET metadata = NULL, created_at = NULL, updated_at = NULL, "
            "version = version + (metadata IS NOT NULL) "
            "WHERE platform_key = ?1 AND username = ?2 AND {cond} RETURNING version"
        )
        self._exists_sql = f"SELECT 1 FROM {t} WHERE platform_key = ?1 AND username = ?2"

    def schema(self) -> list[str]:
        t = self._table
        return [
            f"CREATE TABLE IF NOT EXISTS {t} ("
            "platform_key TEXT NOT NULL, username TEXT NOT NULL, metadata TEXT, "
            "version INTEGER NOT NULL, created_at TEXT, updated_at TEXT, "
            "PRIMARY KEY (platform_key, username))",
            f"CREATE TABLE IF NOT EXISTS {t}_schema (version INTEGER NOT NULL)",
            f"INSERT INTO {t}_schema (version) SELECT {SCHEMA_VERSION} "
            f"WHERE NOT EXISTS (SELECT 1 FROM {t}_schema)",
        ]

    def _merge(self, old: str | None, delete: str, set: str, max_bytes: int | None) -> str:
        # Runs inside SQLite, on the connection's thread, while the statement holds the lock.
        document: dict[str, Any] = json.loads(old) if old else {}
        for key in json.loads(delete):
            document.pop(key, None)
        document.update(json.loads(set))
        text = dump(document)
        if max_bytes is not None and len(text.encode()) > max_bytes:
            self._too_large = max_bytes
            raise _TooLarge
        return text

    async def open(self, create_tables: bool) -> None:
        await self._database.connect()
        connection = self._database.connection()
        await connection.__aenter__()
        raw = connection.raw_connection
        _stop_at_exit(raw)
        self._raw = raw
        try:
            # Through `_run`: another process holding the lock here is a 503, as on any write.
            await self._run(f"PRAGMA busy_timeout = {self._busy_timeout_ms}", ())
            if self._database.url.database not in ("", ":memory:"):
                await self._run("PRAGMA journal_mode = WAL", ())
            await self._run(f"PRAGMA synchronous = {self._synchronous}", ())
            await raw.create_function("spm_patch", 4, self._merge, deterministic=True)
            if create_tables:
                for statement in self.schema():
                    await self._run(statement, ())
        except BaseException:
            # The next request opens anew: this connection and its thread must not leak, even
            # when the open was cancelled.  aiosqlite's close() stops the thread however it
            # ends; `stop()` is the synchronous fallback for when close() was never reached.
            self._raw = None
            try:
                with contextlib.suppress(Exception):  # the original error is the one to report
                    await connection.__aexit__(None, None, None)
            finally:
                if getattr(raw, "_running", False):
                    raw.stop()
            raise
        self._connection = connection

    async def close(self) -> None:
        if self._connection is not None:
            connection, self._connection, self._raw = self._connection, None, None
            await connection.__aexit__(None, None, None)
            await self._database.disconnect()

    async def _run(self, sql: str, params: Sequence[Any]) -> list[Any]:
        try:
            rows: list[Any] = list(await self._raw.execute_fetchall(sql, params))
            return rows
        except sqlite3.OperationalError as exc:
            message = str(exc)
            if self._too_large is not None and "user-defined function" in message:
                limit, self._too_large = self._too_large, None
                raise DocumentTooLarge(limit) from None
            if "locked" in message or "busy" in message:
                raise StoreUnavailable(message) from exc
            raise

    @staticmethod
    def _record(row: Sequence[Any]) -> Record:
        metadata, version, created, updated = row
        if metadata is None:
            return Record("{}", version, None, None)
        return Record(metadata, version, _parse_ts(created), _parse_ts(updated))

    async def get(self, platform_key: str, username: str) -> Record:
        rows = await self._run(self._get_sql, (platform_key, username))
        return self._record(rows[0]) if rows else EMPTY

    async def _write(
        self,
        params: Sequence[Any],
        new_insert: str,
        new_update: str,
        expect: Expect | None,
    ) -> Record:
        cond = _condition(expect, "version", "metadata")
        if _upserts(expect):
            sql = self._upsert_head.format(new_insert=new_insert, new_update=new_update)
            if expect is not None:
                sql += f"WHERE {cond} "
        else:
            sql = self._update_head.format(new_update=new_update) + f"AND {cond} "
        rows = await self._run(sql + self._returning, params)
        if not rows:
            raise PreconditionFailed()
        return self._record(rows[0])

    async def patch(
        self,
        platform_key: str,
        username: str,
        set: Mapping[str, Any],
        delete: Sequence[str],
        expect: Expect | None,
        max_bytes: int | None,
    ) -> Record:
        params = (
            platform_key,
            username,
            _ts(utcnow()),
            json.dumps(list(delete)),
            json.dumps(set),
            max_bytes,
        )
        return await self._write(
            params,
            "spm_patch(NULL, ?4, ?5, ?6)",
            "spm_patch(metadata, ?4, ?5, ?6)",
            expect,
        )

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
        params = (platform_key, username, _ts(utcnow()), document)
        return await self._write(params, "?4", "?4", expect)

    async def delete(self, platform_key: str, username: str, expect: Expect | None) -> None:
        cond = "metadata IS NOT NULL" if expect is None else _condition(expect, "version", "metadata")
        rows = await self._run(self._delete_sql.format(cond=cond), (platform_key, username))
        if rows or expect is None:
            return
        if expect.versions is not None and 0 in expect.versions:
            if not await self._run(self._exists_sql, (platform_key, username)):
                return
        raise PreconditionFailed()


def _merged(old: str | None, delete: Sequence[str], set: Mapping[str, Any]) -> str:
    """The document a PATCH leaves: `delete` keys removed, then `set` keys set, as `dump` text."""
    document: dict[str, Any] = json.loads(old) if old else {}
    for key in delete:
        document.pop(key, None)
    document.update(set)
    return dump(document)


class PostgresEngine:
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

    def __init__(self, database: Database, table: str, timeout: float) -> None:
        self._database = database
        self._table = table
        self._timeout = timeout
        t = table
        columns = "metadata::text, version, created_at, updated_at"
        returning = f"RETURNING {columns}"
        self._get_sql = f"SELECT {columns} FROM {t} WHERE platform_key = $1 AND username = $2"
        self._insert_sql = (
            f"INSERT INTO {t} (platform_key, username, metadata, version, created_at, updated_at) "
            "VALUES ($1, $2, $4::json, 1, $3, $3) "
            f"ON CONFLICT (platform_key, username) DO NOTHING {returning}"
        )
        self._swap_sql = (
            f"UPDATE {t} SET metadata = $4::json, version = version + 1, "
            "created_at = COALESCE(created_at, $3), updated_at = $3 "
            f"WHERE platform_key = $1 AND username = $2 AND version = $5 {returning}"
        )
        self._upsert_head = (
            f"INSERT INTO {t} AS r (platform_key, username, metadata, version, created_at, updated_at) "
            "VALUES ($1, $2, $4::json, 1, $3, $3) "
            "ON CONFLICT (platform_key, username) DO UPDATE SET "
            "metadata = EXCLUDED.metadata, version = r.version + 1, "
            "created_at = COALESCE(r.created_at, $3), updated_at = $3 "
        )
        self._update_head = (
            f"UPDATE {t} AS r SET metadata = $4::json, version = r.version + 1, "
            "created_at = COALESCE(r.created_at, $3), updated_at = $3 "
            "WHERE r.platform_key = $1 AND r.username = $2 "
        )
        self._returning = returning
        self._delete_sql = (
            f"UPDATE {t} AS r SET metadata = NULL, created_at = NULL, updated_at = NULL, "
            "version = r.version + (CASE WHEN r.metadata IS NULL THEN 0 ELSE 1 END) "
            "WHERE r.platform_key = $1 AND r.username = $2 AND {cond} RETURNING r.version"
        )
        self._exists_sql = f"SELECT 1 FROM {t} WHERE platform_key = $1 AND username = $2"
        self._placeholder_sql = (
            f"INSERT INTO {t} (platform_key, username, metadata, version) "
            "VALUES ($1, $2, NULL, 0) ON CONFLICT (platform_key, username) DO NOTHING"
        )
        self._lock_sql = self._get_sql + " FOR UPDATE"

    def schema(self) -> list[str]:
        # The primary key's B-tree index serves every statement: O(log n) per (platform, user).
        t = self._table
        return [
            f"CREATE TABLE IF NOT EXISTS {t} ("
            "platform_key TEXT NOT NULL, username TEXT NOT NULL, metadata JSON, "
            "version BIGINT NOT NULL, created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ, "
            "PRIMARY KEY (platform_key, username))",
            f"CREATE TABLE IF NOT EXISTS {t}_schema (version INTEGER NOT NULL)",
            f"INSERT INTO {t}_schema (version) SELECT {SCHEMA_VERSION} "
            f"WHERE NOT EXISTS (SELECT 1 FROM {t}_schema)",
        ]

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[Any]:
        """A pooled asyncpg connection, with failures and the time bound as `StoreUnavailable`."""
        import asyncpg

        try:
            async with asyncio.timeout(self._timeout):
                if not self._database.is_connected:
                    await self._database.connect()
                async with self._database.connection() as connection:
                    yield connection.raw_connection
        except TimeoutError:
            raise StoreUnavailable(f"PostgreSQL did not answer within {self._timeout} s") from None
        except (
            OSError,  # refused, reset, unreachable
            asyncpg.InterfaceError,  # the connection was closed, the pool is closing
            asyncpg.PostgresConnectionError,  # SQLSTATE class 08
            asyncpg.exceptions.OperatorInterventionError,  # 57: shutdown, cannot connect now
            asyncpg.exceptions.InsufficientResourcesError,  # 53: too many connections
        ) as exc:
            raise StoreUnavailable(f"PostgreSQL unavailable: {exc}") from exc

    async def open(self, create_tables: bool) -> None:
        t = self._table
        async with self._session() as raw:
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
        await self._database.disconnect()

    async def _fetch(self, sql: str, *params: Any) -> list[Any]:
        async with self._session() as raw:
            rows: list[Any] = await raw.fetch(sql, *params)
            return rows

    @staticmethod
    def _record(row: Sequence[Any]) -> Record:
        metadata, version, created, updated = row
        if metadata is None:
            return Record("{}", version, None, None)
        return Record(metadata, version, created, updated)

    async def get(self, platform_key: str, username: str) -> Record:
        rows = await self._fetch(self._get_sql, platform_key, username)
        return self._record(rows[0]) if rows else EMPTY

    async def patch(
        self,
        platform_key: str,
        username: str,
        set: Mapping[str, Any],
        delete: Sequence[str],
        expect: Expect | None,
        max_bytes: int | None,
    ) -> Record:
        async with self._session() as raw:
            row = await raw.fetchrow(self._get_sql, platform_key, username)
            written = await self._swap(raw, row, platform_key, username, set, delete, expect, max_bytes)
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
        cond = _condition(expect, "r.version", "r.metadata")
        if _upserts(expect):
            sql = self._upsert_head + ("" if expect is None else f"WHERE {cond} ")
        else:
            sql = self._update_head + f"AND {cond} "
        params = (platform_key, username, utcnow(), document)
        rows = await self._fetch(sql + self._returning, *params)
        if not rows:
            raise PreconditionFailed()
        return self._record(rows[0])

    async def delete(self, platform_key: str, username: str, expect: Expect | None) -> None:
        cond = (
            "r.metadata IS NOT NULL"
            if expect is None
            else _condition(expect, "r.version", "r.metadata")
        )
        rows = await self._fetch(self._delete_sql.format(cond=cond), platform_key, username)
        if rows or expect is None:
            return
        if expect.versions is not None and 0 in expect.versions:
            if not await self._fetch(self._exists_sql, platform_key, username):
                return
        raise PreconditionFailed()
