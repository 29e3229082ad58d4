"""A store whose every operation reports its latency to a `Metrics`.

`timed(store, metrics)` is the store the app uses when metrics are on: an object with exactly
the store's methods (so the optional capabilities, found with `isinstance` against the
protocols of stores/base.py, stay what they were), each calling the store's own and reporting
how long it took, whether it returned or raised.  With metrics off it is the store itself: the
request path pays nothing.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from .metrics import Metrics
from .stores.base import Store

__all__ = ["OPERATIONS", "timed"]

#: The store methods timed, when the store has them: the operation label's values.
OPERATIONS = (
    "get",
    "get_many",
    "update",
    "update_many",
    "records",
    "revisions",
    "changes",
    "position",
    "poll",
    "check",
)

# One class per store class (and the methods it has): `type(store)` keys caches elsewhere
# (listing.py keeps whether `records` takes `filter`, read from its signature).
_CLASSES: dict[tuple[type, tuple[str, ...]], type] = {}


class _Timed:
    """The wrapper's base: the store and the metrics; its methods are made per store class."""

    __slots__ = ("metrics", "store")

    def __init__(self, store: object, metrics: Metrics) -> None:
        self.store = store
        self.metrics = metrics

    def __repr__(self) -> str:
        return f"timed({self.store!r})"


def _timed_method(name: str, original: object) -> Callable[..., Awaitable[Any]]:
    async def method(self: _Timed, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await getattr(self.store, name)(*args, **kwargs)
        finally:
            self.metrics.store_operation(name, time.perf_counter() - started)

    if callable(original):
        # `inspect.signature` of the wrapper's method is the store's own (listing.py reads it).
        method = functools.wraps(original)(method)
    return method


def timed(store: Store, metrics: Metrics) -> Store:
    """`store`, each of its operations timed into `metrics`; `store` itself when metrics are
    off."""
    if not metrics.enabled:
        return store
    kind = type(store)
    present = tuple(name for name in OPERATIONS if callable(getattr(store, name, None)))
    cls = _CLASSES.get((kind, present))
    if cls is None:
        namespace: dict[str, Any] = {
            name: _timed_method(name, getattr(kind, name, None)) for name in present
        }
        namespace["__slots__"] = ()
        cls = _CLASSES[(kind, present)] = type(f"Timed{kind.__name__}", (_Timed,), namespace)
    return cast(Store, cls(store, metrics))
