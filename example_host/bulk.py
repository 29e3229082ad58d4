"""`HostDB.add_users`' statements: many users in one transaction, three statements a batch.

One statement per user and table (the way `add_user` does it) made 5,000 users 15,000 round
trips, each firing the generation counter's trigger: on PostgreSQL that is 15,000 updates of
one row in one transaction, a chain of row versions that every update walks again, so the
time grew with the square of the count (1,000 users 0.3 s, 4,000 3 s, 8,000 11 s) and 5,000
ran past the transaction's 5 s deadline.  Here each batch of users is a JSON array that one
statement per table expands: the counter moves three times a batch, and the time is linear.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from starlette_platform_metadata.stores.connections import SQLTransaction

__all__ = ["BATCH", "SECONDS_PER_USER", "add_users"]

#: Users per statement: a bounded statement (asyncpg bounds each by `busy_timeout` too) and a
#: bounded JSON parameter, whatever the count.
BATCH = 1000
#: The transaction's deadline grows by this per user, past `busy_timeout`: a batch of 1,000
#: took 30-60 ms on PostgreSQL here (two busy cores), a margin of some 20 times.
SECONDS_PER_USER = 0.001

# The rows `(name, value)` of a JSON array of pairs, the parameter `{array}`: the one part the
# dialects write differently.  The value is text on PostgreSQL, the JSON scalar on SQLite; a
# CAST makes either the column's type.
_PAIRS = {
    "sqlite": (
        "SELECT json_extract(value, '$[0]') AS name, json_extract(value, '$[1]') AS value "
        "FROM json_each({array})"
    ),
    "postgresql": (
        "SELECT e->>0 AS name, e->>1 AS value FROM json_array_elements({array}::json) AS e"
    ),
}
# `WHERE true`: without it SQLite cannot tell an upsert's ON CONFLICT from a join's ON.
_USERS = (
    "INSERT INTO users (username) SELECT p.name FROM ({pairs}) AS p "
    "WHERE true ON CONFLICT (username) DO NOTHING"
)
_MEMBERSHIPS = (  # $1: the platform's id
    "INSERT INTO memberships (user_id, platform_id, is_admin) "
    "SELECT u.id, $1, CAST(p.value AS BOOLEAN) FROM ({pairs}) AS p "
    "JOIN users u ON u.username = p.name WHERE true "
    "ON CONFLICT (user_id, platform_id) DO UPDATE SET is_admin = excluded.is_admin"
)
_TOKENS = (
    "INSERT INTO tokens (key_hash, user_id) SELECT p.value, u.id FROM ({pairs}) AS p "
    "JOIN users u ON u.username = p.name"
)
_SQL = {
    dialect: (
        _USERS.format(pairs=pairs.format(array="$1")),
        _MEMBERSHIPS.format(pairs=pairs.format(array="$2")),
        _TOKENS.format(pairs=pairs.format(array="$1")),
    )
    for dialect, pairs in _PAIRS.items()
}


async def add_users(
    tx: SQLTransaction,
    dialect: str,
    platform_id: int,
    users: Sequence[tuple[str, bool]],
    key_hashes: Sequence[str],
) -> None:
    """Inside `tx`: create the users of `users` (`(username, admin)`) that are new, make each
    a member of `platform_id` with its admin flag, and store its key hash (`key_hashes`, in
    the same order).  A name given twice ends as two `add_user` calls in a row do: the later
    flag, and both keys."""
    users_sql, memberships_sql, tokens_sql = _SQL[dialect]
    # The last flag given for each name, as successive `add_user` calls would leave it (an
    # upsert may not touch one row twice in a statement).
    roles = list(dict(users).items())
    for start in range(0, len(roles), BATCH):
        batch = json.dumps(roles[start : start + BATCH])
        await tx.fetch(users_sql, batch)
        await tx.fetch(memberships_sql, platform_id, batch)
    keys = [(username, key_hash) for (username, _), key_hash in zip(users, key_hashes, strict=True)]
    for start in range(0, len(keys), BATCH):
        await tx.fetch(tokens_sql, json.dumps(keys[start : start + BATCH]))
