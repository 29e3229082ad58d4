"""The `Store` contract on every store of the package, and what plugs in around it.

The contract itself is `starlette_platform_metadata.testing.StoreContract`, the kit a third
party runs against its own store; here it runs over `MemoryStore`, `DatabaseStore` on SQLite
and, when `TEST_POSTGRES_URL` is set, on PostgreSQL (conftest's `store` fixture), and over a
store written the way a stranger would, from nothing but public names.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from starlette_platform_metadata import DatabaseStore, PlatformMetadataApp, Record, Store, changes
from starlette_platform_metadata.stores import EMPTY, Change, Write
from starlette_platform_metadata.__main__ import main as cli_main
from starlette_platform_metadata.testing import (
    AWKWARD,
    ChangeReaderContract,
    GuardedWriterContract,
    HealthCheckerContract,
    HistoryContract,
    ManyReaderContract,
    ManyWriterContract,
    RecordsContract,
    StoreContract,
    same,
)

from .conftest import DATABASE_KINDS, POSTGRES_URL, URL, FakeAuth

pytestmark = pytest.mark.anyio

P, U = "acme-corp", "john_doe"


class TestEveryStore(
    StoreContract,
    RecordsContract,
    ManyReaderContract,
    ManyWriterContract,
    HistoryContract,
    ChangeReaderContract,
    HealthCheckerContract,
    GuardedWriterContract,
):
    """The kit over conftest's `store` fixture: memory, SQLite, PostgreSQL."""


# A store the way a third party writes one: a dict and a lock, nothing inherited, nothing
# imported but public names.
class DictStore:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Record] = {}
        self.lock = asyncio.Lock()
        self.calls: list[str] = []

    async def get(self, platform_key: str, username: str) -> Record:
        self.calls.append("get")
        return self.rows.get((platform_key, username), EMPTY)

    async def update(self, platform_key: str, username: str, change: Change) -> Record:
        self.calls.append("update")
        key = (platform_key, username)
        async with self.lock:
            current = self.rows.get(key, EMPTY)
            write = change(current)
            if write is None:
                return current
            self.rows[key] = write.record
            return write.record


class TestDictStore(StoreContract):
    @pytest.fixture
    def store(self) -> DictStore:
        return DictStore()


async def test_a_third_party_store_plugs_into_the_app() -> None:
    store = DictStore()
    assert isinstance(store, Store)
    auth = FakeAuth()
    headers = auth.add(P, U)
    app = Starlette(
        routes=[Mount(URL.rstrip("/"), app=PlatformMetadataApp(auth=auth, store=store))]
    )
    params = {"platform_key": P}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        empty = await client.get(URL, params=params, headers=headers)
        assert empty.status_code == 200
        assert empty.json()["metadata"] == {} and empty.json()["created_at"] is None
        patched = await client.patch(
            URL, params=params, headers=headers, json={"metadata": {"a": 1, "b": 2}}
        )
        assert patched.status_code == 200 and patched.json()["metadata"] == {"a": 1, "b": 2}
        put = await client.put(URL, params=params, headers=headers, json={"metadata": {"c": 3}})
        assert put.json()["metadata"] == {"c": 3}
        stale = await client.put(
            URL,
            params=params,
            headers={**headers, "If-Match": patched.headers["ETag"]},
            json={"metadata": {}},
        )
        assert stale.status_code == 412
        assert (await client.delete(URL, params=params, headers=headers)).status_code == 204
        after = await client.get(URL, params=params, headers=headers)
        assert after.json()["metadata"] == {} and after.json()["updated_at"] is None
    assert {"get", "update"} <= set(store.calls)
    assert store.rows[(P, U)].version == 3



