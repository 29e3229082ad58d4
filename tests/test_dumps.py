"""A full-fidelity dump and load (`starlette_platform_metadata.dumps`), over every store.

The data is written through the app, as a service writes it: documents with history trimmed by
retention, a policy, a tombstone, a purged history, and the records of a user who is no longer
a member.  A dump loaded anywhere dumps again to the same bytes; a load refuses a store that
holds data and changes nothing; a bad file loads nothing.
"""

from __future__ import annotations

import io
import itertools
import json
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from starlette_platform_metadata import (
    DatabaseStore,
    MemoryStore,
    PlatformMetadataApp,
    Store,
    changes,
    dumps,
)
from starlette_platform_metadata.stores.base import POLICY_USERNAME, ManyWriter
from starlette_platform_metadata.stores.dumps import DumpError, NotEmpty
from starlette_platform_metadata.testing import DumperContract

from .conftest import (
    DATABASE_KINDS,
    STORE_KINDS,
    URL,
    FakeAuth,
    close_store,
    make_store,
)

pytestmark = pytest.mark.anyio

META = URL + "?platform_key=acme-corp"


@pytest.fixture
async def made(tmp_path: Path) -> AsyncIterator[list[Store]]:
    """Stores built with `make(kind)`, each in a folder of its own, closed afterwards."""
    stores: list[Store] = []
    yield stores
    for store in stores:
        await close_store(store)


def new_store(made: list[Store], kind: str, tmp_path: Path) -> Store:
    folder = tmp_path / f"s{len(made)}"
    folder.mkdir()
    store = make_store(kind, folder)
    made.append(store)
    return store


class TestDumperOnEveryStore(DumperContract):
    """The kit's `DumperContract` over conftest's `store` fixture: memory, SQLite, PostgreSQL."""


