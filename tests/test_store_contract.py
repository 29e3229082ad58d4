"""The `Store` contract, checked on every store through the store API itself.

Parametrized over `MemoryStore`, `DatabaseStore` on SQLite and, when `TEST_POSTGRES_URL` is set,
on PostgreSQL (the `store` fixture of conftest.py).  A third-party store defined here, a plain
class inheriting nothing, proves that the protocol is all a host needs to plug in its own.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from starlette_platform_metadata import (
    ANY_RECORD,
    DatabaseStore,
    DocumentTooLarge,
    Expect,
    PlatformMetadataApp,
    PreconditionFailed,
    Record,
    Store,
)
from starlette_platform_metadata.__main__ import main as cli_main
from starlette_platform_metadata.payload import dump
from starlette_platform_metadata.stores.base import EMPTY, NO_RECORD, utcnow

from .conftest import DATABASE_KINDS, POSTGRES_URL, URL, FakeAuth

pytestmark = pytest.mark.anyio

P, U = "acme-corp", "john_doe"

AWKWARD: dict[str, Any] = {
    "k" * 2000: "a very long key",
    "ключ 鍵 🔑": "a Unicode key",
    "a.b": "dot",
    "$set": "dollar",
    'say "hi"': "quote",
    "[0]": "brackets",
    "back\\slash": "backslash",
    "tab\tand\nnewline": "control characters in a key",
    "one_float": 1.0,
    "one_int": 1,
    "negative_zero": -0.0,
    "huge": 1e300,
    "e16": 1e16,
    "tiny": 1.5e-10,
    "subnormal": 5e-324,
    "max_float": 1.7976931348623157e308,
    "int64_max": 2**63 - 1,
    "int64_min_plus_one": -(2**63 - 1),
    "int64_min": -(2**63),
    "zero": 0,
    "empty_string": "",
    "empty_list": [],
    "empty_object": {},
    "bools_and_null": [True, False, None],
    "nested": {"a": [1, [2.5, [3, {"b": None, "": ""}]]], "z": {"y": {"x": "deep"}}},
    "emoji": "😀👍🏽🇺🇦",
    "separators": "line\u2028paragraph\u2029end",
    "controls": "\x01\x1f\x7f\u0085",
    "escapes": '"\\/\b\f\n\r\t',
    "mixed_list": [1, 1.0, -0.0, "1", None, {"k": [1e300]}],
}


def same(a: Any, b: Any) -> bool:
    """Equal as parsed JSON, types included: 1 is not 1.0, and -0.0 is not 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def size(document: Mapping[str, Any]) -> int:
    return len(dump(document).encode())


async def test_get_of_nothing_is_empty_version_zero(store: Store) -> None:
    record = await store.get(P, U)
    assert record == EMPTY
    assert (record.metadata, record.version, record.exists) == ({}, 0, False)
    assert record.created_at is None and record.updated_at is None


async def test_patch_creates_the_record(store: Store) -> None:
    record = await store.patch(P, U, {"theme": "dark"}, [])
    assert record.metadata == {"theme": "dark"}
    assert record.version == 1 and record.exists
    assert isinstance(record.created_at, datetime) and record.created_at.utcoffset() is not None
    assert record.created_at == record.updated_at
    assert await store.get(P, U) == record


async def test_patch_deletes_first_then_sets_and_keeps_other_keys(store: Store) -> None:
    first = await store.patch(P, U, {"a": 1, "b": 2, "c": 3}, [])
    record = await store.patch(P, U, {"b": "new", "d": 4}, ["b", "a", "missing"])
    assert record.metadata == {"c": 3, "b": "new", "d": 4}
    assert record.version == first.version + 1
    assert record.created_at == first.created_at
    assert record.updated_at is not None and first.updated_at is not None
    assert record.updated_at >= first.updated_at


