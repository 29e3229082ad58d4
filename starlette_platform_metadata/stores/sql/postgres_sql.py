"""`WriteStatements`: every statement the PostgreSQL engine writes with, for one table.

Written once per table, as text, with `$n` parameters; postgres.py says when each runs and
with which values (`_row_values` gives `$1`-`$6` of every statement that writes a row).
"""

from __future__ import annotations

__all__ = ["WriteStatements", "batch_sql"]


class WriteStatements:
    """The engine's writing statements for `table` (`get_sql`: its one-row read)."""

    def __init__(self, table: str, get_sql: str) -> None:
        t = table
        self.lock = get_sql + " FOR UPDATE"
        self.many = (
            f"SELECT username, metadata::text, version, created_at, updated_at FROM {t} "
            "WHERE platform_key = $1 AND username = ANY($2::text[])"
        )
        self.placeholders = (
            f"INSERT INTO {t} (platform_key, username, metadata, version, created_at, "
            "updated_at) SELECT $1, u, NULL, 0, NULL, NULL FROM unnest($2::text[]) AS u "
            "ORDER BY u ON CONFLICT (platform_key, username) DO NOTHING"
        )
        self.lock_many = (
            f"SELECT 1 FROM {t} WHERE platform_key = $1 AND username = ANY($2::text[]) "
            "ORDER BY username FOR UPDATE"
        )
        self.insert = (
            f"INSERT INTO {t} (platform_key, username, metadata, version, created_at, "
            "updated_at) VALUES ($1, $2, $3::json, $4, $5, $6) "
            "ON CONFLICT (platform_key, username) DO NOTHING RETURNING version"
        )
        self.update = (
            f"UPDATE {t} SET metadata = $3::json, version = $4, created_at = $5, "
            "updated_at = $6 WHERE platform_key = $1 AND username = $2"
        )
        # With history, the revision, retention and the platform's change clock ride in the
        # same statement (data-modifying CTEs): a write keeps the round trips it had without
        # history.  `$12` is `version - keep`; the clock row is locked until COMMIT, so the
        # platform's `seq` follows commit order; NOTIFY is sent at COMMIT.
        clock = f"{t}_clock"
        h = f"{t}_history"
        self.purge = f"DELETE FROM {h} WHERE platform_key = $1 AND username = $2"
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
        self.update_revision = (
            f"WITH d AS ({trim} RETURNING seq), "
            "c AS ("
            + tick.format(source="VALUES ($1, 1, COALESCE((SELECT max(seq) FROM d), 0))")
            + f"), w AS ({self.update}), "
            + revision
            + " SELECT pg_notify($13, $1)"
        )
        # A first write: no row, so no revision to trim; the revision only if the row was
        # inserted (another writer may have won the race: then we lock its row and retry).
        self.insert_revision = (
            f"WITH i AS ({self.insert}), c AS ("
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
        self.cas_revision = (
            f"WITH w AS ({self.update}{cas}), "
            f"d AS ({trim} AND EXISTS (SELECT 1 FROM w) RETURNING seq), "
            "c AS ("
            + tick.format(
                source="SELECT $1, 1, COALESCE((SELECT max(seq) FROM d), 0) FROM w"
            )
            + "), "
            + revision
            + " SELECT pg_notify($13, $1) FROM w"
        )
        self.cas = self.update + " AND " + same.format("$7", "$8", "$9") + " RETURNING 1"
        # Guarded (`update_guarded`): also only while another record of the platform (the
        # policy's) holds the state the caller decided on; no row is version 0's state.
        guard = (
            " AND COALESCE((SELECT " + same.format("{v}", "{u}", "{d}")
            + f" FROM {t} WHERE platform_key = $1 AND username = {{n}}), {{v}} = 0)"
        )  # fmt: skip
        self.guarded_cas_revision = self.cas_revision.replace(
            cas, cas.replace(" RETURNING", guard.format(n="$17", v="$18", u="$19", d="$20")
                             + " RETURNING"), 1
        )
        self.guarded_cas = self.cas.replace(
            " RETURNING", guard.format(n="$10", v="$11", u="$12", d="$13") + " RETURNING", 1
        )
        self.batch = batch_sql(t, same, "")
        self.guarded_batch = batch_sql(
            t, same, guard.format(n="$20", v="$21", u="$22", d="$23")
        )


def batch_sql(table: str, same: str, guard: str) -> str:
    """The statement storing a `Combined`: `$1`-`$6` the row (as `_row_values`), `$7`-`$13`
    the revisions' columns as arrays, `$14` the trim, `$15` the channel, `$16` how many
    revisions, `$17`-`$19` the basis's state, then the guard's (`guard`, `$20`-`$23`)."""
    t, h, clock = table, f"{table}_history", f"{table}_clock"
    return (
        f"WITH w AS (UPDATE {t} SET metadata = $3::json, version = $4, created_at = $5, "
        "updated_at = $6 WHERE platform_key = $1 AND username = $2 AND "
        + same.format("$17", "$18", "$19") + guard + " RETURNING 1), "
        f"d AS (DELETE FROM {h} WHERE platform_key = $1 AND username = $2 AND version <= $14 "
        "AND EXISTS (SELECT 1 FROM w) RETURNING seq), "
        f"c AS (INSERT INTO {clock} AS k (platform_key, seq, horizon) "
        "SELECT $1, $16, COALESCE((SELECT max(seq) FROM d), 0) FROM w "
        "ON CONFLICT (platform_key) DO UPDATE SET seq = k.seq + $16, "
        "horizon = GREATEST(k.horizon, excluded.horizon) RETURNING seq), "
        f"r AS (INSERT INTO {h} (platform_key, username, version, operation, actor, at, "
        "metadata, changed_keys, created_at, seq) "
        "SELECT $1, $2, v.version, v.operation, v.actor, v.at, v.metadata::json, "
        "v.changed_keys, v.created_at, c.seq - $16 + v.n FROM c, "
        "unnest($7::bigint[], $8::text[], $9::text[], $10::timestamptz[], $11::text[], "
        "$12::text[], $13::timestamptz[]) WITH ORDINALITY "
        "AS v(version, operation, actor, at, metadata, changed_keys, created_at, n) "
        "ON CONFLICT (platform_key, username, version) DO UPDATE SET "
        "operation = excluded.operation, actor = excluded.actor, at = excluded.at, "
        "metadata = excluded.metadata, changed_keys = excluded.changed_keys, "
        "created_at = excluded.created_at, seq = excluded.seq) "
        "SELECT pg_notify($15, $1) FROM w"
    )  # fmt: skip