@pytest.mark.parametrize("kind", DATABASE_KINDS)
async def test_first_writes_racing_from_two_processes_end_in_one_row(
    kind: str, tmp_path: Path
) -> None:
    """Two stores on one database stand for two worker processes with their own connections."""
    if kind == "sqlite":
        url, table = f"sqlite:///{tmp_path / 'shared.db'}", "platform_metadata"
    else:
        assert POSTGRES_URL is not None
        url, table = f"{POSTGRES_URL}?min_size=1&max_size=4", f"t_{uuid.uuid4().hex[:12]}"
    workers = [DatabaseStore(url, table=table) for _ in range(2)]
    try:
        for worker in workers:
            await worker.connect()
        await asyncio.gather(
            *(workers[i % 2].update(P, U, changes.patch({f"k{i}": i})) for i in range(10)),
            *(workers[i % 2].update(P, "other", changes.patch({"n": i})) for i in range(4)),
        )
        for worker in workers:
            record = await worker.get(P, U)
            assert record.metadata == {f"k{i}": i for i in range(10)}
            assert record.version == 10
            assert (await worker.get(P, "other")).version == 4
    finally:
        for worker in workers:
            await worker.disconnect()


async def test_http_round_trip_of_awkward_values(
    client: httpx.AsyncClient, acme: dict[str, dict[str, str]]
) -> None:
    document = {k: v for k, v in AWKWARD.items() if len(k) <= 256 and "\t" not in k}
    put = await client.put(
        URL, params={"platform_key": P}, headers=acme["john"], json={"metadata": document}
    )
    assert put.status_code == 200, put.text
    got = await client.get(URL, params={"platform_key": P}, headers=acme["john"])
    assert same(got.json()["metadata"], document)
    assert same(put.json()["metadata"], document)


async def test_sqlite_reads_the_policy_and_the_record_without_a_temporary_table(
    tmp_path: Path,
) -> None:
    """A GET reads two rows (the platform's policy and the user's) in one statement: two
    primary-key searches.  `username IN (?2, ?3)` would first build a temporary table of the
    list (an `OpenEphemeral` in SQLite's program), a quarter of the statement's time."""
    store = DatabaseStore(f"sqlite:///{tmp_path / 'many.db'}")
    try:
        await store.connect()
        engine = store._engine  # the SQL text the store runs, as data for EXPLAIN
        await store.get_many("p", ["\x01policy", "u"])  # builds the two-name statement
        sql = engine._many_sql[2]
        program = await store.connection.fetch("EXPLAIN " + sql, "p", "\x01policy", "u")
        plan = await store.connection.fetch("EXPLAIN QUERY PLAN " + sql, "p", "\x01policy", "u")
    finally:
        await store.disconnect()
    opcodes = {row[1] for row in program}
    assert "OpenEphemeral" not in opcodes, sorted(opcodes)
    searches = [row[-1] for row in plan if "SEARCH" in str(row[-1])]
    assert len(searches) == 2 and all("username=?" in str(s) for s in searches), plan


