"""The store contract, as a test suite anyone can run against their own `Store`.

Subclass `StoreContract` in a pytest module and give it a `store` fixture::

    import pytest
    from starlette_platform_metadata.testing import StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        async def store(self):
            store = MyStore()
            yield store
            await store.close()

Every test of the class then runs against your store (needs pytest and the anyio plugin, which
comes with Starlette).  The tests use only the seam, `get` and `update`, with the changes the
package itself makes (`changes.patch`, `changes.replace`, `changes.delete`), so a store that
passes them serves the whole HTTP contract.  A store with the optional `records` method
(listing a platform's documents, for the policy's `violating_documents`) also subclasses
`RecordsContract`; one that keeps history (`HistoryReader`), `HistoryContract`; one that
dumps and loads everything it keeps (`stores.dumps.Dumper`), `DumperContract`; one with
readiness's `check()` (`HealthChecker`), `HealthCheckerContract`; one whose writes can be
guarded by the policy record (`GuardedWriter`), `GuardedWriterContract`.
"""

from __future__ import annotations

from .batches import ManyReaderContract, ManyWriterContract
from .dumps import DumperContract
from .guards import GuardedWriterContract
from .health import HealthCheckerContract
from .history import ChangeReaderContract, HistoryContract
from .records import FILTER_CASES, FILTER_DOCUMENTS, RecordsContract
from .store import StoreContract
from .values import AWKWARD, same

__all__ = [
    "AWKWARD",
    "FILTER_CASES",
    "FILTER_DOCUMENTS",
    "ChangeReaderContract",
    "DumperContract",
    "GuardedWriterContract",
    "HealthCheckerContract",
    "HistoryContract",
    "ManyReaderContract",
    "ManyWriterContract",
    "RecordsContract",
    "StoreContract",
    "same",
]
