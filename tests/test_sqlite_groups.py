"""SQLite's group commit (stores/sql/sqlite_groups.py): which updates go in one transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from starlette_platform_metadata import DatabaseStore, changes
from starlette_platform_metadata.stores.base import EMPTY, POLICY_USERNAME, GuardMoved
from starlette_platform_metadata.stores.sql.sqlite import SQLiteEngine
from starlette_platform_metadata.stores.sql.sqlite_groups import Queued

pytestmark = pytest.mark.anyio

P = "p"
POLICY = {"protected_keys": ["plan"], "private_keys": [], "schema": None}


@pytest.fixture
def groups(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The users of each group the SQLite engine writes, in order."""
    written: list[list[str]] = []
    write_group = SQLiteEngine.write_group

    def recorded(self: SQLiteEngine, connection: Any, updates: Sequence[Queued]) -> Any:
        written.append([update.key[1] for update in updates])
        return write_group(self, connection, updates)

    monkeypatch.setattr(SQLiteEngine, "write_group", recorded)
    return written


async def test_updates_whose_handlers_run_after_the_flusher_started_join_its_group(
    tmp_path: Path, groups: list[list[str]]
) -> None:
    """Under load, the requests read in one turn of the event loop have their handlers run
    in the next, some of them after the step that starts the flusher.  The flusher gives the
    loop one turn before it takes the queue, so those updates join its group.  Taking the
    queue at once, it wrote them as a group of their own: one transaction more per group,
    and its pages in the WAL."""
    loop = asyncio.get_running_loop()
    async with DatabaseStore(f"sqlite:///{tmp_path / 'db.sqlite'}") as store:
        first = loop.create_task(store.update("p", "first", changes.replace({"n": 1})))
        await asyncio.sleep(0)  # `first` queues its update and starts the flusher
        assert not first.done()
        # Its first step is already scheduled; this task's comes after it.
        later = loop.create_task(store.update("p", "later", changes.replace({"n": 2})))
        records = await asyncio.gather(first, later)
        assert [r.metadata for r in records] == [{"n": 1}, {"n": 2}]
        assert groups == [["first", "later"]]


async def test_an_update_alone_is_written_without_waiting_for_more(
    tmp_path: Path, groups: list[list[str]]
) -> None:
    """The turn the flusher gives the loop is one turn, not a timer: a lone update is
    written as soon as the loop has nothing else to run."""
    async with DatabaseStore(f"sqlite:///{tmp_path / 'db.sqlite'}") as store:
        loop = asyncio.get_running_loop()
        started = loop.time()
        for n in range(20):
            await store.update("p", "alone", changes.replace({"n": n}))
        assert loop.time() - started < 1.0
        assert groups == [["alone"]] * 20


async def test_a_policy_written_earlier_in_the_group_moves_a_later_updates_guard(
    tmp_path: Path, groups: list[list[str]]
) -> None:
    """The guard is checked in the group's transaction, against the policy as the group has
    it: a policy written just before in the same group refuses the guarded update (nothing
    stored).  Checked before queueing, as it was, the guard passed and the write went in,
    decided on the policy the group had just replaced."""
    loop = asyncio.get_running_loop()
    async with DatabaseStore(f"sqlite:///{tmp_path / 'db.sqlite'}") as store:
        old = await store.update(P, POLICY_USERNAME, changes.replace(POLICY))
        groups.clear()
        moved = loop.create_task(store.update(P, POLICY_USERNAME, changes.patch({"x": 1})))
        guard = (POLICY_USERNAME, old)
        refused = loop.create_task(store.update_guarded(P, "u", changes.patch({"a": 1}), guard))
        outcomes = await asyncio.gather(moved, refused, return_exceptions=True)
        assert groups == [[POLICY_USERNAME, "u"]]
        assert isinstance(outcomes[1], GuardMoved)
        assert await store.get(P, "u") == EMPTY


async def test_guarded_updates_read_their_guard_in_the_group_once_and_nothing_before(
    tmp_path: Path, groups: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PATCH's guard costs it no read on the loop: the group reads the policy once for all
    its updates, and each holds or not on that read."""
    loop = asyncio.get_running_loop()
    async with DatabaseStore(f"sqlite:///{tmp_path / 'db.sqlite'}") as store:
        policy = await store.update(P, POLICY_USERNAME, changes.replace(POLICY))
        groups.clear()

        def no_read(*args: Any) -> Any:
            raise AssertionError("a guarded update read before its group")

        monkeypatch.setattr(SQLiteEngine, "get_many", no_read)
        statements: list[str] = []
        guard = (POLICY_USERNAME, policy)
        users = [f"u{i}" for i in range(5)]
        writes = [
            loop.create_task(store.update_guarded(P, u, changes.patch({"n": 1}), guard))
            for u in users
        ]
        engine: Any = store._engine  # noqa: SLF001 - the writer connection's statements
        writer = engine.connection._writer  # noqa: SLF001
        writer.set_trace_callback(statements.append)
        try:
            records = await asyncio.gather(*writes)
        finally:
            writer.set_trace_callback(None)
        assert [r.metadata for r in records] == [{"n": 1}] * 5
        assert groups == [users]
        policy_reads = [s for s in statements if s.startswith("SELECT") and "\x01" in s]
        assert len(policy_reads) == 1, statements
