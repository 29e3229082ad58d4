"""The admin listing, export and import on 100,000 stored records of one platform.

    .venv/bin/python benchmarks/listing.py [--records 100000] [--repeat 30]
        [--database postgresql://user:pass@host:port/db]

Fills a fresh database (a SQLite file in a temporary folder, or a new PostgreSQL database
created next to the one named, dropped afterwards) straight with SQL, as benchmarks/run.py
`--records` does (its `fill_sqlite` / `fill_postgresql`), then gives every tenth document
`"plan": "pro"` (10 %) and every thousandth `"tier": "gold"` (0.1 %).  It measures, through the
endpoint in-process (an ASGI call: parsing, the store, rendering; no server, no network):

- the first page (100 records) unfiltered, at 10 % and at 0.1 % selectivity, and the page
  after a cursor in the middle of the platform, each `--repeat` times: median and p90;
- the NDJSON export of every record (and of the 10 % for comparison), each in a child process
  of its own: time, bytes, and the child's peak RSS (`ru_maxrss`) before and after;
- an import of 10,000 lines into another platform (one transaction).

Not part of the package or the test suite.  See benchmarks/README.md, "Listing, export, import".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from run import FILLER_PREFIX, METADATA_TABLE, PLATFORM, fill_postgresql, fill_sqlite

from starlette_platform_metadata import DatabaseStore, Identity, PlatformAccess, PlatformMetadataApp

HERE = Path(__file__).resolve().parent
ADMIN = "bench_admin"
PAGE = b"platform_key=" + PLATFORM.encode()
FILTERS = {
    "unfiltered": b"",
    "10% (plan=pro)": b"&filter=%7B%22plan%22%3A%22pro%22%7D",
    "0.1% (tier=gold)": b"&filter=%7B%22tier%22%3A%22gold%22%7D",
}


class Everyone:
    """Every caller is a tenant admin and every user a member: the auth costs nothing."""

    async def authenticate(self, conn: Any) -> Identity:
        return Identity(ADMIN)

    async def access(self, identity: Identity, platform_key: str, target: str | None) -> PlatformAccess:
        return PlatformAccess(True, True, True, target is not None)

    async def members_among(
        self, identity: Identity, platform_key: str, usernames: Sequence[str]
    ) -> set[str]:
        return set(usernames)


def scope(query: bytes, ndjson: bool = False) -> dict[str, Any]:
    headers = [(b"accept", b"application/x-ndjson")] if ndjson else []
    return {
        "type": "http",
        "method": "GET",
        "path": "/users/",
        "raw_path": b"/users/",
        "root_path": "",
        "query_string": query,
        "headers": headers,
        "scheme": "http",
        "server": ("bench", 80),
        "http_version": "1.1",
    }


async def call(app: PlatformMetadataApp, query: bytes, ndjson: bool = False) -> tuple[int, int]:
    """One request: its status and the body's bytes (sent, counted, dropped)."""
    status = 0
    size = 0
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await never.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, size
        if message["type"] == "http.response.start":
            status = message["status"]
        else:
            size += len(message.get("body", b""))

    await app(scope(query, ndjson), receive, send)
    return status, size


def selectivity_sql(dialect: str) -> str:
    """Every tenth document gets plan "pro", every thousandth tier "gold"; the rest "free" and
    "basic" (the filler's number is the username's digits)."""
    n = (
        f"CAST(substr(username, {len(FILLER_PREFIX) + 1}) AS INTEGER)"
        if dialect == "sqlite"
        else f"CAST(substr(username, {len(FILLER_PREFIX) + 1}) AS BIGINT)"
    )
    plan = f"CASE WHEN {n} % 10 = 0 THEN 'pro' ELSE 'free' END"
    tier = f"CASE WHEN {n} % 1000 = 0 THEN 'gold' ELSE 'basic' END"
    where = f"WHERE platform_key = '{PLATFORM}' AND username LIKE '{FILLER_PREFIX}%'"
    if dialect == "sqlite":
        return (
            f"UPDATE {METADATA_TABLE} SET metadata = json_set(metadata, '$.plan', {plan}, "
            f"'$.tier', {tier}) {where}"
        )
    return (
        f"UPDATE {METADATA_TABLE} SET metadata = (metadata::jsonb || jsonb_build_object("
        f"'plan', {plan}, 'tier', {tier}))::json {where}"
    )


async def create_tables(url: str) -> None:
    store = DatabaseStore(url)
    await store.connect()  # the tables, and on PostgreSQL the GIN index, before the rows
    await store.disconnect()