async def test_patch_with_only_deletes_on_nothing_creates_an_empty_record(store: Store) -> None:
    record = await store.patch(P, U, {}, ["x"])
    assert (record.metadata, record.version, record.exists) == ({}, 1, True)


async def test_replace_replaces_everything_and_creates(store: Store) -> None:
    created = await store.replace(P, U, {"a": 1, "b": 2})
    assert (created.metadata, created.version) == ({"a": 1, "b": 2}, 1)
    assert created.created_at == created.updated_at
    record = await store.replace(P, U, {"c": [3]})
    assert (record.metadata, record.version) == ({"c": [3]}, 2)
    assert record.created_at == created.created_at
    assert (await store.replace(P, U, {})).metadata == {}


async def test_delete_leaves_a_tombstone_with_a_bumped_version(store: Store) -> None:
    await store.patch(P, U, {"a": 1}, [])
    stored = await store.patch(P, U, {"b": 2}, [])
    await store.delete(P, U)
    gone = await store.get(P, U)
    assert (gone.metadata, gone.created_at, gone.updated_at) == ({}, None, None)
    assert not gone.exists
    assert gone.version == stored.version + 1
    await store.delete(P, U)
    assert await store.get(P, U) == gone, "deleting nothing changes nothing"
    again = await store.patch(P, U, {"c": 3}, [])
    assert again.metadata == {"c": 3}
    assert again.version == gone.version + 1
    assert again.created_at == again.updated_at
    assert stored.created_at is not None and again.created_at is not None
    assert again.created_at >= stored.created_at


async def test_delete_of_nothing_succeeds_and_keeps_version_zero(store: Store) -> None:
    await store.delete(P, U)
    assert await store.get(P, U) == EMPTY


async def test_versions_strictly_increase_and_never_name_two_states(store: Store) -> None:
    seen = [(await store.get(P, U)).version]
    for step in range(3):
        seen.append((await store.patch(P, U, {"n": step}, [])).version)
        seen.append((await store.replace(P, U, {"r": step})).version)
        await store.delete(P, U)
        seen.append((await store.get(P, U)).version)
    assert seen == sorted(set(seen)), seen
    assert seen[0] == 0


async def test_matching_expect_allows_every_write(store: Store) -> None:
    v1 = await store.patch(P, U, {"a": 1}, [], expect=Expect(frozenset({0})))
    v2 = await store.patch(P, U, {"b": 2}, [], expect=Expect(frozenset({v1.version})))
    v3 = await store.replace(P, U, {"c": 3}, expect=Expect(frozenset({7, v2.version})))
    v4 = await store.patch(P, U, {"d": 4}, [], expect=ANY_RECORD)
    v5 = await store.replace(P, U, {"e": 5}, expect=ANY_RECORD)
    assert [v.version for v in (v1, v2, v3, v4, v5)] == [1, 2, 3, 4, 5]
    await store.delete(P, U, expect=Expect(frozenset({v5.version})))
    assert not (await store.get(P, U)).exists


async def assert_every_write_refused(store: Store, expect: Expect) -> None:
    """PATCH, PUT and DELETE under `expect` each raise `PreconditionFailed` and change nothing."""
    before = await store.get(P, U)
    with pytest.raises(PreconditionFailed):
        await store.patch(P, U, {"w": 1}, [], expect=expect)
    with pytest.raises(PreconditionFailed):
        await store.replace(P, U, {"w": 2}, expect=expect)
    with pytest.raises(PreconditionFailed):
        await store.delete(P, U, expect=expect)
    assert await store.get(P, U) == before


async def test_failed_expect_changes_nothing(store: Store) -> None:
    stored = await store.patch(P, U, {"a": 1}, [])
    wrong = Expect(frozenset({stored.version + 1, 0}))
    for expect in (wrong, Expect(frozenset())):
        await assert_every_write_refused(store, expect)
    assert await store.get(P, U) == stored


