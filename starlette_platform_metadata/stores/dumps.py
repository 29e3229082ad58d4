"""The optional store methods behind a full-fidelity dump and load (`Dumper`), and the rows
they speak.

A dump is everything a store keeps, as it is: every record (tombstones, the policies and the
records of users who are no longer members included), every kept revision with its `seq`, and
each platform's change clock; a host may add tables of its own (`Table`), dumped from the same
snapshot and loaded in the same transaction.  A load writes those rows back exactly: no new
revision, no version moved.  The file format around these rows is `starlette_platform_metadata.
dumps`; a store only reads and writes rows.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable

from ..exceptions import PlatformMetadataError
from .base import Record, Revision

__all__ = [
    "DumpError",
    "DumpRow",
    "Dumper",
    "NotEmpty",
    "StoredClock",
    "StoredRecord",
    "StoredRevision",
    "Table",
    "TableRow",
    "as_utc",
]


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A (platform, user)'s record as stored: a tombstone keeps its version."""

    platform_key: str
    username: str
    record: Record


@dataclass(frozen=True, slots=True)
class StoredRevision:
    """A kept revision; its `seq` is set."""

    platform_key: str
    username: str
    revision: Revision


@dataclass(frozen=True, slots=True)
class StoredClock:
    """A platform's change clock: its newest `seq`, and retention's horizon."""

    platform_key: str
    seq: int
    horizon: int


@dataclass(frozen=True, slots=True)
class Table:
    """A host's own table, dumped and loaded with the store's rows.

    Attributes:
        name: the table (a plain SQL identifier).
        columns: every column a row carries, in order.
        key: the columns that order the rows (a primary or unique key), so that two dumps of
            the same data are the same bytes on either database.
        timestamps: columns holding times (read as aware UTC datetimes; SQLite's text without
            an offset is UTC).
        booleans: columns holding booleans (SQLite's 0 and 1 read as `False` and `True`).
        identity: a generated integer id column: after a load, PostgreSQL's sequence of it
            moves past the largest id loaded.

    Tables load in the order given (parents before the tables that reference them) and, with
    `replace`, are emptied in the reverse order.
    """

    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    timestamps: frozenset[str] = frozenset()
    booleans: frozenset[str] = frozenset()
    identity: str | None = None


@dataclass(frozen=True, slots=True)
class TableRow:
    """A row of a host's `Table`: its values in the table's column order."""

    table: str
    values: tuple[Any, ...]


#: What a dump holds, in the order a store yields it: records, revisions and clocks (each by
#: platform and username, code-point order), then each table's rows by its key.
DumpRow = StoredRecord | StoredRevision | StoredClock | TableRow


class DumpError(PlatformMetadataError):
    """A dump that cannot be loaded (malformed, cut short, another format, rows the database
    refuses); the load changed nothing.  The message names the line where it can."""


class NotEmpty(PlatformMetadataError):
    """A load into a store (or host table) that already holds data, without `replace`;
    nothing was changed."""


def as_utc(value: datetime) -> datetime:
    """`value` as an aware UTC datetime (a naive one is taken as UTC, as SQLite keeps it)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


@runtime_checkable
class Dumper(Protocol):
    """The optional store methods that copy everything it keeps out and back in, exactly.

    Without them, `dumps.dump` and `dumps.load` refuse the store (`TypeError`).
    """

    def dump(self, tables: Sequence[Table] = ()) -> AsyncIterator[DumpRow]:
        """Every row the store keeps, and those of `tables`, from one consistent snapshot,
        streamed (memory bounded), in `DumpRow`'s order."""
        ...

    async def load(
        self,
        rows: AsyncIterable[DumpRow],
        *,
        replace: bool = False,
        tables: Sequence[Table] = (),
    ) -> int:
        """Write `rows` back exactly as they were dumped, all in one atomic step; the number
        of rows written.

        Raises:
            NotEmpty: the store or one of `tables` holds data and `replace` is false.
            Exception: whatever `rows` raises (a malformed file) propagates, and nothing at
                all is stored.
        """
        ...
