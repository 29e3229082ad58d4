"""`HealthCheckerContract`: the optional `check()` readiness calls."""

from __future__ import annotations

import pytest

from .. import changes
from ..stores.base import EMPTY, HealthChecker, Store
from .values import P

__all__ = ["HealthCheckerContract"]


@pytest.mark.anyio
class HealthCheckerContract:
    """The rules of the optional `check` method; subclass it beside `StoreContract`."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    async def test_a_working_store_checks_ready_before_and_after_use(self, store: Store) -> None:
        """`check` returns (no exception) on a store that can serve, also before its first
        read or write: readiness may be asked first."""
        assert isinstance(store, HealthChecker)
        await store.check()
        await store.update(P, "checked", changes.patch({"a": 1}))
        await store.check()

    async def test_checking_changes_nothing(self, store: Store) -> None:
        assert isinstance(store, HealthChecker)
        for _ in range(3):
            await store.check()
        assert await store.get(P, "nobody") == EMPTY