async def test_any_record_requires_a_stored_record(store: Store) -> None:
    for _ in range(2):  # on nothing ever stored, then on a tombstone
        await assert_every_write_refused(store, ANY_RECORD)
        await store.patch(P, U, {"x": 1}, [])
        await store.delete(P, U)


async def test_no_record_is_create_only_also_after_a_delete(store: Store) -> None:
    """`NO_RECORD` (`If-None-Match: *`) writes on nothing ever stored and on a tombstone, and
    refuses every write, a DELETE included, while a record is stored."""
    first = await store.replace(P, U, {"a": 1}, expect=NO_RECORD)
    await assert_every_write_refused(store, NO_RECORD)
    assert await store.get(P, U) == first
    await store.delete(P, U)
    tombstone = await store.get(P, U)
    await store.delete(P, U, expect=NO_RECORD)  # nothing stored: holds, and changes nothing
    assert await store.get(P, U) == tombstone
    again = await store.patch(P, U, {"c": 3}, [], expect=NO_RECORD)
    assert again.metadata == {"c": 3} and again.version == tombstone.version + 1


async def test_negated_versions_write_unless_the_current_version_is_named(store: Store) -> None:
    """`If-None-Match: "n"` on a write: refused while the version is n, allowed otherwise."""
    stored = await store.patch(P, U, {"a": 1}, [])
    await assert_every_write_refused(store, Expect(frozenset({stored.version}), negate=True))
    other = Expect(frozenset({stored.version + 5, 0}), negate=True)
    assert (await store.replace(P, U, {"b": 2}, expect=other)).metadata == {"b": 2}
    nothing = Expect(frozenset(), negate=True)  # names no version: always holds
    assert (await store.patch(P, U, {"c": 3}, [], expect=nothing)).metadata == {"b": 2, "c": 3}


async def test_both_preconditions_must_hold(store: Store) -> None:
    """`also` joins two conditions (`If-Match` and `If-None-Match` on one request)."""
    stored = await store.patch(P, U, {"a": 1}, [])
    match = frozenset({stored.version})
    await assert_every_write_refused(store, Expect(match, also=Expect(match, negate=True)))
    await assert_every_write_refused(store, Expect(None, also=NO_RECORD))
    both = Expect(match, also=Expect(frozenset({0}), negate=True))
    assert (await store.patch(P, U, {"a": 3}, [], expect=both)).metadata == {"a": 3}


async def test_version_zero_accepts_only_nothing_ever_stored(store: Store) -> None:
    zero = Expect(frozenset({0}))
    await store.delete(P, U, expect=zero)
    assert await store.get(P, U) == EMPTY
    assert (await store.replace(P, U, {"a": 1}, expect=zero)).version == 1
    with pytest.raises(PreconditionFailed):
        await store.patch(P, U, {"a": 2}, [], expect=zero)
    await store.delete(P, U)
    await assert_every_write_refused(store, zero)  # a tombstone is not "never stored"
    assert (await store.patch("p2", "u2", {"b": 1}, [], expect=zero)).version == 1


async def test_document_too_large_changes_nothing(store: Store) -> None:
    document = {"a": "x" * 50}
    limit = size(document)
    with pytest.raises(DocumentTooLarge) as raised:
        await store.patch(P, U, document, [], max_bytes=limit - 1)
    assert raised.value.limit == limit - 1
    with pytest.raises(DocumentTooLarge):
        await store.replace(P, U, document, max_bytes=limit - 1)
    assert await store.get(P, U) == EMPTY, "a refused first write creates nothing"

    stored = await store.patch(P, U, document, [], max_bytes=limit)
    assert stored.metadata == document, "exactly at the limit is accepted"
    with pytest.raises(DocumentTooLarge):
        await store.patch(P, U, {"b": 1}, [], max_bytes=limit)
    with pytest.raises(DocumentTooLarge):
        await store.replace(P, U, {"a": "x" * 51}, max_bytes=limit)
    assert await store.get(P, U) == stored


