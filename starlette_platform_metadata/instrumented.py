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
    "update_guarded",
    "update_many",
    "records",
    "revisions",
    "changes",
    "position",
    "poll",
    "check",
)

#: Operations timed under another's label: a guarded update is an update.
LABELS = {"update_guarded": "update"}


class _Timed:
    """The wrapper's base: the store it wraps; its methods are made for each wrapped store."""

    __slots__ = ("store",)

    def __init__(self, store: object) -> None:
        self.store = store

    def __repr__(self) -> str:
        return f"timed({self.store!r})"


def _timed_method(
    name: str, inner: Callable[..., Awaitable[Any]], metrics: Metrics, original: Any
) -> Callable[..., Awaitable[Any]]:
    observe = metrics.store_operation
    clock = time.perf_counter

    # The store's bound method and the metrics' are closed over, not looked up per call:
    # this runs on every read and write (about 1.3 us a call more than the store's own).
    async def method(self: _Timed, *args: Any, **kwargs: Any) -> Any:
        started = clock()
        try:
            return await inner(*args, **kwargs)
        finally:
            observe(name, clock() - started)

    # `inspect.signature` of the wrapper's method is the store's own (listing.py reads it).
    return functools.wraps(original)(method)


def timed(store: Store, metrics: Metrics) -> Store:
    """`store`, each of its operations timed into `metrics`; `store` itself when metrics are
    off.  A class of its own per wrapped store, with exactly the store's operations."""
    if not metrics.enabled:
        return store
    namespace: dict[str, Any] = {"__slots__": ()}
    for name in OPERATIONS:
        inner = getattr(store, name, None)
        if callable(inner):
            original = getattr(type(store), name, inner)  # the function, `self` first
            label = LABELS.get(name, name)
            namespace[name] = _timed_method(label, inner, metrics, original)
    cls = type(f"Timed{type(store).__name__}", (_Timed,), namespace)
    return cast(Store, cls(store))
