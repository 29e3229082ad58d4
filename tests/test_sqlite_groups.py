"""SQLite's group commit (stores/sql/sqlite_groups.py): which updates go in one transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from starlette_platform_metadata import DatabaseStore, changes
from starlette_platform_metadata.stores.sql.sqlite import SQLiteEngine
from starlette_platform_metadata.stores.sql.sqlite_groups import Queued

pytestmark = pytest.mark.anyio


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