async def test_max_bytes_counts_the_resulting_document_in_utf8(store: Store) -> None:
    await store.patch(P, U, {"old": "y" * 100}, [])
    result = {"é": "😀" * 10}
    limit = size(result)
    assert limit > len(dump(result)), "multi-byte characters count by their UTF-8 bytes"
    record = await store.patch(P, U, result, ["old"], max_bytes=limit)
    assert record.metadata == result, "deleted keys no longer count"
    with pytest.raises(DocumentTooLarge):
        await store.patch(P, U, {"é": "😀" * 11}, [], max_bytes=limit)


async def test_awkward_values_round_trip_identically(store: Store) -> None:
    written = await store.replace(P, U, AWKWARD)
    read = await store.get(P, U)
    for record in (written, read):
        assert same(record.metadata, AWKWARD)
        assert record.metadata_json == dump(AWKWARD), "rendered as every store renders it"


async def test_awkward_values_survive_a_patch_merge(store: Store) -> None:
    await store.patch(P, U, AWKWARD, [])
    record = await store.patch(P, U, {"added": 1e300, "$set": -0.0}, ["a.b", "[0]"])
    expected = {k: v for k, v in AWKWARD.items() if k not in ("a.b", "[0]")}
    expected.update({"added": 1e300, "$set": -0.0})
    assert same((await store.get(P, U)).metadata, expected)
    assert same(record.metadata, expected)
    assert record.metadata_json == dump(expected)


async def test_awkward_keys_can_be_deleted(store: Store) -> None:
    await store.patch(P, U, AWKWARD, [])
    record = await store.patch(P, U, {}, list(AWKWARD)[:8])
    assert list(record.metadata) == list(AWKWARD)[8:]


async def test_pairs_are_isolated(store: Store) -> None:
    pairs = [("p", "u"), ("p", "v"), ("q", "u"), ("a:b", "c"), ("a", "b:c"), ("P", "u")]
    for index, (platform, user) in enumerate(pairs):
        await store.patch(platform, user, {"i": index}, [])
    await store.delete("p", "v")
    await store.replace("q", "u", {"replaced": True})
    assert (await store.get("p", "u")).metadata == {"i": 0}
    assert not (await store.get("p", "v")).exists
    assert (await store.get("q", "u")).metadata == {"replaced": True}
    for index, pair in enumerate(pairs[3:], start=3):
        record = await store.get(*pair)
        assert (record.metadata, record.version) == ({"i": index}, 1)


async def test_concurrent_first_writes_all_land_in_one_record(store: Store) -> None:
    writers = 12
    await asyncio.gather(*(store.patch(P, U, {f"k{i}": i}, []) for i in range(writers)))
    record = await store.get(P, U)
    assert record.metadata == {f"k{i}": i for i in range(writers)}
    assert record.version == writers


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
            *(workers[i % 2].patch(P, U, {f"k{i}": i}, []) for i in range(10)),
            *(workers[i % 2].patch(P, "other", {"n": i}, []) for i in range(4)),
        )
        for worker in workers:
            record = await worker.get(P, U)
            assert record.metadata == {f"k{i}": i for i in range(10)}
            assert record.version == 10
            assert (await worker.get(P, "other")).version == 4
    finally:
        for worker in workers:
            await worker.disconnect()


async def test_concurrent_conditional_writes_let_exactly_one_win(store: Store) -> None:
    stored = await store.patch(P, U, {"n": 0}, [])
    expect = Expect(frozenset({stored.version}))

    async def attempt(i: int) -> bool:
        try:
            await store.patch(P, U, {"n": i}, [], expect=expect)
        except PreconditionFailed:
            return False
        return True

    outcomes = await asyncio.gather(*(attempt(i) for i in range(1, 9)))
    assert outcomes.count(True) == 1
    assert (await store.get(P, U)).version == stored.version + 1


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


