"""SQLite: a dump from one read snapshot, a load in one write transaction.

Each runs on a connection of its own, on a thread of its own: a dump's read transaction may
last minutes, and must neither hold up the store's reads on the event loop nor its writer.
In WAL mode a reader never blocks writers (and the store's checkpoints are PASSIVE, so they
never wait for it either); the WAL only grows until the reader is done.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
import sqlite3
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from ...jsontext import keys_json
from ..base import Record, Revision
from ..dumps import (
    DumpError,
    DumpRow,
    NotEmpty,
    StoredClock,
    StoredRecord,
    StoredRevision,
    Table,
    TableRow,
    as_utc,
)
from .schema import check_identifier
from .sqlite_connection import unavailable

__all__ = ["BATCH", "dump", "load"]

T = TypeVar("T")

#: Rows fetched or written per trip to the thread: memory stays bounded by this.
BATCH = 500


def _iso(value: datetime | None) -> str | None:
    """The store's own text of a time (as its engine writes it)."""
    return None if value is None else as_utc(value).isoformat().replace("+00:00", "Z")


def _host_time(value: datetime) -> str:
    """A host table's time as SQLite's `CURRENT_TIMESTAMP` writes it: UTC, no offset."""
    return as_utc(value).replace(tzinfo=None).isoformat(sep=" ")


def _time(value: str | None) -> datetime | None:
    return None if value is None else as_utc(datetime.fromisoformat(value))


class _Thread:
    """One connection to the file, used only on one thread of its own."""

    def __init__(self, path: str, busy_timeout: float) -> None:
        if path in ("", ":memory:"):
            raise ValueError(
                "An in-memory SQLite database cannot be dumped, loaded or backed up: "
                "only the store's own connection sees it"
            )
        self._path = path
        self._timeout = busy_timeout
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="spm-dump")
        self._connection: sqlite3.Connection | None = None

    def _open(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self._path, timeout=self._timeout, isolation_level=None, check_same_thread=False
        )
        connection.execute("PRAGMA foreign_keys = ON")
        self._connection = connection
        return connection

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def mapped() -> T:
            connection = self._connection or self._open()
            try:
                return work(connection)
            except sqlite3.IntegrityError as exc:
                raise DumpError(f"The database refuses a row of the dump (one twice, or without its parent): {exc}") from None
            except sqlite3.OperationalError as exc:
                raise unavailable(exc) or exc from None

        return await asyncio.get_running_loop().run_in_executor(self._executor, mapped)

    async def close(self) -> None:
        def close() -> None:
            if self._connection is not None:
                if self._connection.in_transaction:
                    self._connection.execute("ROLLBACK")
                self._connection.close()

        try:
            await asyncio.shield(asyncio.get_running_loop().run_in_executor(self._executor, close))
        finally:
            self._executor.shutdown(wait=False)


def _selects(table: str, tables: Sequence[Table]) -> list[tuple[str, Callable[[Any], DumpRow]]]:
    """The dump's statements, in `DumpRow`'s order (SQLite's text order is code-point order),
    each with what makes a row of it."""
    t, h, ids = table, f"{table}_history", f"{table}_user_ids"
    found: list[tuple[str, Callable[[Any], DumpRow]]] = [
        (
            f"SELECT platform_key, username, metadata, version, created_at, updated_at "
            f"FROM {t} WHERE version > 0 ORDER BY platform_key, username",
            _record,
        ),
        (
            "SELECT h.platform_key, u.username, h.version, h.operation, h.actor, h.at, "
            "h.metadata, h.changed_keys, h.created_at, h.seq "
            f"FROM {h} AS h JOIN {ids} AS u ON u.id = h.user_id "
            "ORDER BY h.platform_key, u.username, h.version",
            _revision,
        ),
        (f"SELECT platform_key, seq, horizon FROM {t}_clock ORDER BY platform_key", _clock),
    ]
    for spec in tables:
        found.append(
            (
                f"SELECT {', '.join(spec.columns)} FROM {check_identifier(spec.name)} "
                f"ORDER BY {', '.join(spec.key)}",
                _table_row(spec),
            )
        )
    return found


def _record(row: Any) -> DumpRow:
    platform_key, username, metadata, version, created, updated = row
    if metadata is None:
        return StoredRecord(platform_key, username, Record("{}", version, None, None))
    return StoredRecord(
        platform_key, username, Record(metadata, version, _time(created), _time(updated))
    )


def _revision(row: Any) -> DumpRow:
    platform_key, username, version, operation, actor, at, metadata, changed, created, seq = row
    at_time = _time(at)
    assert at_time is not None
    revision = Revision(
        version, operation, actor, at_time, metadata, tuple(json.loads(changed)), _time(created), seq
    )
    return StoredRevision(platform_key, username, revision)


def _clock(row: Any) -> DumpRow:
    return StoredClock(row[0], row[1], row[2])


def _table_row(spec: Table) -> Callable[[Any], DumpRow]:
    def make(row: Any) -> DumpRow:
        values = []
        for column, value in zip(spec.columns, row, strict=True):
            if value is not None and column in spec.timestamps:
                value = _time(value)
            elif value is not None and column in spec.booleans:
                value = bool(value)
            values.append(value)
        return TableRow(spec.name, tuple(values))

    return make


def _execute(sql: str, connection: sqlite3.Connection) -> sqlite3.Cursor:
    return connection.execute(sql)


def _fetch(cursor: sqlite3.Cursor, connection: sqlite3.Connection) -> list[Any]:
    return cursor.fetchmany(BATCH)


