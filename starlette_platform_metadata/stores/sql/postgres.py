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
from ..optimistic import RecentRecords, RowTurns
from ..rows import plan_rows
from .postgres_connection import PostgresConnection
from .postgres_listen import Notifications
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
    writers of one row in this process take turns first (`RowTurns`): each reads what the one
    before wrote, and only writers in other processes can race.  A write that loses such a
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
        t = table
        self._lock_sql = self._get_sql + " FOR UPDATE"
        self._many_sql = (
            f"SELECT username, metadata::text, version, created_at, updated_at FROM {t} "
            "WHERE platform_key = $1 AND username = ANY($2::text[])"
        )
        self._placeholders_sql = (
            f"INSERT INTO {t} (platform_key, username, metadata, version, created_at, "
            "updated_at) SELECT $1, u, NULL, 0, NULL, NULL FROM unnest($2::text[]) AS u "
            "ORDER BY u ON CONFLICT (platform_key, username) DO NOTHING"
        )
        self._lock_many_sql = (
            f"SELECT 1 FROM {t} WHERE platform_key = $1 AND username = ANY($2::text[]) "
            "ORDER BY username FOR UPDATE"
        )
        self._insert_sql = (
            f"INSERT INTO {t} (platform_key, username, metadata, version, created_at, "
            "updated_at) VALUES ($1, $2, $3::json, $4, $5, $6) "
            "ON CONFLICT (platform_key, username) DO NOTHING RETURNING version"
        )
        self._update_sql = (
            f"UPDATE {t} SET metadata = $3::json, version = $4, created_at = $5, "
            "updated_at = $6 WHERE platform_key = $1 AND username = $2"
        )
        # With history, the revision, retention and the platform's change clock ride in the
        # same statement (data-modifying CTEs): a write keeps the round trips it had without
        # history.  `$12` is `version - keep`; the clock row is locked until COMMIT, so the
        # platform's `seq` follows commit order; NOTIFY is sent at COMMIT.
        clock = f"{t}_clock"
        h = f"{t}_history"
        self._purge_sql = f"DELETE FROM {h} WHERE platform_key = $1 AND username = $2"
        # Retention: the revisions of versions older than the newest `keep` (`$12` is
        # `version - keep`), one range of the primary key.
        trim = f"DELETE FROM {h} WHERE platform_key = $1 AND username = $2 AND version <= $12"
        revision = (
            f"r AS (INSERT INTO {h} (platform_key, username, version, operation, actor, at, "
            "metadata, changed_keys, created_at, seq) "
            "SELECT $1, $2, $4, $7, $8, $9, $10::json, $11, $5, c.seq FROM c "
            "ON CONFLICT (platform_key, username, version) DO UPDATE SET "
            "operation = excluded.operation, actor = excluded.actor, at = excluded.at, "
            "metadata = excluded.metadata, changed_keys = excluded.changed_keys, "
            "created_at = excluded.created_at, seq = excluded.seq)"
        )
        tick = (
            f"INSERT INTO {clock} AS k (platform_key, seq, horizon) {{source}} "
            "ON CONFLICT (platform_key) DO UPDATE SET seq = k.seq + 1, "
            "horizon = GREATEST(k.horizon, excluded.horizon) RETURNING seq"
        )
        self._update_revision_sql = (
            f"WITH d AS ({trim} RETURNING seq), "
            "c AS ("
            + tick.format(source="VALUES ($1, 1, COALESCE((SELECT max(seq) FROM d), 0))")
            + f"), w AS ({self._update_sql}), "
            + revision
            + " SELECT pg_notify($13, $1)"
        )
        # A first write: no row, so no revision to trim; the revision only if the row was
        # inserted (another writer may have won the race: then we lock its row and retry).
        self._insert_revision_sql = (
            f"WITH i AS ({self._insert_sql}), c AS ("
            + tick.format(source="SELECT $1, 1, 0 FROM i")
            + "), "
            + revision
            + " SELECT version, pg_notify($12, $1) FROM i"
        )
        # Compare-and-set: the same statements, applied only while the row holds the basis
        # (its version, `updated_at` and document: `$14`-`$16`, or `$7`-`$9` without history);
        # everything else in the statement hangs on the update's row.  The version alone is not
        # enough: a record this process sent but another process beat (its version then names
        # another state) may already be the next writer's basis; only the whole state is.
        same = (
            "version = {} AND updated_at IS NOT DISTINCT FROM {} "
            "AND metadata::text IS NOT DISTINCT FROM {}"
        )
        cas = " AND " + same.format("$14", "$15", "$16") + " RETURNING 1"
        self._cas_revision_sql = (
            f"WITH w AS ({self._update_sql}{cas}), "
            f"d AS ({trim} AND EXISTS (SELECT 1 FROM w) RETURNING seq), "
            "c AS ("
            + tick.format(
                source="SELECT $1, 1, COALESCE((SELECT max(seq) FROM d), 0) FROM w"
            )
            + "), "
            + revision
            + " SELECT pg_notify($13, $1) FROM w"
        )
        self._cas_sql = self._update_sql + " AND " + same.format("$7", "$8", "$9") + " RETURNING 1"
        # Guarded (`update_guarded`): also only while another record of the platform (the
        # policy's) holds the state the caller decided on; no row is version 0's state.
        guard = (
            " AND COALESCE((SELECT " + same.format("{v}", "{u}", "{d}")
            + f" FROM {t} WHERE platform_key = $1 AND username = {{n}}), {{v}} = 0)"
        )  # fmt: skip
        self._guarded_cas_revision_sql = self._cas_revision_sql.replace(
            cas, cas.replace(" RETURNING", guard.format(n="$17", v="$18", u="$19", d="$20")
                             + " RETURNING"), 1
        )
        self._guarded_cas_sql = self._cas_sql.replace(
            " RETURNING", guard.format(n="$10", v="$11", u="$12", d="$13") + " RETURNING", 1
        )
        self._turns = RowTurns()
        self._recent = RecentRecords(RECENT_BYTES)
        self._changes_of_sql = self._changes_sql.replace(
            "AND seq > $2", "AND seq > $2 AND username = ANY($4::text[])"
        )
        self._channel = f"spm_{t}".lower()
        self._notifications = Notifications(
            self._channel, lambda: listen_dsn or connection.dsn(), connection.timeout
        )

    async def get_many(self, platform_key: str, usernames: Sequence[str]) -> list[Record]:
        rows = await self.connection.fetch(self._many_sql, platform_key, list(usernames))
        found = {row[0]: self._record(row[1:]) for row in rows}
        return [found.get(name, EMPTY) for name in usernames]

    async def update(self, platform_key: str, username: str, change: Change) -> Record:
        return await self._update(platform_key, username, change, None)

    async def update_guarded(
        self, platform_key: str, username: str, change: Change, guard: tuple[str, Record]
    ) -> Record:
        """`update`, only while the record of `guard[0]` holds `guard[1]` (`GuardedWriter`):
        checked in the compare-and-set's own statement, or, on the paths that read the row
        first, read in the same statement as the row."""
        return await self._update(platform_key, username, change, guard)

    async def _update(
        self,
        platform_key: str,
        username: str,
        change: Change,
        guard: tuple[str, Record] | None,
    ) -> Record:
        key = (platform_key, username)
        timeout = self.connection.timeout
        try:
            async with self._turns.turn(key, timeout):
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
        except TimeoutError:  # waiting for the turn: the writers before took too long
            raise StoreUnavailable(f"PostgreSQL did not answer within {timeout} s") from None

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
                rows = await raw.fetch(self._many_sql, platform_key, [username, guard[0]])
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
            sql = self._cas_revision_sql if guard is None else self._guarded_cas_revision_sql
        else:
            sql = self._cas_sql if guard is None else self._guarded_cas_sql
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
            return await raw.fetchval(self._insert_revision_sql, *values, *extra) is not None
        return await raw.fetchval(self._insert_sql, *values) is not None

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
            await raw.execute(self._placeholders_sql, platform_key, names)
            await raw.execute(self._lock_many_sql, platform_key, names)
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
            row = await raw.fetchrow(self._lock_sql, platform_key, username)
            current = self._record(row)
            write = change(current)
            if write is None:
                return current, False
            _, record, document, purge, revision, trim = plan_rows(current, write)
            if purge:
                await raw.execute(self._purge_sql, platform_key, username)
            if record is None:  # a purge with nothing stored
                return current, True
            values = self._row_values(platform_key, username, document, record)
            if row is not None:
                if revision is not None:
                    extra = self._revision_values(revision, trim or 0)
                    await raw.execute(self._update_revision_sql, *values, *extra)
                else:
                    await raw.execute(self._update_sql, *values)
                return record, True
            if await self._insert_row(raw, values, revision):
                return record, True
            # Another writer created the row since our read: lock it and decide again.
