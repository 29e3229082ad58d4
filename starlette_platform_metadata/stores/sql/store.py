"""`DatabaseStore`: metadata in SQLite (default) or PostgreSQL, named through `databases`."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..base import Change, Record, Revision
from ..connections import OpensOnFirstUse, SQLConnection, SQLTransaction
from ..dumps import DumpRow, Table
from ...metrics import Metrics
from .dialects import Engine, backend
from .schema import (
    SCHEMA_VERSION,
    check_identifier,
    check_version,
    open_tables,
    schema,
    upgrade_schema,
)

if TYPE_CHECKING:
    # `databases` brings SQLAlchemy (~130 ms and 100 modules to import): it loads when a
    # `DatabaseStore` is built, not when the package is imported (issue 23).
    from databases import Database, DatabaseURL

__all__ = ["DatabaseStore"]


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
        listen_url: PostgreSQL only: where the store's one listening connection for live
            changes (`LISTEN`) goes, when `url` reaches PostgreSQL through a transaction
            pooler such as PgBouncer, which cannot keep a `LISTEN` (docs/postgresql.md).
            Default: the same database as `url`.

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
        listen_url: str | DatabaseURL | None = None,
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
            listen_url=listen_url,
        )
        self.connection: SQLConnection = picked.connection
        self.dialect = self.connection.dialect
        self._engine: Engine = picked.engine(self.table)

    def schema(self) -> list[str]:
        """The DDL statements that create this store's tables."""
        return schema(self.table, self.dialect)

    async def _open(self) -> None:
        await open_tables(
            self.connection,
            self.table,
            SCHEMA_VERSION,
            self.schema() if self._create_tables else None,
            before=self._upgrade,
            missing="create them with the statements of DatabaseStore.schema() "
            "(python -m starlette_platform_metadata schema)",
        )

    async def _upgrade(self, tx: SQLTransaction) -> None:
        await upgrade_schema(tx, self.table, self.dialect)

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

    async def update_guarded(
        self, platform_key: str, username: str, change: Change, guard: tuple[str, Record]
    ) -> Record:
        """`update`, only while the record of `guard[0]` holds `guard[1]` (`GuardedWriter`;
        on PostgreSQL, checked in the write's own statement)."""
        if not self._ready:
            await self.connect()
        return await self._engine.update_guarded(platform_key, username, change, guard)

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

    async def check(self) -> None:
        """Readiness (`HealthChecker`): open if not open yet, then read the schema version
        row, one round trip.  `StoreUnavailable` when the database does not answer within
        `busy_timeout`; `SchemaMismatch` when the tables are another release's or gone."""
        await self.ensure_open()
        await check_version(self.connection, self.table, SCHEMA_VERSION)

    def report_to(self, metrics: Metrics) -> None:
        """SQLite's group commits report their sizes to `metrics` (`metrics.Reporter`)."""
        self._engine.metrics = metrics

    async def poll(self) -> bool:
        """SQLite: `PRAGMA data_version` moved (any connection committed); PostgreSQL: a
        NOTIFY arrived on the store's one listening connection."""
        if not self._ready:
            await self.connect()
        return await self._engine.poll()

    # --- copies: a dump, a load, a backup (stores/dumps.py; docs/operations.md) --------

    def _where(self) -> tuple[str, str]:
        """(`"sqlite"`, the file) or (`"postgresql"`, the DSN) of a connection of our own."""
        if self.dialect == "sqlite":
            from .sqlite_connection import SQLiteConnection

            assert isinstance(self.connection, SQLiteConnection)
            return "sqlite", self.connection.path
        from .postgres_connection import PostgresConnection

        assert isinstance(self.connection, PostgresConnection)
        return "postgresql", self.connection.dsn()

    async def dump(self, tables: Sequence[Table] = ()) -> AsyncIterator[DumpRow]:
        """Every row the store keeps, and those of a host's `tables`, from one snapshot
        (`Dumper`), on a connection of its own: requests go on meanwhile."""
        await self.ensure_open()
        dialect, where = self._where()
        if dialect == "sqlite":
            from . import sqlite_dumps as dumps
        else:
            from . import postgres_dumps as dumps  # type: ignore[no-redef]
        async for row in dumps.dump(where, self.connection.busy_timeout, self.table, tables):
            yield row

    async def load(
        self,
        rows: AsyncIterable[DumpRow],
        *,
        replace: bool = False,
        tables: Sequence[Table] = (),
    ) -> int:
        """Write `rows` back exactly, in one transaction, into an empty store (`Dumper`);
        `replace` empties the store and `tables` first, in the same transaction."""
        await self.ensure_open()
        dialect, where = self._where()
        if dialect == "sqlite":
            from . import sqlite_dumps as dumps
        else:
            from . import postgres_dumps as dumps  # type: ignore[no-redef]
        return await dumps.load(
            where,
            self.connection.busy_timeout,
            self.table,
            rows,
            replace=replace,
            tables=tables,
        )

    async def backup(self, path: str) -> None:
        """A consistent copy of the live SQLite database file at `path` (which must not
        exist), taken while writes go on: SQLite's online backup API, one snapshot.

        Raises:
            NotImplementedError: on PostgreSQL, whose own tools do this (`pg_dump`,
                `pg_basebackup`: docs/operations.md).
            FileExistsError: `path` exists.
        """
        dialect, where = self._where()
        if dialect != "sqlite":
            raise NotImplementedError(
                "backup copies a SQLite file; on PostgreSQL use pg_dump (or pg_basebackup "
                "with WAL archiving), or this package's dump: docs/operations.md"
            )
        from .sqlite_backup import backup

        await backup(where, path, self.connection.busy_timeout)
