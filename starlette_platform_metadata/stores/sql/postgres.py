"""The PostgreSQL engine: the metadata tables on a `PostgresConnection`.

Every write is one atomic step chosen by measurement (see `PostgresEngine`), and the document
is a `json` column, not `jsonb`: `json` keeps the exact text we wrote, so a document reads back
byte for byte as SQLite and `MemoryStore` render it (`jsonb` would store numbers as `numeric`,
turning `1e16` into an integer and dropping the sign of `-0.0`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from ...jsontext import keys_json
from ..base import EMPTY, Change, GuardMoved, Record, Revision, StoreUnavailable, Write
from ..filters import postgres_filter
from ..optimistic import RecentRecords
from ..rows import plan_rows
from .postgres_connection import PostgresConnection
from .postgres_listen import Notifications
from .postgres_rows import Combined, Queued, RowWriters, combine
from .postgres_sql import WriteStatements
from .reads import SQLReads

__all__ = ["BATCH_SECONDS_PER_ROW", "PostgresEngine"]

#: `update_many`'s deadline: `busy_timeout` plus this per update (a row takes about 0.3 ms).
BATCH_SECONDS_PER_ROW = 0.005
#: The documents `update` keeps as the basis of its next compare-and-set, per process.
RECENT_BYTES = 4 * 1024 * 1024


class PostgresEngine(SQLReads):
    """The metadata table on a `PostgresConnection`.

    `update` reads the row, runs the change in Python, and writes with compare-and-set: one
    statement, in autocommit, that stores the record only if the row still holds the one
    read, with the revision, retention and the platform's clock in the same statement.  Two
    round trips, where a locked transaction takes four (BEGIN, `SELECT ... FOR UPDATE`, the
    write, COMMIT).  Compare-and-set alone loses most races when many writers share a row
    (benchmarks/README.md: with 64 writers on one row the row lock did 1.8x its writes), so
    writers of one row in this process never race each other (`RowWriters`,
    postgres_rows.py): the first writes at once, and those arriving meanwhile are written
    together, their changes run in arrival order and stored by one compare-and-set with every
    revision; only writers in other processes can race.  A write that loses such a
    race, or purges history, takes the locked path: in one transaction, `SELECT ... FOR
    UPDATE`, the change, the write, `COMMIT`, which always makes progress.  And the record a
    write stored (`RecentRecords`) is the basis of the row's next write in this process: a
    change on it, then the compare-and-set, one round trip; only when it is not the stored
    record any more (another process wrote), or the change refuses or stores nothing on it,
    does the write read and decide again.  The compare-and-set checks the row's whole state
    (version, `updated_at`, document), not the version alone: a `load --replace` under a
    running process can give a version number back to another state.  (Sending the next
    writer's statement before this one's answer, so that the row lock would order them, was
    tried and dropped: statements on two connections reach the row in either order, and the
    losers' retries made it 0.6x as fast on one row, 0.87x on 64 rows.)  A first write has
    no row to lock: it inserts with `ON CONFLICT DO NOTHING`, and if another writer inserted
    meanwhile, locks that row and decides again.  A change that refuses, or has nothing to
    store, writes nothing.  Each step runs within the call's deadline.
    """

    def __init__(
        self, connection: PostgresConnection, table: str, *, listen_dsn: str | None = None
    ) -> None:
        super().__init__(connection, table, postgres_filter)
        self.connection = connection
        self.sql = WriteStatements(table, self._get_sql)
        self._writers = RowWriters(self._write_one, self._write_queued, connection.timeout)
        self._recent = RecentRecords(RECENT_BYTES)
        self._changes_of_sql = self._changes_sql.replace(
            "AND seq > $2", "AND seq > $2 AND username = ANY($4::text[])"
        )
        self._channel = f"spm_{table}".lower()
        self._notifications = Notifications(
            self._channel, lambda: listen_dsn or connection.dsn(), connection.timeout
        )

    async def get_many(self, platform_key: str, usernames: Sequence[str]) -> list[Record]:
        rows = await self.connection.fetch(self.sql.many, platform_key, list(usernames))
        found = {row[0]: self._record(row[1:]) for row in rows}
        return [found.get(name, EMPTY) for name in usernames]

    async def update(self, platform_key: str, username: str, change: Change) -> Record:
        return await self._writers.write((platform_key, username), change, None)

    async def update_guarded(
        self, platform_key: str, username: str, change: Change, guard: tuple[str, Record]
    ) -> Record:
        """`update`, only while the record of `guard[0]` holds `guard[1]` (`GuardedWriter`):
        checked in the compare-and-set's own statement, or, on the paths that read the row
        first, read in the same statement as the row."""
        return await self._writers.write((platform_key, username), change, guard)

    async def _write_one(self, key: Any, change: Change, guard: tuple[str, Record] | None) -> Record:
        """One change: on the record last stored, else on a read, else under the row lock."""
        platform_key, username = key
        try:
            found = await self._update_on_basis(key, platform_key, username, change, guard)
            if found is None:
                found = await self._read_and_update(platform_key, username, change, guard)
            if found is None:
                # The guard held at the read just made: decided as a read first would.
                found = await self._locked_transaction(platform_key, username, change)
        except BaseException:
            self._recent.discard(key)  # refused, or unknown after an outage
            raise
        self._recent.put(key, found)
        return found

    async def _write_queued(self, key: Any, queued: list[Queued]) -> None:
        """Writers that queued for the row (`RowWriters`): as one statement when they can be
        (`combine`), else one at a time; each writer's future gets its answer."""
        if len(queued) > 1 and await self._write_combined(key, queued):
            return
        for item in queued:
            try:
                item.future.set_result(await self._write_one(key, item.change, item.guard))
            except StoreUnavailable as exc:
                item.future.set_exception(exc)
                raise  # the rest are not tried: `RowWriters` answers them with it
            except Exception as exc:
                item.future.set_exception(exc)

    async def _write_combined(self, key: Any, queued: list[Queued]) -> bool:
        """Every queued change in one compare-and-set, on the record this process stored
        last; whether it was stored (every writer then answered)."""
        basis = self._recent.get(key)
        guard = queued[0].guard
        if basis is None or basis.version == 0 or any(q.guard != guard for q in queued):
            return False
        plan = combine(basis, [item.change for item in queued])
        if plan is None:
            return False
        platform_key, username = key
        try:
            if plan.steps[0][1] is None:  # history off: the last record is all there is
                async with self.connection.session() as raw:
                    write = Write(plan.final, "patch")
                    applied = await self._compare_and_set(
                        raw, platform_key, username, basis, write, guard
                    )
            else:
                applied = await self._store_combined(key, basis, plan, guard)
        except BaseException:
            self._recent.discard(key)  # unknown after an outage
            raise
        if applied is None:  # another process wrote, or the guard moved: one at a time
            self._recent.discard(key)
            return False
        self._recent.put(key, plan.final)
        for item, answer in zip(queued, plan.answers, strict=True):
            if isinstance(answer, Exception):
                item.future.set_exception(answer)
            else:
                item.future.set_result(answer)
        return True

    async def _store_combined(
        self, key: Any, basis: Record, plan: Combined, guard: tuple[str, Record] | None
    ) -> Any:
        """`plan`'s last record and every revision, in one statement: a row, or `None` when
        the row or the guard moved on."""
        platform_key, username = key
        values = self._row_values(platform_key, username, plan.document, plan.final)
        records = [record for record, _ in plan.steps]
        revisions = [revision for _, revision in plan.steps]
        columns = (
            [r.version for r in records],
            [r.operation for r in revisions],
            [r.actor for r in revisions],
            [r.at for r in revisions],
            [r.metadata_json for r in revisions],
            [keys_json(r.changed_keys) for r in revisions],
            [r.created_at for r in records],
        )
        extra = (plan.trim, self._channel, len(records), *self._state(basis))
        sql = self.sql.batch
        if guard is not None:
            extra += (guard[0], *self._state(guard[1]))
            sql = self.sql.guarded_batch
        async with self.connection.session() as raw:
            return await raw.fetchrow(sql, *values, *columns, *extra)

    async def _update_on_basis(
        self,
        key: tuple[str, str],
        platform_key: str,
        username: str,
        change: Change,
        guard: tuple[str, Record] | None,
    ) -> Record | None:
        """The change on the record this process last stored, and its compare-and-set: one
        round trip.  `None`: no basis, the row holds another state now (another process
        wrote), or the change refuses, stores nothing or purges on it (decide on a read)."""
        basis = self._recent.get(key)
        if basis is None or basis.version == 0:
            return None
        try:
            write = change(basis)
        except Exception:  # refused on a basis that may be old: decide on a read
            return None
        if write is None:
            return None
        async with self.connection.session() as raw:
            return await self._compare_and_set(raw, platform_key, username, basis, write, guard)

    async def _read_and_update(
        self,
        platform_key: str,
        username: str,
        change: Change,
        guard: tuple[str, Record] | None,
    ) -> Record | None:
        """Read, change, compare-and-set (or insert), on one pooled connection in autocommit:
        the record stored (or the current one, when the change stores nothing), or `None`
        when the locked path must decide (another process wrote the row since the read, or
        the write purges history)."""
        async with self.connection.session() as raw:
            if guard is None:
                row = await raw.fetchrow(self._get_sql, platform_key, username)
            else:  # the row and the guard's, in one statement
                rows = await raw.fetch(self.sql.many, platform_key, [username, guard[0]])
                found = {found[0]: found[1:] for found in rows}
                if self._record(found.get(guard[0])) != guard[1]:
                    raise GuardMoved(f"{guard[0]!r} of {platform_key!r} changed")
                row = found.get(username)
            current = self._record(row)
            write = change(current)
            if write is None:
                return current
            if row is None:
                return await self._insert(raw, platform_key, username, current, write)
            return await self._compare_and_set(raw, platform_key, username, current, write)

    async def _compare_and_set(
        self,
        raw: Any,
        platform_key: str,
        username: str,
        current: Record,
        write: Write,
        guard: tuple[str, Record] | None = None,
    ) -> Record | None:
        """Store `write` over the existing row if it still holds `current` (its whole state,
        `_state`), and the guard's row its record: the record stored, or `None` (either
        moved on, or the write purges)."""
        _, record, document, purge, revision, trim = plan_rows(current, write)
        if purge or record is None:
            return None
        values = self._row_values(platform_key, username, document, record)
        state = self._state(current)
        if revision is not None:
            values += self._revision_values(revision, trim or 0)
            sql = self.sql.cas_revision if guard is None else self.sql.guarded_cas_revision
        else:
            sql = self.sql.cas if guard is None else self.sql.guarded_cas
        if guard is not None:
            state += (guard[0], *self._state(guard[1]))
        applied = await raw.fetchrow(sql, *values, *state)
        return None if applied is None else record

    @staticmethod
    def _state(record: Record) -> tuple[Any, ...]:
        """What a compare-and-set finds in the row when it holds `record`."""
        document = record.metadata_json if record.exists else None
        return record.version, record.updated_at, document

    async def _insert(
        self, raw: Any, platform_key: str, username: str, current: Record, write: Write
    ) -> Record | None:
        """A first write, where no row was: the record stored, or `None` if another writer
        inserted the row first (or the write purges)."""
        _, record, document, purge, revision, _ = plan_rows(current, write)
        if purge or record is None:
            return None
        values = self._row_values(platform_key, username, document, record)
        return record if await self._insert_row(raw, values, revision) else None

    async def _insert_row(
        self, raw: Any, values: tuple[Any, ...], revision: Revision | None
    ) -> bool:
        """Insert the row of `values` (`_row_values`) with its revision, unless a row is
        there already: whether it was inserted."""
        if revision is not None:
            extra = self._revision_values(revision, None)
            return await raw.fetchval(self.sql.insert_revision, *values, *extra) is not None
        return await raw.fetchval(self.sql.insert, *values) is not None

    @staticmethod
    def _row_values(
        platform_key: str, username: str, document: str | None, record: Record
    ) -> tuple[Any, ...]:
        """Parameters `$1`..`$6` of every statement that writes the record's row."""
        return (
            platform_key,
            username,
            document,
            record.version,
            record.created_at,
            record.updated_at,
        )

    async def _locked_transaction(
        self, platform_key: str, username: str, change: Change
    ) -> Record:
        async with self.connection.session() as raw:
            transaction = raw.transaction()
            await transaction.start()
            try:
                record, written = await self._locked_update(raw, platform_key, username, change)
            except BaseException:
                with contextlib.suppress(Exception):
                    await transaction.rollback()
                raise
            if written:
                await transaction.commit()
            else:
                await transaction.rollback()
            return record

    async def update_many(
        self, platform_key: str, updates: Sequence[tuple[str, Change]]
    ) -> list[Record]:
        """Every update as `update` makes it (`_locked_update`), all in one transaction; any
        refusal rolls everything back.  Every row is locked before the first write: missing
        ones are first inserted as placeholders (version 0, no document: they read as
        `EMPTY`), then all are locked in username order.  So the batch takes the platform's
        change clock (locked by each write until COMMIT) only once it holds all its rows: no
        single write or other batch can wait on it while holding a row it needs.  The call's
        deadline grows with the batch: `busy_timeout` plus `BATCH_SECONDS_PER_ROW` per update."""
        order = sorted(range(len(updates)), key=lambda i: updates[i][0])
        names = [updates[i][0] for i in order]
        found: list[Record] = [EMPTY] * len(updates)
        timeout = self.connection.timeout + BATCH_SECONDS_PER_ROW * len(updates)
        async with self.connection.session(timeout) as raw, raw.transaction():
            await raw.execute(self.sql.placeholders, platform_key, names)
            await raw.execute(self.sql.lock_many, platform_key, names)
            for i in order:
                username, change = updates[i]
                found[i], _ = await self._locked_update(raw, platform_key, username, change)
        for username, _ in updates:
            self._recent.discard((platform_key, username))
        return found

    def _revision_values(self, revision: Revision, trim: int | None) -> tuple[Any, ...]:
        """Parameters `$7`.. of the statements with history; `trim` (retention's bound, 0
        trims nothing) only for an existing row's, as a first write has none to trim."""
        return (
            revision.operation,
            revision.actor,
            revision.at,
            revision.metadata_json,
            keys_json(revision.changed_keys),
            *(() if trim is None else (trim,)),
            self._channel,
        )

    # --- live changes: one listening connection per process (postgres_listen.py) ---------

    async def poll(self) -> bool:
        return await self._notifications.heard()

    async def close(self) -> None:
        await self._notifications.close()

    async def _locked_update(
        self, raw: Any, platform_key: str, username: str, change: Change
    ) -> tuple[Record, bool]:
        """Inside the transaction: the record now stored, and whether it was written."""
        while True:
            row = await raw.fetchrow(self.sql.lock, platform_key, username)
            current = self._record(row)
            write = change(current)
            if write is None:
                return current, False
            _, record, document, purge, revision, trim = plan_rows(current, write)
            if purge:
                await raw.execute(self.sql.purge, platform_key, username)
            if record is None:  # a purge with nothing stored
                return current, True
            values = self._row_values(platform_key, username, document, record)
            if row is not None:
                if revision is not None:
                    extra = self._revision_values(revision, trim or 0)
                    await raw.execute(self.sql.update_revision, *values, *extra)
                else:
                    await raw.execute(self.sql.update, *values)
                return record, True
            if await self._insert_row(raw, values, revision):
                return record, True
            # Another writer created the row since our read: lock it and decide again.