def test_schema_command_prints_ddl_that_creates_working_tables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m starlette_platform_metadata schema` prints what `create_tables=False` needs."""
    path = tmp_path / "pre.db"
    url = f"sqlite:///{path}"
    assert cli_main(["schema", "--database", url, "--table", "meta"]) == 0
    ddl = capsys.readouterr().out
    assert "CREATE TABLE IF NOT EXISTS meta (" in ddl and "meta_schema" in ddl
    with sqlite3.connect(path) as connection:
        connection.executescript(ddl)

    async def use() -> Record:
        async with DatabaseStore(url, table="meta", create_tables=False) as store:
            await store.update(P, U, changes.patch({"a": 1}))
            return await store.get(P, U)

    assert asyncio.run(use()).metadata == {"a": 1}


def test_schema_command_runs_as_a_module() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "starlette_platform_metadata",
            "schema",
            "--database",
            "postgresql://user@127.0.0.1/db",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    statements = result.stdout.strip().split(";\n")
    assert statements[0].startswith("CREATE TABLE IF NOT EXISTS platform_metadata (")
    assert (
        "metadata JSON" in statements[0] and "PRIMARY KEY (platform_key, username)" in statements[0]
    )
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "starlette_platform_metadata",
            "schema",
            "--database",
            "mysql://h/d",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "Unsupported database" in bad.stderr


@pytest.mark.skipif(POSTGRES_URL is None, reason="TEST_POSTGRES_URL is not set")
async def test_postgres_tables_created_ahead_of_time() -> None:
    """On PostgreSQL, the printed DDL is all a `create_tables=False` store needs."""
    import asyncpg

    assert POSTGRES_URL is not None
    table = f"pre_{uuid.uuid4().hex[:12]}"
    store = DatabaseStore(POSTGRES_URL, table=table, create_tables=False)
    connection = await asyncpg.connect(POSTGRES_URL)
    try:
        for statement in store.schema():
            await connection.execute(statement)
        async with store:
            await store.update(P, U, changes.patch({"a": 1}))
            assert (await store.get(P, U)).metadata == {"a": 1}
        missing = DatabaseStore(POSTGRES_URL, table=f"missing_{table}", create_tables=False)
        with pytest.raises(RuntimeError, match="missing"):
            await missing.get(P, U)
        await missing.disconnect()
    finally:
        await connection.close()


@pytest.mark.skipif(POSTGRES_URL is None, reason="TEST_POSTGRES_URL is not set")
async def test_postgres_updates_under_contention_queue_on_the_row_lock() -> None:
    """Sixty writers on one row through a pool of eight, first write included: each change
    runs on the row as the writer before it left it; versions gapless, nothing lost.  Then
    sixty more on the warmed pool: the writers take turns and each one's compare-and-set
    follows the one before in the row lock, so almost every change runs once."""
    assert POSTGRES_URL is not None
    seen: list[int] = []

    def counted(i: int) -> Change:
        inner = changes.patch({f"k{i}": i})

        def change(current: Record) -> Write | None:
            seen.append(current.version)
            return inner(current)

        return change

    pool = ("&" if "?" in POSTGRES_URL else "?") + "min_size=8&max_size=8"
    store = DatabaseStore(POSTGRES_URL + pool, table=f"c_{uuid.uuid4().hex[:12]}")
    try:
        writers = 60
        records = await asyncio.gather(*(store.update(P, U, counted(i)) for i in range(writers)))
        assert sorted(r.version for r in records) == list(range(1, writers + 1))
        assert (await store.get(P, U)).metadata == {f"k{i}": i for i in range(writers)}
        # Every version was the basis of exactly one write that stored; a change runs again
        # only after losing a race (the first writes; statements prepared anew on each of
        # the pool's connections reach the row out of order until they are).
        assert sorted(set(seen)) == list(range(writers))
        seen.clear()
        records = await asyncio.gather(
            *(store.update(P, U, counted(writers + i)) for i in range(writers))
        )
        assert sorted(r.version for r in records) == list(range(writers + 1, 2 * writers + 1))
        assert sorted(set(seen)) == list(range(writers, 2 * writers))
        assert len(seen) - writers <= 8
    finally:
        await store.disconnect()


BROKEN_STORE_SUITE = '''
import dataclasses

import pytest
from starlette_platform_metadata import MemoryStore
from starlette_platform_metadata.testing import StoreContract


class OffByOne(MemoryStore):
    """Stores every record one version too high."""

    async def update(self, platform_key, username, change):
        def shifted(current):
            write = change(current)
            if write is None:
                return None
            record = dataclasses.replace(write.record, version=write.record.version + 1)
            return dataclasses.replace(write, record=record)
        return await super().update(platform_key, username, shifted)


class TestOffByOne(StoreContract):
    @pytest.fixture
    def store(self):
        return OffByOne()
'''


def test_a_failing_contract_test_shows_the_values_without_setup(tmp_path: Path) -> None:
    """A host's own suite (no conftest of ours, no register_assert_rewrite of its own) gets
    pytest's comparison of the values from the kit's asserts, through our pytest11 plugin."""
    (tmp_path / "test_my_store.py").write_text(BROKEN_STORE_SUITE)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
         "-k", "exactly_the_record", "test_my_store.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    # Rewritten: pytest shows both sides of the failed comparison (version 8 against 7).
    assert "AssertionError: assert Record(" in result.stdout, result.stdout
    assert "version: 8 != 7" in result.stdout, result.stdout