async def postgres_selectivity(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(selectivity_sql("postgresql"))
        await conn.execute(f"VACUUM ANALYZE {METADATA_TABLE}")
    finally:
        await conn.close()


def prepare(url: str, records: int) -> None:
    asyncio.run(create_tables(url))
    started = time.monotonic()
    if url.startswith("postgresql"):
        fill_postgresql(url, records)
        asyncio.run(postgres_selectivity(url))
    else:
        import sqlite3

        path = url.removeprefix("sqlite:///")
        fill_sqlite(Path(path), records)
        with sqlite3.connect(path) as conn:
            conn.execute(selectivity_sql("sqlite"))
            conn.execute("ANALYZE")
    print(f"filled {records:,} records in {time.monotonic() - started:.1f} s", flush=True)


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 2),
        "p90_ms": round(ordered[int(len(ordered) * 0.9) - 1] * 1000, 2),
    }


async def pages(url: str, repeat: int, records: int) -> dict[str, Any]:
    store = DatabaseStore(url)
    app = PlatformMetadataApp(auth=Everyone(), store=store, openapi=False)
    middle = f"{FILLER_PREFIX}{records // 2:0{max(7, len(str(records - 1)))}d}"
    from starlette_platform_metadata.cursors import page_cursor

    cursor = b"&cursor=" + page_cursor("u", middle).encode()
    found: dict[str, Any] = {}
    try:
        for name, filter in FILTERS.items():
            for where, extra in (("first page", b""), ("middle page", cursor)):
                query = PAGE + filter + extra
                for _ in range(3):
                    await call(app, query)
                samples = []
                for _ in range(repeat):
                    started = time.perf_counter()
                    status, size = await call(app, query)
                    samples.append(time.perf_counter() - started)
                    assert status == 200, status
                found[f"{name}, {where}"] = {**summary(samples), "bytes": size}
                print(f"  {name}, {where}: {found[f'{name}, {where}']}", flush=True)
        # An import of 10,000 lines into another platform: one transaction.
        body = b"".join(
            b'{"username":"imported_%05d","metadata":{"plan":"pro","n":%d}}\n' % (i, i)
            for i in range(10_000)
        )
        started = time.perf_counter()
        imported = await app.import_records("bench-import", body, actor=ADMIN)
        found["import 10,000 lines"] = {
            "seconds": round(time.perf_counter() - started, 2),
            "imported": imported,
            "bytes": len(body),
        }
        print(f"  import: {found['import 10,000 lines']}", flush=True)
    finally:
        await store.disconnect()
    return found


async def export_child(url: str, filter: str) -> None:
    """In a child process: the export's time, size and peak RSS (KiB) before and after."""
    store = DatabaseStore(url)
    app = PlatformMetadataApp(auth=Everyone(), store=store, openapi=False)
    query = PAGE + (FILTERS[filter] if filter else b"")
    await call(app, PAGE + b"&limit=1000")  # open the store, load every module
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    status, size = await call(app, query, ndjson=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    await store.disconnect()
    assert status == 200
    print(json.dumps({"seconds": round(seconds, 2), "bytes": size, "rss_before_kib": before,
                      "rss_after_kib": after}))  # fmt: skip


def export(url: str, filter: str) -> dict[str, Any]:
    command = [sys.executable, str(HERE / "listing.py"), "--export-child", url, "--filter", filter]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    print(f"  export {filter or 'everything'}: {result}", flush=True)
    return result


async def postgres_database(url: str) -> tuple[str, str]:
    """A fresh database on the server `url` names: its URL, and its name (to drop)."""
    import asyncpg

    name = f"spm_listing_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}", name


async def drop_database(url: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        await conn.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--database", help="postgresql://... (default: a SQLite file)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--export-child", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--filter", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.export_child:
        asyncio.run(export_child(args.export_child, args.filter))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        dropped: str | None = None
        if args.database:
            url, dropped = asyncio.run(postgres_database(args.database))
        else:
            url = f"sqlite:///{tmp}/listing.db"
        try:
            prepare(url, args.records)
            results: dict[str, Any] = {
                "database": "postgresql" if args.database else "sqlite",
                "records": args.records,
                "pages": asyncio.run(pages(url, args.repeat, args.records)),
                "export": {
                    "everything": export(url, ""),
                    "10% (plan=pro)": export(url, "10% (plan=pro)"),
                },
            }
        finally:
            if dropped is not None:
                asyncio.run(drop_database(args.database, dropped))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
