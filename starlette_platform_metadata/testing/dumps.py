"""`DumperContract`: a store's full-fidelity dump and load (`stores.dumps.Dumper`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest

from .. import changes
from ..stores.base import POLICY_USERNAME, HistoryReader, Store
from ..stores.dumps import (
    Dumper,
    DumpRow,
    NotEmpty,
    StoredClock,
    StoredRecord,
    StoredRevision,
)
from .values import AWKWARD, P, U

__all__ = ["DumperContract"]


async def _rows(rows: Sequence[DumpRow], *, fail_after: int | None = None) -> AsyncIterator[DumpRow]:
    for n, row in enumerate(rows):
        if n == fail_after:
            raise RuntimeError("the file broke here")
        yield row


async def _dump(store: Dumper) -> list[DumpRow]:
    return [row async for row in store.dump()]


async def _fill(store: Store) -> None:
    """History (three versions, two kept), a tombstone, a policy record, two platforms."""
    for n in range(3):
        await store.update(P, U, changes.with_history(changes.patch({"n": n}, actor="ann"), 2))
    await store.update(P, "bob", changes.with_history(changes.replace(AWKWARD), 2))
    await store.update(P, "bob", changes.with_history(changes.delete(actor="bob"), 2))
    await store.update(P, POLICY_USERNAME, changes.replace({"protected_keys": []}))
    await store.update("other", "ünïcode", changes.with_history(changes.replace({"x": 1}), 2))


@pytest.mark.anyio
class DumperContract:
    """The rules of `Dumper.dump` and `Dumper.load`; subclass it beside `StoreContract`
    (with `HistoryContract`: the store keeps history)."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    async def test_a_dump_loads_back_exactly(self, store: Store) -> None:
        assert isinstance(store, Dumper) and isinstance(store, HistoryReader)
        await _fill(store)
        before = await _dump(store)
        revisions = await store.revisions(P, U)
        assert await store.load(_rows(before), replace=True) == len(before)
        assert await _dump(store) == before
        assert await store.revisions(P, U) == revisions  # no revision written by the load
        bob = await store.get(P, "bob")
        assert (bob.version, bob.exists) == (2, False)  # the tombstone and its version

    async def test_rows_come_in_kind_and_key_order(self, store: Store) -> None:
        assert isinstance(store, Dumper)
        await _fill(store)
        rows = await _dump(store)
        kinds = [type(row) for row in rows]
        assert kinds == sorted(kinds, key=[StoredRecord, StoredRevision, StoredClock].index)
        records = [(r.platform_key, r.username) for r in rows if isinstance(r, StoredRecord)]
        assert records == sorted(records) and (P, POLICY_USERNAME) in records
        revisions = [
            (r.platform_key, r.username, r.revision.version)
            for r in rows
            if isinstance(r, StoredRevision)
        ]
        assert revisions == sorted(revisions)
        assert [r[2] for r in revisions if r[:2] == (P, U)] == [2, 3]  # retention kept two
        assert all(r.revision.seq for r in rows if isinstance(r, StoredRevision))
        clocks = [r.platform_key for r in rows if isinstance(r, StoredClock)]
        assert clocks == ["acme-corp", "other"]

    async def test_load_refuses_a_store_with_data_and_changes_nothing(self, store: Store) -> None:
        assert isinstance(store, Dumper)
        await _fill(store)
        before = await _dump(store)
        with pytest.raises(NotEmpty):
            await store.load(_rows(before[:1]))
        assert await _dump(store) == before

    async def test_a_load_that_fails_part_way_changes_nothing(self, store: Store) -> None:
        assert isinstance(store, Dumper)
        await _fill(store)
        before = await _dump(store)
        with pytest.raises(RuntimeError, match="broke"):
            await store.load(_rows(before, fail_after=len(before) - 1), replace=True)
        assert await _dump(store) == before