# A store the way a third party writes one: plain dicts, no base class, nothing imported from
# the package but the value types and exceptions the protocol names.
class DictStore:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Record] = {}
        self.calls: list[str] = []

    async def get(self, platform_key: str, username: str) -> Record:
        self.calls.append("get")
        return self.rows.get((platform_key, username), EMPTY)

    def _check(self, key: tuple[str, str], expect: Expect | None) -> Record:
        current = self.rows.get(key, EMPTY)
        if expect is not None and not expect.admits(current):
            raise PreconditionFailed()
        return current

    def _put(self, key: tuple[str, str], document: dict[str, Any], max_bytes: int | None) -> Record:
        current = self.rows.get(key, EMPTY)
        text = dump(document)
        if max_bytes is not None and len(text.encode()) > max_bytes:
            raise DocumentTooLarge(max_bytes)
        now = utcnow()
        self.rows[key] = Record(text, current.version + 1, current.created_at or now, now)
        return self.rows[key]

    async def patch(
        self,
        platform_key: str,
        username: str,
        set: Mapping[str, Any],
        delete: Sequence[str],
        *,
        expect: Expect | None = None,
        max_bytes: int | None = None,
    ) -> Record:
        self.calls.append("patch")
        key = (platform_key, username)
        document = self._check(key, expect).metadata
        for name in delete:
            document.pop(name, None)
        return self._put(key, {**document, **set}, max_bytes)

    async def replace(
        self,
        platform_key: str,
        username: str,
        metadata: Mapping[str, Any],
        *,
        expect: Expect | None = None,
        max_bytes: int | None = None,
    ) -> Record:
        self.calls.append("replace")
        key = (platform_key, username)
        self._check(key, expect)
        return self._put(key, dict(metadata), max_bytes)

    async def delete(
        self, platform_key: str, username: str, *, expect: Expect | None = None
    ) -> None:
        self.calls.append("delete")
        key = (platform_key, username)
        current = self._check(key, expect)
        if current.exists:
            self.rows[key] = Record("{}", current.version + 1, None, None)


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
    assert {"get", "patch", "replace", "delete"} <= set(store.calls)
    assert store.rows[(P, U)].version == 3


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
            await store.patch(P, U, {"a": 1}, [])
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
            await store.patch(P, U, {"a": 1}, [])
            assert (await store.get(P, U)).metadata == {"a": 1}
        missing = DatabaseStore(POSTGRES_URL, table=f"missing_{table}", create_tables=False)
        with pytest.raises(RuntimeError, match="missing"):
            await missing.get(P, U)
        await missing.disconnect()
    finally:
        await connection.close()


@pytest.mark.skipif(POSTGRES_URL is None, reason="TEST_POSTGRES_URL is not set")
async def test_postgres_patch_under_contention_queues_on_the_row_lock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PATCHes that lose the compare-and-set race retry under the row lock and all land."""
    from starlette_platform_metadata.stores.dialects import PostgresEngine

    assert POSTGRES_URL is not None
    locked: list[str] = []
    original = PostgresEngine._swap

    async def spy(self: PostgresEngine, raw: Any, *args: Any) -> Any:
        if raw.is_in_transaction():
            locked.append("locked")
        return await original(self, raw, *args)

    monkeypatch.setattr(PostgresEngine, "_swap", spy)
    pool = ("&" if "?" in POSTGRES_URL else "?") + "min_size=8&max_size=8"
    store = DatabaseStore(POSTGRES_URL + pool, table=f"c_{uuid.uuid4().hex[:12]}")
    try:
        writers = 60
        records = await asyncio.gather(
            *(store.patch(P, U, {f"k{i}": i}, []) for i in range(writers))
        )
        assert sorted(r.version for r in records) == list(range(1, writers + 1))
        assert (await store.get(P, U)).metadata == {f"k{i}": i for i in range(writers)}
        assert locked, "no PATCH lost a race: the contended path was not exercised"
    finally:
        await store.disconnect()