async def dump(
    path: str, busy_timeout: float, table: str, tables: Sequence[Table]
) -> AsyncIterator[DumpRow]:
    """Every row, from one read transaction: what was committed when its first read ran."""
    thread = _Thread(path, busy_timeout)
    try:
        await thread.run(functools.partial(_execute, "BEGIN"))
        for sql, make in _selects(table, tables):
            cursor = await thread.run(functools.partial(_execute, sql))
            while rows := await thread.run(functools.partial(_fetch, cursor)):
                for row in rows:
                    yield make(row)
    finally:
        await thread.close()


async def load(
    path: str,
    busy_timeout: float,
    table: str,
    rows: AsyncIterable[DumpRow],
    *,
    replace: bool,
    tables: Sequence[Table],
) -> int:
    """`rows` written in one `BEGIN IMMEDIATE` transaction, or nothing at all."""
    writer = _Loader(table, tables)
    thread = _Thread(path, busy_timeout)
    count = 0
    try:
        await thread.run(functools.partial(_execute, "BEGIN IMMEDIATE"))
        await thread.run(functools.partial(writer.prepare, replace=replace))
        batch: list[DumpRow] = []
        async for row in rows:
            batch.append(row)
            if len(batch) >= BATCH:
                count += await thread.run(functools.partial(writer.write, batch=batch))
                batch = []
        count += await thread.run(functools.partial(writer.write, batch=batch))
        await thread.run(functools.partial(_execute, "COMMIT"))
    finally:
        await thread.close()  # rolls back unless committed
    return count


class _Loader:
    """The statements of a load, run on the load's thread."""

    def __init__(self, table: str, tables: Sequence[Table]) -> None:
        t, h, ids = table, f"{table}_history", f"{table}_user_ids"
        self._tables = {spec.name: spec for spec in tables}
        self._order = [check_identifier(spec.name) for spec in tables]
        self._own = [t, h, f"{t}_clock"]
        self._record_sql = (
            f"INSERT INTO {t} (platform_key, username, metadata, version, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?)"
        )
        # User ids are never renumbered (sqlite.py remembers them): a replace keeps
        # `<table>_user_ids` and only adds to it.
        self._user_sql = f"INSERT OR IGNORE INTO {ids} (platform_key, username) VALUES (?1, ?2)"
        self._revision_sql = (
            f"INSERT INTO {h} (user_id, platform_key, version, operation, actor, at, metadata, "
            "changed_keys, created_at, seq) VALUES ((SELECT id FROM "
            f"{ids} WHERE platform_key = ?1 AND username = ?2), ?1, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        )
        self._clock_sql = f"INSERT INTO {t}_clock (platform_key, seq, horizon) VALUES (?, ?, ?)"

    def prepare(self, connection: sqlite3.Connection, replace: bool) -> None:
        """Inside the transaction: refuse a store that holds data, or empty it (`replace`)."""
        checks = [(self._own[0], " WHERE version > 0")] + [
            (name, "") for name in self._own[1:] + self._order
        ]
        full = [
            name
            for name, where in checks
            if connection.execute(f"SELECT 1 FROM {name}{where} LIMIT 1").fetchone()
        ]
        if full and not replace:
            raise NotEmpty(f"The database already holds data (tables {', '.join(full)})")
        for name in [*reversed(self._order), *self._own]:
            connection.execute(f"DELETE FROM {name}")

    def write(self, connection: sqlite3.Connection, batch: Sequence[DumpRow]) -> int:
        """One batch, each kind of row in one `executemany` (kinds keep their order)."""
        start = 0
        for end in range(1, len(batch) + 1):
            if end == len(batch) or type(batch[end]) is not type(batch[start]) or (
                isinstance(batch[end], TableRow)
                and batch[end].table != batch[start].table  # type: ignore[union-attr]
            ):
                self._write_run(connection, batch[start:end])
                start = end
        return len(batch)

    def _write_run(self, connection: sqlite3.Connection, run: Sequence[DumpRow]) -> None:
        first = run[0]
        if isinstance(first, StoredRecord):
            connection.executemany(self._record_sql, [_record_values(r) for r in run])  # type: ignore[arg-type]
        elif isinstance(first, StoredRevision):
            keys = [(r.platform_key, r.username) for r in run]  # type: ignore[union-attr]
            connection.executemany(self._user_sql, keys)
            connection.executemany(self._revision_sql, [_revision_values(r) for r in run])  # type: ignore[arg-type]
        elif isinstance(first, StoredClock):
            connection.executemany(
                self._clock_sql, [(r.platform_key, r.seq, r.horizon) for r in run]  # type: ignore[union-attr]
            )
        else:
            spec = self._tables.get(first.table)
            if spec is None:
                raise DumpError(f"No table {first.table!r} is being loaded")
            marks = ", ".join("?" for _ in spec.columns)
            connection.executemany(
                f"INSERT INTO {spec.name} ({', '.join(spec.columns)}) VALUES ({marks})",
                [_host_values(spec, r.values) for r in run],  # type: ignore[union-attr]
            )


def _record_values(row: StoredRecord) -> tuple[Any, ...]:
    record = row.record
    document = record.metadata_json if record.exists else None
    return (
        row.platform_key,
        row.username,
        document,
        record.version,
        _iso(record.created_at),
        _iso(record.updated_at),
    )


def _revision_values(row: StoredRevision) -> tuple[Any, ...]:
    r = row.revision
    return (
        row.platform_key,
        row.username,
        r.version,
        r.operation,
        r.actor,
        _iso(r.at),
        r.metadata_json,
        keys_json(r.changed_keys),
        _iso(r.created_at),
        r.seq,
    )


def _host_values(spec: Table, values: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(
        _host_time(value) if isinstance(value, datetime) else value for value in values
    )
