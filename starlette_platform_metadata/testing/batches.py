"""`ManyWriterContract` and `ManyReaderContract`: the optional `update_many` and `get_many`."""

from __future__ import annotations

import asyncio

import pytest

from .. import changes
from ..conditional import Conditions, parse
from ..stores.base import (
    EMPTY,
    POLICY_USERNAME,
    HistoryReader,
    ManyReader,
    ManyWriter,
    Record,
    Store,
)
from .values import AWKWARD, P, same

__all__ = ["ManyReaderContract", "ManyWriterContract"]

@pytest.mark.anyio
class ManyWriterContract:
    """The rules of the optional `update_many` method; subclass it beside `StoreContract`."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    async def test_update_many_stores_each_change_and_answers_in_order(
        self, store: Store
    ) -> None:
        assert isinstance(store, ManyWriter)
        await store.update(P, "bob", changes.replace({"old": True}))
        records = await store.update_many(
            P,
            [
                ("carol", changes.replace({"c": 1})),
                ("bob", changes.replace(AWKWARD)),
                ("alice", changes.patch({"a": [1.0]})),
            ],
        )
        assert records == [await store.get(P, name) for name in ("carol", "bob", "alice")]
        assert [r.version for r in records] == [1, 2, 1]
        assert same(records[1].metadata, AWKWARD) and records[2].metadata_json == '{"a":[1.0]}'
        assert await store.get("other", "carol") == EMPTY
        assert await store.update_many(P, []) == []

    async def test_one_refusal_stores_nothing_at_all(self, store: Store) -> None:
        """All or nothing: a change that raises (a schema refusal, a 412) leaves every
        record, and its history, as it was."""
        assert isinstance(store, ManyWriter)
        before = await store.update(P, "bob", changes.with_history(changes.replace({"b": 1}), 10))
        stale = Conditions(if_match=parse("If-Match", '"9"', 64))
        with pytest.raises(changes.PreconditionFailed):
            await store.update_many(
                P,
                [
                    ("alice", changes.with_history(changes.replace({"a": 1}), 10)),
                    ("bob", changes.with_history(changes.replace({"b": 2}), 10)),
                    ("carol", changes.with_history(changes.replace({}, conditions=stale), 10)),
                ],
            )
        assert await store.get(P, "alice") == EMPTY
        assert await store.get(P, "bob") == before
        if isinstance(store, HistoryReader):
            assert await store.revisions(P, "alice") == []
            assert [r.version for r in await store.revisions(P, "bob")] == [1]

    async def test_history_of_each_change_is_kept_with_it(self, store: Store) -> None:
        assert isinstance(store, ManyWriter)
        await store.update_many(
            P,
            [
                (name, changes.with_history(changes.replace({"n": name}, actor="admin"), 10))
                for name in ("x", "y")
            ],
        )
        if isinstance(store, HistoryReader):
            for name in ("x", "y"):
                (revision,) = await store.revisions(P, name)
                assert (revision.version, revision.operation, revision.actor) == (1, "put", "admin")

    async def test_concurrent_single_writes_are_neither_lost_nor_interleaved(
        self, store: Store
    ) -> None:
        """Batches and single updates of the same records (with history, so with the
        platform's change clock), at once: every change counts, and none waits forever."""
        assert isinstance(store, ManyWriter)
        names = [f"u{i}" for i in range(20)]

        async def batch(n: int) -> None:
            await store.update_many(
                P, [(name, changes.with_history(changes.patch({f"b{n}": n}), 10)) for name in names]
            )

        async def single(name: str, n: int) -> None:
            await store.update(P, name, changes.with_history(changes.patch({f"s{n}": n}), 10))

        await asyncio.gather(
            *(batch(n) for n in range(3)),
            *(single(name, n) for name in names for n in range(2)),
        )
        for name in names:
            record = await store.get(P, name)
            assert record.version == 5
            assert set(record.metadata) == {"b0", "b1", "b2", "s0", "s1"}


@pytest.mark.anyio
class ManyReaderContract:
    """The rules of the optional `get_many` method; subclass it beside `StoreContract`."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    async def test_get_many_reads_each_as_get_would_in_the_order_asked(
        self, store: Store
    ) -> None:
        """Stored, never written, deleted and the policy record, in any order; other
        platforms' records of the same names never come back."""
        assert isinstance(store, ManyReader)
        await store.update(P, "alice", changes.replace({"a": 1}))
        await store.update(P, "bob", changes.replace({"b": 1}))
        await store.update(P, "bob", changes.delete())
        await store.update("other", "carol", changes.replace({"c": 1}))
        await store.update(P, POLICY_USERNAME, changes.replace({"schema": None}))
        names = ["carol", POLICY_USERNAME, "bob", "alice", "alice"]
        many = await store.get_many(P, names)
        assert many == [await store.get(P, name) for name in names]
        assert many[0] == EMPTY and many[2] == Record("{}", 2, None, None)
        assert many[3].metadata == {"a": 1}
        assert await store.get_many(P, []) == []
        # A long list (a store may read a few names and many differently).
        names = [f"nobody{i}" for i in range(12)] + ["alice", "carol", "alice", POLICY_USERNAME]
        many = await store.get_many(P, names)
        assert many == [await store.get(P, name) for name in names]
        assert many[12].metadata == many[14].metadata == {"a": 1} and many[13] == EMPTY
