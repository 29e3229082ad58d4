"""`GuardedWriterContract`: the optional `update_guarded`, a write that holds only while
another record (the platform's policy) is the one the caller decided on."""

from __future__ import annotations

import pytest

from .. import changes
from ..stores.base import EMPTY, POLICY_USERNAME, GuardedWriter, GuardMoved, Store
from .values import P

__all__ = ["GuardedWriterContract"]

U = "john_doe"
POLICY = {"protected_keys": ["plan"], "private_keys": [], "schema": None}


@pytest.mark.anyio
class GuardedWriterContract:
    """The rules of `update_guarded`; subclass it beside `StoreContract`."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    async def test_a_guard_that_holds_lets_the_write_through(self, store: Store) -> None:
        assert isinstance(store, GuardedWriter)
        policy = await store.update(P, POLICY_USERNAME, changes.replace(POLICY))
        stored = await store.update_guarded(
            P, U, changes.patch({"a": 1}), (POLICY_USERNAME, policy)
        )
        assert stored == await store.get(P, U) and stored.metadata == {"a": 1}
        # No policy at all is `EMPTY`'s state.
        other = await store.update_guarded(
            "other", U, changes.patch({"b": 2}), (POLICY_USERNAME, EMPTY)
        )
        assert other.metadata == {"b": 2}

    async def test_a_moved_guard_stores_nothing(self, store: Store) -> None:
        assert isinstance(store, GuardedWriter)
        await store.update(P, U, changes.replace({"a": 1}))
        before = await store.get(P, U)
        old = await store.update(P, POLICY_USERNAME, changes.replace(POLICY))
        await store.update(P, POLICY_USERNAME, changes.patch({"private_keys": ["a"]}))
        for guard in (old, EMPTY):
            with pytest.raises(GuardMoved):
                await store.update_guarded(
                    P, U, changes.patch({"a": 2}), (POLICY_USERNAME, guard)
                )
            assert await store.get(P, U) == before
        # Nor a first write: no row appears.
        with pytest.raises(GuardMoved):
            await store.update_guarded(P, "new", changes.patch({"n": 1}), (POLICY_USERNAME, old))
        assert await store.get(P, "new") == EMPTY

    async def test_the_guard_is_the_whole_state_not_the_version(self, store: Store) -> None:
        """A policy deleted and written again, or given back its version by a reload, is
        another state: the old record no longer guards."""
        assert isinstance(store, GuardedWriter)
        first = await store.update(P, POLICY_USERNAME, changes.replace(POLICY))
        await store.update(P, POLICY_USERNAME, changes.delete())
        with pytest.raises(GuardMoved):
            await store.update_guarded(P, U, changes.patch({"a": 1}), (POLICY_USERNAME, first))
        tombstone = await store.get(P, POLICY_USERNAME)
        assert not tombstone.exists
        stored = await store.update_guarded(
            P, U, changes.patch({"a": 1}), (POLICY_USERNAME, tombstone)
        )
        assert stored.metadata == {"a": 1}

    async def test_writes_after_a_guarded_one_keep_counting(self, store: Store) -> None:
        """Guarded and plain writes of one row, in turn: each version one more."""
        assert isinstance(store, GuardedWriter)
        policy = await store.get(P, POLICY_USERNAME)
        versions = []
        for n in range(6):
            change = changes.patch({"n": n})
            if n % 2:
                record = await store.update(P, U, change)
            else:
                record = await store.update_guarded(P, U, change, (POLICY_USERNAME, policy))
            versions.append(record.version)
        assert versions == [1, 2, 3, 4, 5, 6]
        assert (await store.get(P, U)).metadata == {"n": 5}
