"""The example host's own tables: platforms, users, memberships and API tokens.

They live in the same database as the metadata.  SQL is written once, with PostgreSQL's `$1`
placeholders, which the package's `sql_connection` runs on SQLite too, so the two dialects
differ only in their DDL (schema.py).  The tables come to be as the store's do (`open_tables`):
created on first use in one transaction, their schema version recorded beside them.

Tokens are stored as the SHA-256 hex digest of the key: a copy of the database hands out no
working token.  A key carries 160 random bits (`secrets.token_hex(20)`), so an unsalted fast
hash is enough; a slow password hash would only cost time on every request.

Statements run on the package's kept connections (`sql_connection`, as `DatabaseStore` does).

Answers are cached and checked against a generation counter, `example_host_generation`, that
triggers raise on every change to the host's tables, whoever makes it: this process, another
worker or host, the CLI, a hand-typed UPDATE.  A request knows the counter (SQLite: reads it,
or shares a read that began after it arrived, `arrivals.SharedRead`; PostgreSQL: reads it
after a NOTIFY from the same trigger, generation.py); while it is unchanged the cached answers
are exact, so a revoked token or a changed membership takes effect on the next request, and
metadata writes never invalidate them: both auth questions cost at most one statement on
SQLite and none on PostgreSQL, two more after a change.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from databases import DatabaseURL

from starlette_platform_metadata import PlatformAccess
from starlette_platform_metadata.arrivals import SharedRead
from starlette_platform_metadata.stores import OpensOnFirstUse, SQLConnection, sql_connection
from starlette_platform_metadata.stores.sql.postgres_connection import (
    PostgresConnection,
    asyncpg_dsn,
)
from starlette_platform_metadata.stores.sql.schema import open_tables

from . import bulk
from .generation import CHANNEL, GenerationWatch, forgets_generation
from .schema import DDL, SCHEMA_VERSION

__all__ = [
    "DEFAULT_URL",
    "HostDB",
    "Membership",
    "UnknownPlatform",
    "UnknownUser",
    "User",
    "hash_token",
    "new_token",
]

DEFAULT_URL = "sqlite:///example_host.db"

# The queries, in PostgreSQL's placeholder style (see the module docstring).
_USER_BY_TOKEN = (
    "SELECT u.id, u.username FROM tokens t JOIN users u ON u.id = t.user_id "
    "WHERE t.key_hash = $1"
)
# No row: no such platform.  A row: whether the caller is a member (and an admin), and whether
# the target (NULL when the caller acts on itself, which matches nobody) is a member.
_ACCESS = (
    "SELECT m.is_admin, EXISTS ("
    "SELECT 1 FROM memberships tm JOIN users tu ON tu.id = tm.user_id "
    "WHERE tm.platform_id = p.id AND tu.username = $3) "
    "FROM platforms p LEFT JOIN memberships m ON m.platform_id = p.id AND m.user_id = $2 "
    "WHERE p.key = $1"
)
_GENERATION = "SELECT n FROM example_host_generation"
_NOTIFY = "SELECT pg_notify($1, $2)"
_HAS_PLATFORMS = "SELECT EXISTS (SELECT 1 FROM platforms)"
_ADD_PLATFORM = "INSERT INTO platforms (key) VALUES ($1) ON CONFLICT (key) DO NOTHING RETURNING id"
_PLATFORM_ID = "SELECT id FROM platforms WHERE key = $1"
_MEMBERS = (
    "SELECT u.username, m.is_admin FROM memberships m JOIN users u ON u.id = m.user_id "
    "WHERE m.platform_id = $1 ORDER BY u.username"
)
_MEMBERSHIPS = (
    "SELECT p.key, m.is_admin FROM memberships m JOIN platforms p ON p.id = m.platform_id "
    "WHERE m.user_id = $1 ORDER BY p.key"
)
# A member of `$1` to suggest in `serve`'s hint: members before admins, then by name.
_SOME_MEMBERS = (
    "SELECT u.username, m.is_admin FROM platforms p JOIN memberships m ON m.platform_id = p.id "
    "JOIN users u ON u.id = m.user_id WHERE p.key = $1 ORDER BY m.is_admin, u.username"
)
# Which of the usernames given as a JSON array (`$2`) are members of platform `$1`: a page
# of the admin listing in one statement.  The one query whose dialects differ: the array.
_MEMBERS_AMONG = {
    dialect: (
        "SELECT u.username FROM platforms p JOIN memberships m ON m.platform_id = p.id "
        f"JOIN users u ON u.id = m.user_id WHERE p.key = $1 AND u.username IN ({names})"
    )
    for dialect, names in (
        ("sqlite", "SELECT value FROM json_each($2)"),
        ("postgresql", "SELECT json_array_elements_text($2::json)"),
    )
}
_FIRST_PLATFORM = "SELECT key FROM platforms ORDER BY (key = $1) DESC, id LIMIT 1"
_REMOVE_MEMBERSHIP = (
    "DELETE FROM memberships WHERE platform_id = $1 "
    "AND user_id = (SELECT id FROM users WHERE username = $2) RETURNING user_id"
)
_REVOKE_TOKEN = "DELETE FROM tokens WHERE key_hash = $1 RETURNING user_id"
_REVOKE_TOKENS_OF = (
    "DELETE FROM tokens WHERE user_id = (SELECT id FROM users WHERE username = $1) "
    "RETURNING user_id"
)
_USER_EXISTS = "SELECT EXISTS (SELECT 1 FROM users WHERE username = $1)"
_USER_BY_NAME = "SELECT id, username FROM users WHERE username = $1"


def new_token() -> str:
    """A new API key: 40 hex characters, as DRF's tokens."""
    return secrets.token_hex(20)


