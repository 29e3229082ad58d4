"""`HistoryContract` and `ChangeReaderContract`: history and the live-change reads."""

from __future__ import annotations

import asyncio

import pytest

from .. import changes
from ..conditional import Conditions, parse
from ..stores.base import (
    ChangeReader,
    HistoryReader,
    Store,
)
from .values import AWKWARD, P, U, same

__all__ = ["ChangeReaderContract", "HistoryContract"]

@pytest.mark.anyio
class HistoryContract:
    """The rules of history (`HistoryReader.revisions` and the `Write` fields it keeps);
    subclass it beside `StoreContract`."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    async def test_each_revision_is_kept_with_its_record_newest_first(self, store: Store) -> None:
        assert isinstance(store, HistoryReader)
        await store.update(P, U, changes.with_history(changes.replace(AWKWARD, actor="ann"), 10))
        await store.update(P, U, changes.with_history(changes.patch({"x": 1}, actor="bob"), 10))
        await store.update(P, U, changes.with_history(changes.delete(actor="cid"), 10))
        await store.update(P, "other", changes.with_history(changes.replace({"o": 1}), 10))
        revisions = await store.revisions(P, U)
        assert [(r.version, r.operation, r.actor) for r in revisions] == [
            (3, "delete", "cid"),
            (2, "patch", "bob"),
            (1, "put", "ann"),
        ]
        assert revisions[0].metadata == {} and revisions[1].changed_keys == ("x",)
        assert same(revisions[2].metadata, AWKWARD)
        assert revisions[2].changed_keys == tuple(sorted(AWKWARD))
        assert all(r.at.tzinfo is not None for r in revisions)
        assert [r.version for r in await store.revisions(P, U, before=3, limit=1)] == [2]
        assert await store.revisions(P, U, before=1) == []
        assert await store.revisions("other", U) == []

    async def test_a_refused_change_keeps_no_revision(self, store: Store) -> None:
        assert isinstance(store, HistoryReader)
        await store.update(P, U, changes.with_history(changes.replace({"a": 1}), 10))
        stale = Conditions(if_match=parse("If-Match", '"9"', 64))
        with pytest.raises(changes.PreconditionFailed):
            await store.update(
                P, U, changes.with_history(changes.replace({"a": 2}, conditions=stale), 10)
            )
        assert [r.version for r in await store.revisions(P, U)] == [1]

    async def test_only_the_newest_keep_revisions_stay(self, store: Store) -> None:
        assert isinstance(store, HistoryReader)
        for n in range(7):
            await store.update(P, U, changes.with_history(changes.replace({"n": n}), 3))
        assert [r.version for r in await store.revisions(P, U, limit=100)] == [7, 6, 5]
        # Keeping fewer from now on drops the older ones at the next write.
        await store.update(P, U, changes.with_history(changes.replace({"n": 8}), 1))
        assert [r.version for r in await store.revisions(P, U, limit=100)] == [8]

    async def test_purge_drops_earlier_revisions_in_the_same_write(self, store: Store) -> None:
        assert isinstance(store, HistoryReader)
        for n in range(3):
            await store.update(P, U, changes.with_history(changes.replace({"n": n}), 10))
        await store.update(P, "bob", changes.with_history(changes.replace({"b": 1}), 10))
        record = await store.update(
            P, U, changes.with_history(changes.delete(), 10, purge=True)
        )
        assert (record.version, record.exists) == (4, False)
        assert [r.version for r in await store.revisions(P, U)] == [4]
        # Nothing stored: the record stays as it is, its history still goes.
        again = await store.update(P, U, changes.with_history(changes.delete(), 10, purge=True))
        assert again == record == await store.get(P, U)
        assert await store.revisions(P, U) == []
        assert [r.version for r in await store.revisions(P, "bob")] == [1]

    async def test_concurrent_updates_leave_gapless_revisions(self, store: Store) -> None:
        assert isinstance(store, HistoryReader)
        await asyncio.gather(
            *(
                store.update(P, U, changes.with_history(changes.patch({f"k{n}": n}), 100))
                for n in range(40)
            )
        )
        revisions = await store.revisions(P, U, limit=100)
        assert [r.version for r in revisions] == list(range(40, 0, -1))
        assert [len(r.metadata) for r in revisions] == list(range(40, 0, -1))


@pytest.mark.anyio
class ChangeReaderContract:
    """The rules of live changes' store methods (`ChangeReader`); beside `HistoryContract`."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    async def test_changes_are_numbered_per_platform_in_commit_order(self, store: Store) -> None:
        assert isinstance(store, ChangeReader)
        assert await store.position(P) == (0, 0)
        await asyncio.gather(
            *(
                store.update(P, f"user{n % 4}", changes.with_history(changes.patch({"n": n}), 10))
                for n in range(20)
            )
        )
        await store.update("other", U, changes.with_history(changes.patch({"o": 1}), 10))
        found = await store.changes(P, after=0, limit=100)
        assert [revision.seq for _, revision in found] == list(range(1, 21))
        per_user: dict[str, list[int]] = {}
        for username, revision in found:
            per_user.setdefault(username, []).append(revision.version)
        assert all(versions == sorted(versions) for versions in per_user.values())
        assert [r.seq for _, r in await store.changes(P, after=17)] == [18, 19, 20]
        assert [r.seq for _, r in await store.changes(P, after=5, limit=2)] == [6, 7]
        assert await store.position(P) == (20, 0)
        assert await store.position("other") == (1, 0)
        newest = found[-1][1]
        assert newest.created_at is not None and newest.at >= newest.created_at

    async def test_retention_moves_the_horizon_and_a_purge_does_not(self, store: Store) -> None:
        assert isinstance(store, ChangeReader)
        for n in range(5):
            await store.update(P, U, changes.with_history(changes.replace({"n": n}), 3))
        # Versions 1 and 2 (seq 1 and 2) were dropped by retention.
        assert await store.position(P) == (5, 2)
        await store.update(P, U, changes.with_history(changes.delete(), 3, purge=True))
        assert await store.position(P) == (6, 2)
        assert [r.seq for _, r in await store.changes(P, after=0)] == [6]

    async def test_retention_of_concurrent_changes_keeps_each_users_newest(
        self, store: Store
    ) -> None:
        """Many changes of the same users at once (a store may write them together): each
        user keeps exactly its newest, and the horizon is the newest change dropped."""
        assert isinstance(store, ChangeReader) and isinstance(store, HistoryReader)
        await asyncio.gather(
            *(
                store.update(P, f"user{n % 2}", changes.with_history(changes.patch({"n": n}), 3))
                for n in range(20)
            )
        )
        for name in ("user0", "user1"):
            kept = await store.revisions(P, name, limit=100)
            assert [r.version for r in kept] == [10, 9, 8]
            assert all(r.metadata["n"] % 2 == int(name[-1]) for r in kept)
        stored = {r.seq for _, r in await store.changes(P, after=0, limit=100)}
        assert len(stored) == 6
        dropped = set(range(1, 21)) - stored
        assert await store.position(P) == (20, max(dropped))
