"""The SQLite engine: the metadata tables on a `SQLiteConnection`.

Reads run on the event loop (`SQLReads`, reads.py); writes go through the group commit
(sqlite_groups.py), and this engine says what a group writes: for each update, the record's
read, the package's change, and the rows its `RowPlan` names (stores/rows.py), gathered and
written with one `executemany` per statement.  History is keyed by integer user ids
(schema.py, `history_schema`), which the engine remembers once committed.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ...jsontext import dump, keys_json
from ..base import EMPTY, Change, GuardMoved, Record
from ..filters import sqlite_filter
from ..rows import plan_rows
from .reads import REVISION_COLUMNS, SQLReads
from .sqlite_connection import SQLiteConnection, translate
from .sqlite_groups import GroupCommit, Key, Queued

__all__ = ["SQLiteEngine"]

#: User ids by (platform, username): assigned in a transaction, or remembered once committed.
_Ids = dict[Key, int]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


# A record's created_at is written again with every change: render each once (bounded).  Not
# for `updated_at`, new with every write: its misses would only push the created_at out.
_timestamp = functools.lru_cache(maxsize=4096)(_iso)


# A record is read far more often than written, so the same timestamps come back read after
# read: parse each once (a bounded cache; what it holds is in the table anyway).
_fromisoformat = functools.lru_cache(maxsize=4096)(datetime.fromisoformat)


def _parse_timestamp(value: str | None) -> datetime | None:
    return None if value is None else _fromisoformat(value)


class SQLiteEngine(SQLReads, GroupCommit):
    """The metadata table on a `SQLiteConnection`: reads on the loop (`SQLReads`), writes
    group-committed (`GroupCommit`: `update` and `update_many` queue, `write_group` writes)."""

    def __init__(self, connection: SQLiteConnection, table: str) -> None:
        SQLReads.__init__(self, connection, table, sqlite_filter)
        GroupCommit.__init__(self, connection)
        t = table
        self._get_sql_native = translate(self._get_sql)  # run on sqlite3 directly
        self._many_one = (
            f"SELECT username, metadata, version, created_at, updated_at FROM {t} "
            "WHERE platform_key = ?1 AND username "
        )
        self._many_sql: dict[int, str] = {}
        self._put_sql = (
            f"INSERT INTO {t} (platform_key, username, metadata, version, created_at, "
            "updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
            "ON CONFLICT (platform_key, username) DO UPDATE SET metadata = excluded.metadata, "
            "version = excluded.version, created_at = excluded.created_at, "
            "updated_at = excluded.updated_at"
        )
        # History is keyed by user ids (schema.py, `history_schema`).  A reader finds the
        # id in the statement itself (one search of the UNIQUE index, evaluated once).
        h, users = f"{t}_history", f"{t}_user_ids"
        find_user = f"SELECT id FROM {users} WHERE platform_key = $1 AND username = $2"
        user = f"({find_user})"
        self._user_id_sql = translate(find_user)
        self._new_user_sql = f"INSERT INTO {users} (platform_key, username) VALUES (?1, ?2)"
        self._user_ids: _Ids = {}
        # Once this engine has written a revision, a record read for a user whose id it does
        # not remember also reads the id (hosts with history off never pay for it).
        self._keeps_history = False
        self._get_with_id_sql = translate(self._get_sql.replace(" FROM ", f", {user} FROM ", 1))
        self._revisions_sql = (
            f"SELECT {REVISION_COLUMNS} FROM {h} WHERE user_id = {user} "
            "AND version < $3 ORDER BY version DESC LIMIT $4"
        )
        self._changes_sql = (
            f"SELECT u.username, {REVISION_COLUMNS} FROM {h} AS h JOIN {users} AS u "
            "ON u.id = h.user_id WHERE h.platform_key = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        )
        self._changes_of_sql = self._changes_sql.replace(
            "AND seq > $2", "AND seq > $2 AND u.username IN (SELECT value FROM json_each($4))"
        )
        self._insert_revision_sql = (
            f"INSERT INTO {h} (user_id, platform_key, version, operation, actor, at, metadata, "
            "changed_keys, created_at, seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) "
            "ON CONFLICT (user_id, version) DO UPDATE SET "
            "operation = excluded.operation, actor = excluded.actor, at = excluded.at, "
            "metadata = excluded.metadata, changed_keys = excluded.changed_keys, "
            "created_at = excluded.created_at, seq = excluded.seq"
        )
        self._purge_sql = f"DELETE FROM {h} WHERE user_id = ?1"
        # Retention: the revisions of versions older than the newest `keep` (`?2` is
        # `version - keep`), one range of the primary key.
        self._trim_sql = f"DELETE FROM {h} WHERE user_id = ?1 AND version <= ?2"
        self._position_sql_native = translate(self._position_sql)
        self._clock_sql = (
            f"INSERT INTO {t}_clock (platform_key, seq, horizon) VALUES (?1, ?2, 0) "
            "ON CONFLICT (platform_key) DO UPDATE SET seq = excluded.seq"
        )
        # Before retention drops a user's oldest revisions: the newest `seq` among them.
        # One statement per platform and group: `?2` is a JSON object {"user id": version
        # bound}, one primary-key probe a member, in SQLite's C rather than a statement each
        # (CROSS JOIN keeps the members the outer loop: the other order scans the history).
        # An object, not an array of pairs: `json_each` hands over each key and value as they
        # are, where `pair ->> 0` would parse each pair again (4,800 instructions a write).
        self._horizon_sql = (
            f"UPDATE {t}_clock SET horizon = max(horizon, coalesce((SELECT max(h.seq) FROM "
            f"json_each(?2) AS bound CROSS JOIN {h} AS h ON h.user_id = CAST(bound.key AS "
            "INTEGER) AND h.version <= bound.value), 0)) WHERE platform_key = ?1"
        )
        self._data_version: int | None = None

    async def update_guarded(
        self, platform_key: str, username: str, change: Change, guard: tuple[str, Record]
    ) -> Record:
        """`update`, if the record of `guard[0]` holds `guard[1]` (`GuardedWriter`): checked
        in the group's transaction, just before the change is decided, against the record
        as the group has it (written by an update before it in the group, or read once per
        group).  So a PATCH costs no read of the policy of its own, and a policy written in
        the same group is never missed."""
        return await self.update(platform_key, username, change, guard)

    def timestamp(self, value: Any) -> datetime | None:
        return _parse_timestamp(value)

    async def get_many(self, platform_key: str, usernames: Sequence[str]) -> list[Record]:
        if not usernames:
            return []
        sql = self._many_sql.get(len(usernames))
        if sql is None:
            sql = _select_many(self._many_one, len(usernames))
            if len(usernames) <= _FEW:  # one text per count (a GET asks for two): keep a few
                self._many_sql[len(usernames)] = sql
        rows = await self.connection.fetch(sql, platform_key, *usernames)
        found = {row[0]: self._record(row[1:]) for row in rows}
        return [found.get(name, EMPTY) for name in usernames]

    def write_group(
        self, connection: sqlite3.Connection, updates: Sequence[Queued]
    ) -> tuple[list[Record | Exception], Callable[[], None]]:
        """Inside the group's transaction: for each update, read and change; then the writes.

        The group's rows go in with one `executemany` per statement at the end (the loop over
        them runs in C, not Python): a later update of the same record in the group reads what
        an earlier one decided from `written`, never from the table.  The user ids assigned
        are remembered once the transaction has committed.
        """
        new_ids: _Ids = {}
        written: dict[Key, Record] = {}
        guards: dict[Key, Record] = {}  # guarding records read in this group
        outcomes: list[Record | Exception] = []
        rows = _GroupRows()
        clocks = rows.clocks
        for update in updates:
            key = update.key
            if update.guard is not None:
                username, state = update.guard
                guarding = (key[0], username)
                held = written.get(guarding) or guards.get(guarding)
                if held is None:
                    row = connection.execute(self._get_sql_native, guarding).fetchone()
                    held = guards[guarding] = self._record(row)
                if held != state:
                    outcomes.append(GuardMoved(f"{username!r} of {key[0]!r} changed"))
                    continue
            current = written.get(key)
            if current is None:
                if self._keeps_history and key not in self._user_ids and key not in new_ids:
                    # Its id, if it has one, comes with the record: no statement of its own.
                    row = connection.execute(self._get_with_id_sql, key).fetchone()
                    if row is not None:
                        if row[4] is not None:
                            self._remember({key: row[4]})
                        row = row[:4]
                else:
                    row = connection.execute(self._get_sql_native, key).fetchone()
                current = self._record(row)
            try:
                write = update.change(current)
            except Exception as exc:  # a refusal (or a bug) of this update alone
                outcomes.append(exc)
                continue
            if write is None:
                outcomes.append(current)
                continue
            stored, record, document, purge, revision, trim = plan_rows(current, write)
            updated = None
            if record is not None:
                updated = _iso(record.updated_at)
                # The record's last state in the group is the one written.
                rows.records[key] = (
                    *key,
                    document,
                    record.version,
                    _timestamp(record.created_at),
                    updated,
                )
                written[key] = record
            if purge:  # after this record's earlier revisions, before its next ones
                self._write_rows(connection, rows)
                user_id = self._found_user_id(connection, key, new_ids)
                if user_id is not None:
                    connection.execute(self._purge_sql, (user_id,))
            if revision is not None:
                self._keeps_history = True
                platform_key = key[0]
                user_id = self._user_ids.get(key) or self._user_id(connection, key, new_ids)
                seq = clocks.get(platform_key)
                if seq is None:  # the group holds the write lock: nobody else moves it
                    row = connection.execute(self._position_sql_native, (platform_key,)).fetchone()
                    seq = row[0] if row else 0
                clocks[platform_key] = seq = seq + 1
                at = (
                    updated
                    if updated is not None and revision.at == stored.updated_at
                    else _iso(revision.at)
                )
                rows.revisions.append(
                    (
                        user_id,
                        platform_key,
                        revision.version,
                        revision.operation,
                        revision.actor,
                        at,
                        revision.metadata_json,
                        keys_json(revision.changed_keys),
                        _timestamp(revision.created_at),
                        seq,
                    )
                )
                # A user's later revision in the group moves the bound up: one range delete
                # per user and group.
                if trim is not None:
                    rows.trims[user_id] = (platform_key, trim)
            outcomes.append(stored)
        self._write_rows(connection, rows)
        return outcomes, functools.partial(self._remember, new_ids)

    def _found_user_id(
        self, connection: sqlite3.Connection, key: Key, new_ids: _Ids
    ) -> int | None:
        """The user's id in `<table>_user_ids` if it has one, inside the group's transaction:
        remembered, or found (committed, by us or another process: it never changes)."""
        user_id = self._user_ids.get(key) or new_ids.get(key)
        if user_id is None:
            row = connection.execute(self._user_id_sql, key).fetchone()
            if row is not None:
                user_id = row[0]
                self._remember({key: user_id})
        return user_id

    def _user_id(self, connection: sqlite3.Connection, key: Key, new_ids: _Ids) -> int:
        """The user's id, assigned now if it has none; a new id goes to `new_ids`, for the
        engine to remember once the transaction has committed."""
        user_id = self._found_user_id(connection, key, new_ids)
        if user_id is None:
            user_id = connection.execute(self._new_user_sql, key).lastrowid
            assert user_id is not None
            new_ids[key] = user_id
        return user_id

    def _remember(self, ids: _Ids) -> None:
        """Keep committed user ids; a bounded memo (the table has them all)."""
        if len(self._user_ids) + len(ids) > _USER_IDS:
            self._user_ids.clear()
        self._user_ids.update(ids)

    def _write_rows(self, connection: sqlite3.Connection, rows: _GroupRows) -> None:
        if rows.records:
            connection.executemany(self._put_sql, rows.records.values())
        if rows.revisions:
            connection.executemany(self._insert_revision_sql, rows.revisions)
            connection.executemany(self._clock_sql, rows.clocks.items())
        if rows.trims:
            bounds: dict[str, dict[int, int]] = {}
            for user_id, (platform_key, version) in rows.trims.items():
                bounds.setdefault(platform_key, {})[user_id] = version
            connection.executemany(
                self._horizon_sql, [(key, dump(users)) for key, users in bounds.items()]
            )
            connection.executemany(
                self._trim_sql, [(user_id, bound) for user_id, (_, bound) in rows.trims.items()]
            )
        rows.records.clear()
        rows.revisions.clear()
        rows.trims.clear()  # the clocks stay: the group's later revisions count on from them

    def _names(self, usernames: Sequence[str]) -> Any:
        return dump(list(usernames))

    async def poll(self) -> bool:
        """Whether any connection (ours, another process's) committed since the last call:
        `PRAGMA data_version`, microseconds on the loop."""
        rows = await self.connection.fetch("PRAGMA data_version")
        version: int = rows[0][0]
        moved = version != self._data_version
        self._data_version = version
        return moved

    async def close(self) -> None:
        """Forget the user ids: the store may connect again to another file of the same name.
        (The connection is the store's.)"""
        self._user_ids.clear()
        self._keeps_history = False


@dataclass(slots=True)
class _GroupRows:
    """Rows a group writes, in order: records, revisions, platform clocks, retention.

    Records and retention bounds are keyed by user: when the group changes a user several
    times (one popular record), only the last state and the highest bound are written, the
    same rows as one write after another would leave, in one statement each."""

    records: dict[Key, tuple[Any, ...]] = field(default_factory=dict)
    revisions: list[tuple[Any, ...]] = field(default_factory=list)
    clocks: dict[str, int] = field(default_factory=dict)
    trims: dict[int, tuple[str, int]] = field(default_factory=dict)


#: User ids the engine remembers, at most (about 100 bytes each); past it, it starts over.
_USER_IDS = 100_000

#: Up to this many names, `get_many` runs one primary-key search per name.
_FEW = 8


def _select_many(one: str, count: int) -> str:
    """The statement of `get_many` for `count` names (`?2`...), `one` ending in `username `.

    A few names: a search each, `UNION ALL` (a name twice comes back twice, which the caller's
    dict absorbs).  `username IN (?2, ?3)` first builds a temporary table of the list: 5.7 us
    against 4.3 for the two names of every GET, measured on the loop's connection.  More
    names: the `IN` list, one statement of any length."""
    if count <= _FEW:
        return " UNION ALL ".join(f"{one}= ?{i}" for i in range(2, count + 2))
    marks = ", ".join(f"?{i}" for i in range(2, count + 2))
    return f"{one}IN ({marks})"
