"""Copies taken while writes go on: SQLite's online `backup`, and a dump, on every database.

Writers update three keys of their document at once, with history; a copy taken in the middle
of it must hold every write acknowledged before it began, and nothing half-written: no
document whose keys disagree, no record whose history is behind or ahead of it.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from starlette_platform_metadata import DatabaseStore, Store, dumps
from starlette_platform_metadata.stores.base import Record, Revision, Write, utcnow

from .conftest import DATABASE_KINDS, STORE_KINDS, close_store, make_store

pytestmark = pytest.mark.anyio

USERS = [f"writer{n}" for n in range(6)]


def three_keys(current: Record) -> Write:
    """Version n holds a = b = c = n: a torn write would show keys that disagree."""
    version = current.version + 1
    now = utcnow()
    text = json.dumps({"a": version, "b": version, "c": version}, separators=(",", ":"))
    record = Record(text, version, current.created_at or now, now)
    revision = Revision(version, "put", "storm", now, text, ("a", "b", "c"), record.created_at)
    return Write(record, "put", "storm", revision, keep_revisions=10_000)


async def storm(store: Store, copy: Callable[[], Awaitable[None]]) -> dict[str, int]:
    """Write from every user until the copy is done; the versions acknowledged before the
    copy began."""
    acked = dict.fromkeys(USERS, 0)
    done = asyncio.Event()

    async def writer(user: str) -> None:
        while not done.is_set():
            record = await store.update("storm", user, three_keys)
            acked[user] = record.version
            await asyncio.sleep(0)  # MemoryStore's update never suspends: let others run

    tasks = [asyncio.create_task(writer(user)) for user in USERS]
    try:
        while min(acked.values()) < 5:  # every writer has written before the copy
            await asyncio.sleep(0.005)
        before = dict(acked)
        await copy()
        await asyncio.sleep(0.05)  # and writes go on after it
    finally:
        done.set()
        await asyncio.gather(*tasks)
    assert min(acked[u] - before[u] for u in USERS) > 0, "no write went on during the copy"
    return before


async def assert_whole(copy: Store, before: dict[str, int]) -> None:
    for user in USERS:
        record = await copy.get("storm", user)
        document = record.metadata
        assert document == {"a": record.version, "b": record.version, "c": record.version}
        assert record.version >= before[user], "an acknowledged write is missing"
        kept = await copy.revisions("storm", user, limit=100_000)  # type: ignore[attr-defined]
        # Every version up to the record's, and none beyond: history and record agree.
        assert [r.version for r in kept] == list(range(record.version, 0, -1))
        assert all(r.metadata == {"a": r.version, "b": r.version, "c": r.version} for r in kept)


async def test_sqlite_backup_during_a_write_storm_is_whole(tmp_path: Path) -> None:
    store = DatabaseStore(f"sqlite:///{tmp_path / 'live.db'}")
    target = tmp_path / "backup.db"
    try:
        before = await storm(store, lambda: store.backup(str(target)))
    finally:
        await store.disconnect()
    assert not list(tmp_path.glob(".backup.db.partial*"))
    restored = DatabaseStore(f"sqlite:///{target}")
    try:
        await assert_whole(restored, before)
    finally:
        await restored.disconnect()


@pytest.mark.parametrize("kind", STORE_KINDS)
async def test_a_dump_during_a_write_storm_loads_whole(kind: str, tmp_path: Path) -> None:
    """On PostgreSQL (where `backup` is pg_dump's job) as everywhere: a dump is one snapshot."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    store = make_store(kind, tmp_path / "a")
    out = io.BytesIO()

    async def copy() -> None:
        await dumps.dump(store, out)

    try:
        before = await storm(store, copy)
    finally:
        await close_store(store)
    restored = make_store(kind, tmp_path / "b")
    try:
        await dumps.load(restored, io.BytesIO(out.getvalue()))
        await assert_whole(restored, before)
    finally:
        await close_store(restored)


async def test_backup_refuses_an_existing_path_and_the_database_itself(tmp_path: Path) -> None:
    live = tmp_path / "live.db"
    store = DatabaseStore(f"sqlite:///{live}")
    try:
        await store.update("p", "u", three_keys)
        taken = tmp_path / "taken.db"
        taken.write_bytes(b"keep me")
        with pytest.raises(FileExistsError):
            await store.backup(str(taken))
        assert taken.read_bytes() == b"keep me"
        with pytest.raises(FileExistsError):
            await store.backup(str(live))
        missing = DatabaseStore(f"sqlite:///{tmp_path / 'nothing.db'}")
        with pytest.raises(FileNotFoundError):
            await missing.backup(str(tmp_path / "copy.db"))
        assert not (tmp_path / "nothing.db").exists()  # never created by a backup
    finally:
        await store.disconnect()


@pytest.mark.parametrize("kind", DATABASE_KINDS)
async def test_requests_go_on_while_a_dump_is_read_slowly(kind: str, tmp_path: Path) -> None:
    """A dump holds its snapshot on a connection of its own: a writer is never held up by a
    reader that takes its time, and the dump still shows the data as it began."""
    store = make_store(kind, tmp_path)
    try:
        for user in USERS:
            await store.update("storm", user, three_keys)
        rows = store.dump()  # type: ignore[attr-defined]
        first = await rows.__anext__()
        for _ in range(3):  # while the snapshot is held
            written = await asyncio.wait_for(store.update("storm", USERS[0], three_keys), 5)
        assert written.version == 4
        rest = [row async for row in rows]
        versions = [r.record.version for r in [first, *rest] if hasattr(r, "record")]
        assert versions == [1] * len(USERS)
    finally:
        await close_store(store)
