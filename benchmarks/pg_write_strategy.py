"""PostgreSQL writes: the row lock `PostgresEngine` uses against compare-and-set, same run.

    scripts/with-postgres .venv/bin/python benchmarks/pg_write_strategy.py

64 concurrent writers through the store API (no HTTP), on one row and on 64 rows, 3 rounds of
4 s each alternating which strategy goes first; prints the median writes/s and latencies.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from typing import Any

from starlette_platform_metadata import DatabaseStore, Record, changes
from starlette_platform_metadata.stores import Change
from starlette_platform_metadata.stores.sql.postgres import PostgresEngine

WRITERS = 64
SECONDS = 4.0
ROUNDS = 3


class CompareAndSetEngine(PostgresEngine):
    """The alternative: read, change, then a conditional upsert; read again on a lost race."""

    def __init__(self, connection: Any, table: str) -> None:
        super().__init__(connection, table)
        self._swap_sql = (
            f"INSERT INTO {table} AS r (platform_key, username, metadata, version, created_at, "
            "updated_at) VALUES ($1, $2, $3::json, $4, $5, $6) "
            "ON CONFLICT (platform_key, username) DO UPDATE SET metadata = excluded.metadata, "
            "version = excluded.version, created_at = excluded.created_at, "
            "updated_at = excluded.updated_at WHERE r.version = $7 RETURNING version"
        )

    async def update(self, platform_key: str, username: str, change: Change) -> Record:
        async with self.connection.session() as raw:
            while True:
                current = self._record(await raw.fetchrow(self._get_sql, platform_key, username))
                write = change(current)
                if write is None:
                    return current
                r = write.record
                swapped = await raw.fetchval(
                    self._swap_sql,
                    platform_key,
                    username,
                    r.metadata_json if r.exists else None,
                    r.version,
                    r.created_at,
                    r.updated_at,
                    current.version,
                )
                if swapped is not None:
                    return r


async def measure(strategy: str, users: int) -> tuple[float, float, float]:
    """Writes/s, p50 and p99 in ms, for one strategy over `users` rows."""
    url = os.environ["TEST_POSTGRES_URL"] + "?min_size=10&max_size=10"
    store = DatabaseStore(url, table=f"bench_{uuid.uuid4().hex[:8]}")
    await store.connect()
    if strategy == "compare-and-set":
        store._engine = CompareAndSetEngine(store.connection, store.table)  # noqa: SLF001
    latencies: list[float] = []
    stop = time.monotonic() + SECONDS

    async def writer(i: int) -> None:
        n = 0
        while time.monotonic() < stop:
            started = time.monotonic()
            await store.update("p", f"u{i % users}", changes.patch({f"k{n % 8}": n}))
            latencies.append(time.monotonic() - started)
            n += 1

    started = time.monotonic()
    await asyncio.gather(*(writer(i) for i in range(WRITERS)))
    elapsed = time.monotonic() - started
    await store.disconnect()
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    return len(latencies) / elapsed, p50, p99


async def main() -> None:
    for users in (1, WRITERS):
        results: dict[str, list[tuple[float, float, float]]] = {"row lock": [], "compare-and-set": []}
        for round_ in range(ROUNDS):
            order = list(results) if round_ % 2 == 0 else list(reversed(results))
            for strategy in order:
                results[strategy].append(await measure(strategy, users))
        for strategy, runs in results.items():
            rate = statistics.median(r[0] for r in runs)
            p50 = statistics.median(r[1] for r in runs)
            p99 = statistics.median(r[2] for r in runs)
            print(
                f"{users:2d} row(s)  {strategy:15s}  {rate:6.0f} writes/s  p50 {p50:5.1f} ms  "
                f"p99 {p99:5.1f} ms  runs {[round(r[0]) for r in runs]}"
            )


if __name__ == "__main__":
    asyncio.run(main())