def hash_token(key: str) -> str:
    """What the tokens table stores for `key`."""
    return hashlib.sha256(key.encode()).hexdigest()


class UnknownPlatform(LookupError):
    """`add_user` named a platform that does not exist."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class UnknownUser(LookupError):
    """A command named a user that does not exist, or is not a member of the platform."""

    def __init__(self, username: str) -> None:
        super().__init__(username)
        self.username = username


@dataclass(frozen=True, slots=True)
class Membership:
    """A user's standing on one platform: `key` is the platform's, or the user's name in a
    listing of one platform's members."""

    key: str
    is_admin: bool


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str


#: Cached answers kept at most (a flood of unknown tokens only ever empties the cache).
_CACHE_ENTRIES = 10_000


class HostDB(OpensOnFirstUse):
    """The host's tables in a SQLite or PostgreSQL database.

    Args:
        url: a `databases` URL (`sqlite:///file.db`, `postgresql://user:pass@host/db`).
        listen_url: PostgreSQL only: a direct URL for the LISTEN connection (generation.py)
            when `url` goes through a transaction pooler.
        busy_timeout: seconds a statement may wait for a lock (SQLite) or for the pool, the
            connection and the statement together (PostgreSQL) before `StoreUnavailable`.

    Connects, and creates the tables, on `connect()` or on first use.
    """

    def __init__(
        self,
        url: str | DatabaseURL = DEFAULT_URL,
        *,
        busy_timeout: float = 5.0,
        listen_url: str | None = None,
    ) -> None:
        super().__init__()
        self.url = DatabaseURL(url)
        self._db: SQLConnection = sql_connection(
            self.url, busy_timeout=busy_timeout, pragmas=["PRAGMA foreign_keys = ON"]
        )
        self._cache: dict[tuple[Any, ...], tuple[int, Any]] = {}
        self.watch: GenerationWatch | None = None
        # SQLite: one read of the counter serves every request that arrived before it began.
        self._counter = SharedRead(self._read_generation)
        if isinstance(self._db, PostgresConnection):
            dsn = self._db.dsn() if listen_url is None else asyncpg_dsn(listen_url)
            self.watch = GenerationWatch(self._read_generation, self._notify, dsn, busy_timeout)

    async def _open(self) -> None:
        # A reopened database may be another file whose counter happens to match.
        self._cache.clear()
        self._counter.forget()
        await open_tables(self._db, "example_host", SCHEMA_VERSION, DDL[self._db.dialect])

    async def _close(self) -> None:
        if self.watch is not None:
            await self.watch.close()
        await self._db.close()

    async def connection(self) -> SQLConnection:
        """The open connection to the host's tables (opened on first use)."""
        await self.ensure_open()
        return self._db

    async def generation(self, arrived: int | None = None) -> int:
        """The host tables' generation counter: it changes with every change to them.

        On PostgreSQL it is read only after a change (generation.py).  On SQLite it is read
        for each request, except that a request that `arrived` (its `arrivals.arrival`) before
        a read began shares that read: a change it must see committed before it arrived.
        """
        if self.watch is not None:
            await self.ensure_open()
            return await self.watch.generation()
        return await self._counter.get(arrived)

    def forget_generation(self) -> None:
        """Read the counter anew for this process's next request (after a change it made)."""
        self._counter.forget()
        if self.watch is not None:
            self.watch.forget()

    async def _notify(self, payload: str) -> None:
        await (await self.connection()).fetchrow(_NOTIFY, CHANNEL, payload)

    async def _read_generation(self) -> int:
        row = await (await self.connection()).fetchrow(_GENERATION)
        assert row is not None  # created with the tables, never deleted
        return int(row[0])

    async def _cached(
        self,
        key: tuple[Any, ...],
        generation: int | None,
        query: Callable[[SQLConnection], Awaitable[Any]],
    ) -> Any:
        """`query`'s answer, from memory while the generation is the one it was read at.

        `generation` is read before the query runs, so an answer is never older than its tag:
        a tag that still matches means nothing has changed since the answer was read.  Pass
        the generation a request has already read to answer all its questions from one
        snapshot with one statement; `None` reads it anew.
        """
        db = await self.connection()
        if generation is None:
            generation = await self.generation()
        hit = self._cache.get(key)
        if hit is not None and hit[0] == generation:
            return hit[1]
        value = await query(db)
        if len(self._cache) >= _CACHE_ENTRIES:
            self._cache.clear()
        self._cache[key] = (generation, value)
        return value

    async def user_for_token(self, key: str, *, generation: int | None = None) -> User | None:
        """The user whose API key is `key`, or `None` (as of `generation`, see `_cached`)."""

        async def query(db: SQLConnection) -> User | None:
            row = await db.fetchrow(_USER_BY_TOKEN, hash_token(key))
            return None if row is None else User(row[0], row[1])

        # Cached by the key itself, which this process holds anyway while it answers: the
        # hash protects copies of the database, and hashing on every request cost 2-3 us.
        user: User | None = await self._cached(("token", key), generation, query)
        return user

    async def user_named(self, username: str, *, generation: int | None = None) -> User | None:
        """The user `username` (a JWT's `sub`), or `None` (as of `generation`, see `_cached`)."""

        async def query(db: SQLConnection) -> User | None:
            row = await db.fetchrow(_USER_BY_NAME, username)
            return None if row is None else User(row[0], row[1])

        user: User | None = await self._cached(("user", username), generation, query)
        return user

    async def access(
        self,
        user_id: int,
        platform_key: str,
        target: str | None,
        *,
        generation: int | None = None,
    ) -> PlatformAccess:
        """The standing of user `user_id` on `platform_key`, and whether `target` is a member
        (as of `generation`, see `_cached`)."""

        async def query(db: SQLConnection) -> PlatformAccess:
            row = await db.fetchrow(_ACCESS, platform_key, user_id, target)
            if row is None:
                return PlatformAccess(platform_exists=False)
            is_admin, target_is_member = row
            return PlatformAccess(
                platform_exists=True,
                is_member=is_admin is not None,
                is_admin=bool(is_admin),
                target_is_member=target is not None and bool(target_is_member),
            )

        access: PlatformAccess = await self._cached(
            ("access", user_id, platform_key, target), generation, query
        )
        return access

    async def has_platforms(self) -> bool:
        row = await (await self.connection()).fetchrow(_HAS_PLATFORMS)
        return row is not None and bool(row[0])

    @forgets_generation
    async def add_platform(self, key: str) -> bool:
        """Create platform `key`; `False` when it already existed (nothing changes)."""
        row = await (await self.connection()).fetchrow(_ADD_PLATFORM, key)
        return row is not None

    async def add_user(self, username: str, platform_key: str, *, admin: bool = False) -> str:
        """Create `username` if new, make it a member (admin or not) of `platform_key`, and
        return a new API key for it.  Earlier keys stay valid.

        Raises:
            UnknownPlatform: no platform has that key; nothing was changed.
        """
        # One user is a batch of one: a single code path writes users (bulk.py).
        return (await self.add_users(platform_key, [(username, admin)]))[0]

    @forgets_generation
    async def add_users(
        self, platform_key: str, users: Sequence[tuple[str, bool]]
    ) -> list[str]:
        """Create each `(username, admin)` of `users` if new, make it a member (admin or not)
        of `platform_key`, and return a new API key for each, in the same order: all in one
        transaction (all or nothing), of a few statements per thousand users (bulk.py), so
        any count fits.  Earlier keys stay valid.

        Raises:
            UnknownPlatform: no platform has that key; nothing was changed.
        """
        keys = [new_token() for _ in users]
        db = await self.connection()
        # A deadline that grows with the count: any number of users fits in one transaction.
        timeout = db.busy_timeout + bulk.SECONDS_PER_USER * len(users)
        async with db.transaction(timeout=timeout) as tx:
            platform = await tx.fetchrow(_PLATFORM_ID, platform_key)
            if platform is None:
                raise UnknownPlatform(platform_key)
            hashes = [hash_token(key) for key in keys]
            await bulk.add_users(tx, db.dialect, platform[0], users, hashes)
        return keys

    async def members(self, platform_key: str) -> list[Membership]:
        """The members of `platform_key` by username (`Membership.key` is the username).

        Raises:
            UnknownPlatform: no platform has that key.
        """
        async with (await self.connection()).transaction() as tx:
            platform = await tx.fetchrow(_PLATFORM_ID, platform_key)
            if platform is None:
                raise UnknownPlatform(platform_key)
            rows = await tx.fetch(_MEMBERS, platform[0])
        return [Membership(row[0], bool(row[1])) for row in rows]

    async def members_among(self, platform_key: str, usernames: Sequence[str]) -> set[str]:
        """The names among `usernames` that are members of `platform_key` now, in one
        statement (none for an unknown platform)."""
        db = await self.connection()
        rows = await db.fetch(_MEMBERS_AMONG[db.dialect], platform_key, json.dumps(list(usernames)))
        return {row[0] for row in rows}

    async def memberships(self, user_id: int) -> list[Membership]:
        """The platforms user `user_id` belongs to, by key, with its admin flag on each."""
        rows = await (await self.connection()).fetch(_MEMBERSHIPS, user_id)
        return [Membership(row[0], bool(row[1])) for row in rows]

    async def suggested_users(self, prefer_platform: str) -> tuple[str, list[Membership]]:
        """A platform (`prefer_platform` if it exists, else the oldest) and its members, plain
        members first: whom `serve` suggests to `add-user` on a database that has data."""
        db = await self.connection()
        row = await db.fetchrow(_FIRST_PLATFORM, prefer_platform)
        if row is None:
            return "", []
        rows = await db.fetch(_SOME_MEMBERS, row[0])
        return row[0], [Membership(r[0], bool(r[1])) for r in rows]

    @forgets_generation
    async def remove_user(self, username: str, platform_key: str) -> None:
        """End `username`'s membership of `platform_key`.  The user, its tokens (for its other
        platforms) and its stored metadata stay.

        Raises:
            UnknownPlatform: no platform has that key.
            UnknownUser: the user is not a member of it; nothing was changed.
        """
        async with (await self.connection()).transaction() as tx:
            platform = await tx.fetchrow(_PLATFORM_ID, platform_key)
            if platform is None:
                raise UnknownPlatform(platform_key)
            if await tx.fetchrow(_REMOVE_MEMBERSHIP, platform[0], username) is None:
                raise UnknownUser(username)

    @forgets_generation
    async def revoke_token(self, key: str) -> bool:
        """Delete API key `key`; `False` when no such key exists.  The next request made
        with it gets 401, in every worker (the generation counter moves)."""
        return await (await self.connection()).fetchrow(_REVOKE_TOKEN, hash_token(key)) is not None

    @forgets_generation
    async def revoke_tokens_of(self, username: str) -> int:
        """Delete every API key of `username`, and say how many there were.

        Raises:
            UnknownUser: no user has that name.
        """
        async with (await self.connection()).transaction() as tx:
            row = await tx.fetchrow(_USER_EXISTS, username)
            if not row[0]:
                raise UnknownUser(username)
            return len(await tx.fetch(_REVOKE_TOKENS_OF, username))
