"""PostgreSQL: a dump from one REPEATABLE READ snapshot, a load in one transaction.

Each runs on an asyncpg connection of its own, outside the store's pool and its per-call
deadline (a dump of a large database takes as long as it takes): the dump streams through a
server-side cursor, the load writes batches with `executemany`.  Text keys are ordered
`COLLATE "C"` (code-point order, as SQLite and Python order them), whatever the database's
collation, so that a dump is the same bytes on either database.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from typing import Any

from ...jsontext import keys_json
from ..base import Record, Revision, StoreUnavailable
from ..dumps import (
    DumpError,
    DumpRow,
    NotEmpty,
    StoredClock,
    StoredRecord,
    StoredRevision,
    Table,
    TableRow,
)
from .schema import check_identifier

__all__ = ["BATCH", "dump", "load"]

#: Rows a cursor fetches, or a load writes, at a time: memory stays bounded by this.
BATCH = 500
_C = 'COLLATE "C"'


async def _connect(dsn: str, timeout: float) -> Any:
    import asyncpg

    try:
        return await asyncpg.connect(dsn, timeout=timeout)
    except (OSError, TimeoutError, asyncpg.PostgresConnectionError) as exc:
        raise StoreUnavailable(f"PostgreSQL unavailable: {exc}") from exc


async def _text_columns(connection: Any, table: str) -> set[str]:
    rows = await connection.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_name = $1 "
        "AND table_schema = current_schema() AND data_type IN ('text', 'character varying')",
        table,
    )
    return {row[0] for row in rows}


def _record(row: Any) -> DumpRow:
    platform_key, username, metadata, version, created, updated = row
    if metadata is None:
        return StoredRecord(platform_key, username, Record("{}", version, None, None))
    return StoredRecord(platform_key, username, Record(metadata, version, created, updated))


def _revision(row: Any) -> DumpRow:
    platform_key, username, version, operation, actor, at, metadata, changed, created, seq = row
    revision = Revision(
        version, operation, actor, at, metadata, tuple(json.loads(changed)), created, seq
    )
    return StoredRevision(platform_key, username, revision)


def _clock(row: Any) -> DumpRow:
    return StoredClock(row[0], row[1], row[2])


def _table_row(spec: Table) -> Callable[[Any], DumpRow]:
    def make(row: Any) -> DumpRow:
        return TableRow(spec.name, tuple(row))

    return make


async def dump(
    dsn: str, timeout: float, table: str, tables: Sequence[Table]
) -> AsyncIterator[DumpRow]:
    """Every row, from one read-only REPEATABLE READ transaction (one snapshot)."""
    t, h = table, f"{table}_history"
    selects: list[tuple[str, Callable[[Any], DumpRow]]] = [
        (
            "SELECT platform_key, username, metadata::text, version, created_at, updated_at "
            f"FROM {t} WHERE version > 0 ORDER BY platform_key {_C}, username {_C}",
            _record,
        ),
        (
            "SELECT platform_key, username, version, operation, actor, at, metadata::text, "
            f"changed_keys, created_at, seq FROM {h} "
            f"ORDER BY platform_key {_C}, username {_C}, version",
            _revision,
        ),
        (f"SELECT platform_key, seq, horizon FROM {t}_clock ORDER BY platform_key {_C}", _clock),
    ]
    connection = await _connect(dsn, timeout)
    try:
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            for spec in tables:
                text = await _text_columns(connection, check_identifier(spec.name))
                order = ", ".join(f"{c} {_C}" if c in text else c for c in spec.key)
                selects.append(
                    (
                        f"SELECT {', '.join(spec.columns)} FROM {spec.name} ORDER BY {order}",
                        _table_row(spec),
                    )
                )
            for sql, make in selects:
                async for row in connection.cursor(sql, prefetch=BATCH):
                    yield make(row)
    finally:
        await connection.close()


async def load(
    dsn: str,
    timeout: float,
    table: str,
    rows: AsyncIterable[DumpRow],
    *,
    replace: bool,
    tables: Sequence[Table],
) -> int:
    """`rows` written in one transaction, or nothing at all.  The tables are locked against
    writers (EXCLUSIVE: reads go on) for the whole load."""
    t, h = table, f"{table}_history"
    own = [t, h, f"{t}_clock"]
    specs = {spec.name: spec for spec in tables}
    names = [check_identifier(spec.name) for spec in tables]
    inserts = {
        StoredRecord: f"INSERT INTO {t} (platform_key, username, metadata, version, created_at, "
        "updated_at) VALUES ($1, $2, $3::json, $4, $5, $6)",
        StoredRevision: f"INSERT INTO {h} (platform_key, username, version, operation, actor, "
        "at, metadata, changed_keys, created_at, seq) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7::json, $8, $9, $10)",
        StoredClock: f"INSERT INTO {t}_clock (platform_key, seq, horizon) VALUES ($1, $2, $3)",
    }
    connection = await _connect(dsn, timeout)
    count = 0
    try:
        async with connection.transaction():
            await connection.execute(f"LOCK TABLE {', '.join(own + names)} IN EXCLUSIVE MODE")
            full = [
                name
                for name in own + names
                if await connection.fetchval(
                    f"SELECT EXISTS (SELECT 1 FROM {name}"
                    f"{' WHERE version > 0' if name == t else ''})"
                )
            ]
            if full and not replace:
                raise NotEmpty(f"The database already holds data (tables {', '.join(full)})")
            for name in [*reversed(names), *own]:
                await connection.execute(f"DELETE FROM {name}")
            batch: list[DumpRow] = []
            key: Any = None
            async for row in rows:
                row_key = row.table if isinstance(row, TableRow) else type(row)
                if batch and (row_key != key or len(batch) >= BATCH):
                    count += await _write(connection, key, batch, inserts, specs)
                    batch = []
                key = row_key
                batch.append(row)
            if batch:
                count += await _write(connection, key, batch, inserts, specs)
            for spec in tables:
                if spec.identity is not None:
                    await connection.execute(
                        f"SELECT setval(pg_get_serial_sequence('{spec.name}', "
                        f"'{check_identifier(spec.identity)}'), max({spec.identity})) "
                        f"FROM {spec.name} HAVING max({spec.identity}) IS NOT NULL"
                    )
    finally:
        await connection.close()
    return count


async def _write(
    connection: Any,
    key: Any,
    batch: Sequence[DumpRow],
    inserts: dict[Any, str],
    specs: dict[str, Table],
) -> int:
    import asyncpg

    try:
        return await _insert(connection, key, batch, inserts, specs)
    except (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError) as exc:
        raise DumpError(f"The database refuses a row of the dump (one twice, or without its parent): {exc}") from None


async def _insert(
    connection: Any,
    key: Any,
    batch: Sequence[DumpRow],
    inserts: dict[Any, str],
    specs: dict[str, Table],
) -> int:
    if isinstance(key, str):
        spec = specs.get(key)
        if spec is None:
            raise DumpError(f"No table {key!r} is being loaded")
        marks = ", ".join(f"${i}" for i in range(1, len(spec.columns) + 1))
        sql = f"INSERT INTO {spec.name} ({', '.join(spec.columns)}) VALUES ({marks})"
        await connection.executemany(sql, [r.values for r in batch])  # type: ignore[union-attr]
        return len(batch)
    await connection.executemany(inserts[key], [_values(row) for row in batch])
    return len(batch)


def _values(row: DumpRow) -> tuple[Any, ...]:
    if isinstance(row, StoredRecord):
        r = row.record
        return (
            row.platform_key,
            row.username,
            r.metadata_json if r.exists else None,
            r.version,
            r.created_at,
            r.updated_at,
        )
    if isinstance(row, StoredRevision):
        v = row.revision
        return (
            row.platform_key,
            row.username,
            v.version,
            v.operation,
            v.actor,
            v.at,
            v.metadata_json,
            keys_json(v.changed_keys),
            v.created_at,
            v.seq,
        )
    assert isinstance(row, StoredClock)
    return (row.platform_key, row.seq, row.horizon)

