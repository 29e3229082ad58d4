"""`StoreContract`: the rules every store keeps (`get` and `update`)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from .. import changes
from ..jsontext import dump
from ..stores.base import (
    EMPTY,
    Change,
    Record,
    Store,
    Write,
)
from .values import AWKWARD, P, U, if_match, same, storing

__all__ = ["StoreContract"]

@pytest.mark.anyio
class StoreContract:
    """The rules every `Store` keeps; subclass it and provide a `store` fixture."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    # --- reading and writing exactly -------------------------------------------------------

    async def test_get_of_nothing_is_empty_version_zero(self, store: Store) -> None:
        """A pair never written reads as `EMPTY`: `{}`, version 0, no timestamps."""
        assert await store.get(P, U) == EMPTY

    async def test_update_stores_exactly_the_record_the_change_returns(self, store: Store) -> None:
        """The text byte for byte, the version, both timestamps to the microsecond, in UTC."""
        created = datetime(2024, 1, 15, 10, 30, 0, 123456, tzinfo=timezone.utc)
        updated = created + timedelta(days=5, microseconds=1)
        record = Record('{"b":1,"a":[1.0,-0.0]}', 7, created, updated)
        assert await store.update(P, U, storing(record)) == record
        stored = await store.get(P, U)
        assert stored == record
        assert stored.metadata_json == '{"b":1,"a":[1.0,-0.0]}'
        assert stored.created_at is not None and stored.created_at.utcoffset() == timedelta(0)

    async def test_change_sees_the_record_as_last_stored(self, store: Store) -> None:
        seen: list[Record] = []

        def spy(value: str) -> Change:
            def change(current: Record) -> Write | None:
                seen.append(current)
                return changes.patch({"n": value})(current)

            return change

        first = await store.update(P, U, spy("first"))
        assert seen[0] == EMPTY
        seen.clear()
        second = await store.update(P, U, spy("second"))
        assert seen[-1] == first
        assert (second.metadata, second.version) == ({"n": "second"}, 2)

    async def test_a_change_returning_none_stores_nothing(self, store: Store) -> None:
        stored = await store.update(P, U, changes.replace({"a": 1}))
        assert await store.update(P, U, lambda current: None) == stored
        assert await store.get(P, U) == stored

    async def test_a_refusing_change_stores_nothing_and_its_error_comes_back(
        self, store: Store
    ) -> None:
        class Refused(Exception):
            pass

        def refuse(current: Record) -> Write:
            raise Refused(current)

        with pytest.raises(Refused):
            await store.update(P, U, refuse)
        assert await store.get(P, U) == EMPTY
        stored = await store.update(P, U, changes.replace({"a": 1}))
        with pytest.raises(Refused):
            await store.update(P, U, refuse)
        assert await store.get(P, U) == stored

    async def test_a_deleted_record_is_a_tombstone_that_keeps_its_version(
        self, store: Store
    ) -> None:
        await store.update(P, U, changes.replace({"a": 1}))
        await store.update(P, U, changes.patch({"b": 2}))
        deleted = await store.update(P, U, changes.delete())
        assert deleted == Record("{}", 3, None, None)
        assert await store.get(P, U) == deleted
        again = await store.update(P, U, changes.delete())
        assert again == deleted, "deleting nothing changes nothing"
        recreated = await store.update(P, U, changes.patch({"c": 3}))
        assert (recreated.metadata, recreated.version, recreated.exists) == ({"c": 3}, 4, True)

    # --- what the package's changes make of it ---------------------------------------------

    async def test_patch_deletes_first_then_sets_and_keeps_other_keys(self, store: Store) -> None:
        first = await store.update(P, U, changes.patch({"a": 1, "b": 2, "c": 3}))
        record = await store.update(P, U, changes.patch({"b": "new", "d": 4}, ["b", "a", "x"]))
        assert record.metadata == {"c": 3, "b": "new", "d": 4}
        assert record.version == first.version + 1
        assert record.created_at == first.created_at
        assert record.updated_at is not None and first.updated_at is not None
        assert record.updated_at >= first.updated_at

    async def test_if_match_refusal_carries_the_record_it_saw(self, store: Store) -> None:
        stored = await store.update(P, U, changes.replace({"a": 1}))
        later = await store.update(P, U, changes.patch({"b": 2}))
        with pytest.raises(changes.PreconditionFailed) as refused:
            await store.update(P, U, changes.patch({"c": 3}, conditions=if_match(stored)))
        assert refused.value.record == later
        assert await store.get(P, U) == later

    async def test_document_too_large_stores_nothing(self, store: Store) -> None:
        stored = await store.update(P, U, changes.replace({"a": "x" * 100}))
        with pytest.raises(changes.DocumentTooLarge):
            await store.update(P, U, changes.patch({"b": "y" * 100}, max_bytes=150))
        assert await store.get(P, U) == stored

    async def test_awkward_values_round_trip_identically(self, store: Store) -> None:
        """Keys and values that trip up SQL, JSON columns and float handling read back as the
        exact text that was written."""
        record = await store.update(P, U, changes.replace(AWKWARD))
        stored = await store.get(P, U)
        assert stored.metadata_json == record.metadata_json == dump(AWKWARD)
        assert same(stored.metadata, AWKWARD)

    async def test_a_64_kib_document_round_trips(self, store: Store) -> None:
        document = {f"key{i}": "v" * 60 for i in range(1000)}
        record = await store.update(P, U, changes.replace(document))
        assert (await store.get(P, U)).metadata_json == record.metadata_json

    async def test_pairs_are_isolated(self, store: Store) -> None:
        """Each (platform, user) is its own record, however alike the names."""
        pairs = [("p", "u"), ("p", "v"), ("q", "u"), ("a:b", "c"), ("a", "b:c"), ("P", "u"),
                 ("p", "u "), ("p", "ü"), ("p", "u\u0308")]  # fmt: skip
        for index, (platform, user) in enumerate(pairs):
            await store.update(platform, user, changes.replace({"i": index}))
        await store.update("p", "v", changes.delete())
        for index, pair in enumerate(pairs):
            record = await store.get(*pair)
            if pair == ("p", "v"):
                assert not record.exists
            else:
                assert (record.metadata, record.version) == ({"i": index}, 1), pair

    # --- atomicity -------------------------------------------------------------------------

    async def test_concurrent_updates_of_one_record_lose_nothing(self, store: Store) -> None:
        """Every update reads what the one before it wrote: no lost update, gapless versions."""
        writers = 40
        records = await asyncio.gather(
            *(store.update(P, U, changes.patch({f"k{i}": i})) for i in range(writers))
        )
        assert sorted(r.version for r in records) == list(range(1, writers + 1))
        record = await store.get(P, U)
        assert record.metadata == {f"k{i}": i for i in range(writers)}
        assert record.version == writers

    async def test_concurrent_conditional_updates_let_exactly_one_win(self, store: Store) -> None:
        stored = await store.update(P, U, changes.replace({"n": 0}))

        async def attempt(i: int) -> bool:
            try:
                await store.update(P, U, changes.patch({"n": i}, conditions=if_match(stored)))
            except changes.PreconditionFailed:
                return False
            return True

        outcomes = await asyncio.gather(*(attempt(i) for i in range(1, 9)))
        assert outcomes.count(True) == 1
        assert (await store.get(P, U)).version == stored.version + 1

    async def test_updates_of_different_records_do_not_interfere(self, store: Store) -> None:
        users = [f"user{i}" for i in range(20)]
        await asyncio.gather(
            *(store.update(P, user, changes.patch({"k": n})) for user in users for n in range(3))
        )
        for user in users:
            record = await store.get(P, user)
            assert (record.version, set(record.metadata)) == (3, {"k"})