async def fill(store: Store) -> None:
    """Write, through the app, everything a store keeps (history kept: the newest 3)."""
    auth = FakeAuth()
    john = auth.add("acme-corp", "john_doe")
    jane = auth.add("acme-corp", "jane")
    admin = auth.add("acme-corp", "acme_admin", admin=True)
    eve = auth.add("other", "eve")
    app = Starlette(
        routes=[
            Mount(
                URL.rstrip("/"),
                app=PlatformMetadataApp(auth=auth, store=store, history_per_user=3),
            )
        ]
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        policy = await client.put(
            URL + "policy/?platform_key=acme-corp",
            json={"protected_keys": ["plan"], "schema": {"type": "object"}},
            headers=admin,
        )
        assert policy.status_code == 200, policy.text
        for n in range(5):  # 5 versions, 3 kept: retention moves the horizon
            r = await client.patch(META, json={"metadata": {"n": n, "ü": "☃", "x": 1e16}}, headers=john)
            assert r.status_code == 200, r.text
        await client.put(META, json={"metadata": {"a": [1, {"b": None}]}}, headers=jane)
        await client.delete(META, headers=jane)  # a tombstone, its version kept
        await client.patch(
            META + "&username=john_doe", json={"metadata": {"plan": "pro"}}, headers=admin
        )
        await client.put("/api/core/users/platform-metadata/?platform_key=other", json={"metadata": {"e": 1}},
                         headers=eve)
        await client.delete(
            "/api/core/users/platform-metadata/?platform_key=other&history=purge", headers=eve
        )
    # john leaves: his records stay, as the host's export would skip them.
    del auth.members[("acme-corp", "john_doe")]


async def dumped(store: Store) -> bytes:
    out = io.BytesIO()
    await dumps.dump(store, out)
    return out.getvalue()


async def load_bytes(store: Store, data: bytes, *, replace: bool = False) -> int:
    return await dumps.load(store, io.BytesIO(data), replace=replace)


EMPTY_DUMP = b'{"dump":"starlette-platform-metadata","format":1}\n{"end":{"rows":0}}\n'


@pytest.mark.parametrize(("source", "target"), list(itertools.product(STORE_KINDS, repeat=2)))
async def test_a_dump_loaded_anywhere_dumps_again_to_the_same_bytes(
    source: str, target: str, made: list[Store], tmp_path: Path
) -> None:
    """SQLite -> PostgreSQL -> dump, and every other pair: byte-identical dumps, and the
    loaded store answers as the original: records, revisions (actor, time, operation),
    the policy, clocks; no revision was written by the load."""
    original = new_store(made, source, tmp_path)
    await fill(original)
    first = await dumped(original)
    copy = new_store(made, target, tmp_path)
    rows = await load_bytes(copy, first)
    assert await dumped(copy) == first
    assert rows == first.count(b"\n") - 2
    for platform, user in [
        ("acme-corp", "john_doe"),
        ("acme-corp", "jane"),
        ("acme-corp", POLICY_USERNAME),
        ("other", "eve"),
    ]:
        assert await copy.get(platform, user) == await original.get(platform, user)
        assert await copy.revisions(platform, user) == await original.revisions(platform, user)  # type: ignore[attr-defined]
        assert await copy.position(platform) == await original.position(platform)  # type: ignore[attr-defined]
    john = await copy.get("acme-corp", "john_doe")
    assert john.version == 6 and john.metadata == {"n": 4, "ü": "☃", "x": 1e16, "plan": "pro"}
    kept = await copy.revisions("acme-corp", "john_doe")  # type: ignore[attr-defined]
    assert [r.version for r in kept] == [6, 5, 4]
    assert [(r.operation, r.actor) for r in kept][:2] == [("patch", "acme_admin"), ("patch", "john_doe")]
    assert (await copy.position("acme-corp"))[1] > 0  # type: ignore[attr-defined]  # horizon
    jane = await copy.get("acme-corp", "jane")
    assert not jane.exists and jane.version == 2  # the tombstone kept its version
    # Purged stays purged: only the delete's own revision.
    eve = await copy.revisions("other", "eve")  # type: ignore[attr-defined]
    assert [r.operation for r in eve] == ["delete"]


@pytest.mark.parametrize("kind", STORE_KINDS)
async def test_a_load_goes_on_from_the_loaded_versions_and_sequence(
    kind: str, made: list[Store], tmp_path: Path
) -> None:
    """After a load the next write is version + 1 and seq + 1, as it would have been."""
    original = new_store(made, "memory", tmp_path)
    await fill(original)
    copy = new_store(made, kind, tmp_path)
    await load_bytes(copy, await dumped(original))
    seq = (await copy.position("acme-corp"))[0]  # type: ignore[attr-defined]
    auth = FakeAuth()
    john = auth.add("acme-corp", "john_doe")
    app = PlatformMetadataApp(auth=auth, store=copy)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.patch("/?platform_key=acme-corp", json={"metadata": {"more": True}}, headers=john)
    assert r.status_code == 200 and r.headers["etag"] == '"7"'
    assert (await copy.position("acme-corp"))[0] == seq + 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", STORE_KINDS)
async def test_load_refuses_a_store_that_holds_data_and_changes_nothing(
    kind: str, made: list[Store], tmp_path: Path
) -> None:
    source = new_store(made, "memory", tmp_path)
    await fill(source)
    data = await dumped(source)
    target = new_store(made, kind, tmp_path)
    await target.update("acme-corp", "someone", lambda current: None)  # nothing stored yet
    await load_bytes(target, EMPTY_DUMP)  # an empty store takes a dump
    await load_bytes(target, data)
    before = await dumped(target)
    other = new_store(made, "memory", tmp_path)
    with pytest.raises(NotEmpty):
        await load_bytes(target, await dumped(other))
    assert await dumped(target) == before
    # --replace: the dump's rows, and nothing of what was there.
    await load_bytes(target, EMPTY_DUMP, replace=True)
    assert await dumped(target) == EMPTY_DUMP
    await load_bytes(target, data, replace=True)
    assert await dumped(target) == data


def _changed(line: bytes, kind: str, field: str, value: object) -> bytes:
    item = json.loads(line)
    item[kind][field] = value
    return json.dumps(item).encode() + b"\n"


def _bad_files(data: bytes) -> dict[str, tuple[bytes, str]]:
    lines = data.splitlines(keepends=True)
    header, rows, end = lines[0], lines[1:-1], lines[-1]
    assert rows[0].startswith(b'{"record"') and rows[-1].startswith(b'{"clock"')
    return {
        "cut mid-line": (data[:-5], "middle of a line"),
        "cut at a line": (b"".join(lines[:-1]), "ends before its last line"),
        "a row missing": (header + b"".join(rows[1:]) + end, "it holds"),
        "empty": (b"", "empty"),
        "not a dump": (b'{"hello":1}\n' + b"".join(rows) + end, "not a dump"),
        "another format": (
            header.replace(b'"format":1', b'"format":2') + b"".join(rows) + end,
            "dump format 2",
        ),
        "not JSON": (header + b"".join(rows) + b"{nope\n" + end, "not JSON"),
        "a wrong type": (
            header + b"".join(rows[:-1]) + _changed(rows[-1], "clock", "seq", "1") + end,
            "wrong type",
        ),
        "a bad document": (
            header + b"".join(rows[:-1]) + _changed(rows[0], "record", "metadata", "[1]") + end,
            "JSON object",
        ),
        "a bad time": (
            header + b"".join(rows[:-1]) + _changed(rows[0], "record", "updated_at", "noon") + end,
            "ISO 8601",
        ),
        "a row twice": (
            header + b"".join(rows) + rows[0] + _changed(end, "end", "rows", len(rows) + 1),
            "twice",
        ),
        "after the end": (data + rows[0], "after the last one"),
    }


@pytest.mark.parametrize("kind", STORE_KINDS)
async def test_a_bad_file_fails_with_its_line_and_loads_nothing(
    kind: str, made: list[Store], tmp_path: Path
) -> None:
    """Each bad file is refused with a message naming what is wrong, and the target stays
    empty, rows before the fault included (more than one batch of them: one transaction)."""
    source = new_store(made, "memory", tmp_path)
    await fill(source)
    for n in range(600):  # > one batch (500) before the fault
        await source.update("bulk", f"u{n:04}", lambda c, n=n: _write(c, n))
    data = await dumped(source)
    target = new_store(made, kind, tmp_path)
    for name, (bad, message) in _bad_files(data).items():
        with pytest.raises(DumpError) as refused:
            await load_bytes(target, bad)
        assert message in str(refused.value), name
        assert await dumped(target) == EMPTY_DUMP, name


def _write(current: object, n: int) -> object:
    from starlette_platform_metadata.stores.base import Record, Write, utcnow

    now = utcnow()
    return Write(Record(f'{{"n":{n}}}', 1, now, now), "put")


async def test_stores_without_dump_are_refused_clearly() -> None:
    class Plain:
        async def get(self, platform_key: str, username: str) -> None: ...

    with pytest.raises(TypeError, match="Dumper"):
        await dumps.dump(Plain(), io.BytesIO())


async def test_memory_store_keeps_no_host_tables() -> None:
    from example_host.backup import HOST_TABLES

    with pytest.raises(ValueError, match="host tables"):
        await dumps.dump(MemoryStore(), io.BytesIO(), tables=HOST_TABLES)


async def test_backup_on_postgresql_points_at_pg_dump(tmp_path: Path) -> None:
    store = DatabaseStore("postgresql://u:p@127.0.0.1:1/x")
    with pytest.raises(NotImplementedError, match="pg_dump"):
        await store.backup(str(tmp_path / "copy.db"))
    assert not (tmp_path / "copy.db").exists()


@pytest.mark.parametrize("kind", DATABASE_KINDS)
async def test_dump_and_load_hold_a_batch_in_memory_not_the_database(
    kind: str, made: list[Store], tmp_path: Path
) -> None:
    """20 MB of documents dump to a file and load back with a peak of a couple of batches
    (500 rows): the rows stream, through a cursor out and in batches in."""
    source = new_store(made, kind, tmp_path)
    assert isinstance(source, ManyWriter)
    names = [f"user{i:04d}" for i in range(2500)]
    await source.update_many(
        "big", [(name, changes.replace({"blob": "x" * 8_000, "i": i})) for i, name in enumerate(names)]
    )
    path = tmp_path / "big.dump"
    tracemalloc.start()
    try:
        with path.open("wb") as out:
            await dumps.dump(source, out)
        dumping = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        target = new_store(made, kind, tmp_path)
        with path.open("rb") as source_file:
            loaded = await dumps.load(target, source_file)
        loading = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert loaded == 2500
    assert path.stat().st_size > 20_000_000
    assert dumping < 12_000_000 and loading < 12_000_000, (dumping, loading)
    assert await target.get("big", "user2499") == await source.get("big", "user2499")
