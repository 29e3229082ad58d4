"""A full-fidelity dump of a store, and its load: NDJSON, one row a line, streamed.

    async with DatabaseStore("sqlite:///metadata.db") as store:
        with open("metadata.dump", "wb") as out:
            await dumps.dump(store, out)
    async with DatabaseStore("postgresql://...") as target:
        with open("metadata.dump", "rb") as source:
            await dumps.load(target, source)        # refuses a store that holds data

The format (version 1, docs/operations.md): a header line, one line per row, a last line
counting them, so that a file cut short anywhere is refused rather than half loaded:

    {"dump":"starlette-platform-metadata","format":1}
    {"record":{"platform_key":..,"username":..,"version":..,"created_at":..,"updated_at":..,"metadata":"<text>"}}
    {"revision":{"platform_key":..,"username":..,"version":..,"seq":..,"operation":..,"actor":..,"at":..,"created_at":..,"changed_keys":[..],"metadata":"<text>"}}
    {"clock":{"platform_key":..,"seq":..,"horizon":..}}
    {"row":{"table":"users","values":{"id":1,"username":"john_doe","created_at":..}}}
    {"end":{"rows":N}}

Documents are their exact stored text, as a JSON string; times are ISO 8601 in UTC (`Z`);
rows come in code-point order of their keys, so the same data dumps to the same bytes from
any store.  Reading is one line at a time, writing one row at a time: memory stays bounded
whatever the size.  The calls do blocking file I/O: run them from a command or a script,
not from a request handler.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime
from typing import IO, Any

from .stores.base import Record, Revision
from .stores.dumps import (
    Dumper,
    DumpError,
    DumpRow,
    StoredClock,
    StoredRecord,
    StoredRevision,
    Table,
    TableRow,
    as_utc,
)

__all__ = ["FORMAT", "MAGIC", "DumpError", "dump", "load"]

MAGIC = "starlette-platform-metadata"
#: The format version written; a load refuses any other.
FORMAT = 1


def _store(store: object) -> Dumper:
    if not isinstance(store, Dumper):
        raise TypeError(f"{type(store).__qualname__} has no dump() and load() (Dumper)")
    return store


def _text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _time(value: datetime | None) -> str | None:
    return None if value is None else as_utc(value).isoformat().replace("+00:00", "Z")


def _line(row: DumpRow, specs: dict[str, Table]) -> str:
    if isinstance(row, StoredRecord):
        r = row.record
        return _text(
            {
                "record": {
                    "platform_key": row.platform_key,
                    "username": row.username,
                    "version": r.version,
                    "created_at": _time(r.created_at),
                    "updated_at": _time(r.updated_at),
                    "metadata": r.metadata_json if r.exists else None,
                }
            }
        )
    if isinstance(row, StoredRevision):
        v = row.revision
        return _text(
            {
                "revision": {
                    "platform_key": row.platform_key,
                    "username": row.username,
                    "version": v.version,
                    "seq": v.seq,
                    "operation": v.operation,
                    "actor": v.actor,
                    "at": _time(v.at),
                    "created_at": _time(v.created_at),
                    "changed_keys": list(v.changed_keys),
                    "metadata": v.metadata_json,
                }
            }
        )
    if isinstance(row, StoredClock):
        return _text(
            {"clock": {"platform_key": row.platform_key, "seq": row.seq, "horizon": row.horizon}}
        )
    spec = specs[row.table]
    values = {
        column: _time(value) if isinstance(value, datetime) else value
        for column, value in zip(spec.columns, row.values, strict=True)
    }
    return _text({"row": {"table": row.table, "values": values}})


async def dump(store: object, out: IO[bytes], *, tables: Sequence[Table] = ()) -> int:
    """Write everything `store` keeps (a `Dumper`), and a host's `tables`, to `out`, from one
    snapshot; the number of rows written."""
    specs = {spec.name: spec for spec in tables}
    out.write(_text({"dump": MAGIC, "format": FORMAT}).encode() + b"\n")
    count = 0
    rows = _store(store).dump(tables)
    try:
        async for row in rows:
            out.write(_line(row, specs).encode() + b"\n")
            count += 1
    finally:
        # Closed at once when writing fails: the store's snapshot (a transaction) ends too.
        close = getattr(rows, "aclose", None)
        if close is not None:
            await close()
    out.write(_text({"end": {"rows": count}}).encode() + b"\n")
    return count


async def load(
    store: object,
    source: Iterable[bytes],
    *,
    replace: bool = False,
    tables: Sequence[Table] = (),
) -> int:
    """Load a dump read from `source` (a file opened `"rb"`, or any iterable of its lines)
    into `store` (a `Dumper`), all or nothing; the number of rows loaded.

    Raises:
        stores.dumps.NotEmpty: `store` (or one of `tables`) holds data and `replace` is
            false; nothing was changed.
        DumpError: the file is malformed, cut short or of another format; nothing was
            changed.
    """
    return await _store(store).load(_rows(source, tables), replace=replace, tables=tables)


async def _rows(source: Iterable[bytes], tables: Sequence[Table]) -> AsyncIterator[DumpRow]:
    specs = {spec.name: spec for spec in tables}
    count = 0
    ended = False
    number = 0
    for number, raw in enumerate(source, start=1):
        if ended:
            raise DumpError(f"line {number}: a line after the last one (`end`)")
        if not raw.endswith(b"\n"):
            raise DumpError(f"line {number}: the file ends in the middle of a line (cut short?)")
        item = _parse(raw, number)
        if number == 1:
            if item.get("dump") != MAGIC or "format" not in item:
                raise DumpError("line 1: not a dump of starlette-platform-metadata")
            if item["format"] != FORMAT:
                raise DumpError(
                    f"line 1: dump format {item['format']!r}; this release reads {FORMAT}"
                )
            continue
        if "end" in item:
            rows = _field(item["end"], "rows", int, number)
            if rows != count:
                raise DumpError(f"line {number}: the dump says {rows} rows; it holds {count}")
            ended = True
            continue
        yield _row(item, specs, number)
        count += 1
    if number == 0:
        raise DumpError("the file is empty")
    if not ended:
        raise DumpError(f"line {number}: the file ends before its last line (cut short?)")


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _parse(raw: bytes, number: int) -> dict[str, Any]:
    try:
        item = json.loads(raw, parse_constant=_reject_constant)
    except ValueError as exc:
        raise DumpError(f"line {number}: not JSON ({exc})") from None
    if not isinstance(item, dict) or (number > 1 and len(item) != 1):
        raise DumpError(f"line {number}: expected an object with one key")
    return item


def _field(item: Any, name: str, kind: type | tuple[type, ...], number: int, *, null: bool = False) -> Any:
    if not isinstance(item, dict) or name not in item:
        raise DumpError(f"line {number}: missing {name!r}")
    value = item[name]
    if value is None and null:
        return None
    # bool is an int to Python, never to a dump.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise DumpError(f"line {number}: {name!r} has the wrong type")
    return value


def _when(item: Any, name: str, number: int, *, null: bool = False) -> datetime | None:
    text = _field(item, name, str, number, null=null)
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise DumpError(f"line {number}: {name!r} is not an ISO 8601 time") from None
    if value.tzinfo is None:
        raise DumpError(f"line {number}: {name!r} has no UTC offset")
    return as_utc(value)


def _document(item: Any, name: str, number: int, *, null: bool = False) -> str | None:
    text: str | None = _field(item, name, str, number, null=null)
    if text is not None:
        try:
            value = json.loads(text, parse_constant=_reject_constant)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise DumpError(f"line {number}: {name!r} is not the text of a JSON object")
    return text


def _row(item: dict[str, Any], specs: dict[str, Table], number: int) -> DumpRow:
    kind, body = next(iter(item.items()))
    if kind == "record":
        version = _field(body, "version", int, number)
        metadata = _document(body, "metadata", number, null=True)
        created = _when(body, "created_at", number, null=True)
        updated = _when(body, "updated_at", number, null=True)
        if version < 1 or (metadata is None) != (created is None) or (created is None) != (
            updated is None
        ):
            raise DumpError(f"line {number}: not a stored record")
        record = Record(metadata or "{}", version, created, updated)
        return StoredRecord(
            _field(body, "platform_key", str, number), _field(body, "username", str, number), record
        )
    if kind == "revision":
        keys = _field(body, "changed_keys", list, number)
        if not all(isinstance(key, str) for key in keys):
            raise DumpError(f"line {number}: 'changed_keys' has the wrong type")
        at = _when(body, "at", number)
        assert at is not None
        revision = Revision(
            _field(body, "version", int, number),
            _field(body, "operation", str, number),
            _field(body, "actor", str, number, null=True),
            at,
            _document(body, "metadata", number) or "{}",
            tuple(keys),
            _when(body, "created_at", number, null=True),
            _field(body, "seq", int, number),
        )
        return StoredRevision(
            _field(body, "platform_key", str, number),
            _field(body, "username", str, number),
            revision,
        )
    if kind == "clock":
        return StoredClock(
            _field(body, "platform_key", str, number),
            _field(body, "seq", int, number),
            _field(body, "horizon", int, number),
        )
    if kind == "row":
        name = _field(body, "table", str, number)
        spec = specs.get(name)
        if spec is None:
            raise DumpError(f"line {number}: a row of table {name!r}, which this load has not")
        values = _field(body, "values", dict, number)
        if list(values) != list(spec.columns):
            raise DumpError(f"line {number}: table {name}'s columns are {', '.join(spec.columns)}")
        if not all(isinstance(v, (str, int, bool, type(None))) for v in values.values()):
            raise DumpError(f"line {number}: a value of table {name} is not a string, number or null")
        return TableRow(
            name,
            tuple(
                _when(values, column, number, null=True) if column in spec.timestamps
                else values[column]
                for column in spec.columns
            ),
        )
    raise DumpError(f"line {number}: unknown row kind {kind!r}")
