"""One read shared by the requests that had arrived before it began.

An auth backend that checks, on every request, a value that may change in another process (a
revocation counter, a key set's version) reads it per request: a request sent after a change
must see the change.  Yet a read that began after a request *arrived* answers that request as
well as a read of its own would: anything the client saw committed before it sent the request
was committed before the request arrived, so before the read began.  Under load a server
receives requests in batches (one turn of the event loop reads every ready socket), so one read
can answer the whole batch instead of one read each.

Arrival is known only where a server says it: `stamp(scope)` puts the request's place in this
process's order of arrivals in its scope, from the server's own protocol, when the request's
first bytes have been received (`uvicorn_http.BoundedHttpToolsProtocol` does, so `serve` does).
A request without a stamp (another server, a test calling the app in-process) shares nothing:
`SharedRead` reads for it, as before.  A stamp answers the questions a request asks on its
way in; one asked again later (a live-change stream checking, minutes on, that its caller
may still read it) is a new question, asked with `unstamped(scope)`: otherwise any read since
the stream arrived would answer it, and a revocation might never be seen.  The order is one
counter per process (`itertools.count`, whose `next` is atomic), so stamps and reads compare
across threads and event loops too.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Generic, TypeVar

__all__ = ["SCOPE_KEY", "SharedRead", "arrival", "stamp", "unstamped"]

T = TypeVar("T")

#: The scope key of a request's arrival stamp (an `int`).
SCOPE_KEY = "starlette_platform_metadata.arrival"

# Stamps and the starts of reads share one order: a stamp below a read's start was taken,
# so its request's bytes were received, before the read began.
_order = itertools.count(1)


def stamp(scope: MutableMapping[str, Any]) -> None:
    """Record in `scope` that its request has arrived (from a server protocol, once its first
    bytes have been received)."""
    scope[SCOPE_KEY] = next(_order)


def arrival(scope: MutableMapping[str, Any]) -> int | None:
    """The request's arrival stamp, or `None` when its server gave it none."""
    stamped = scope.get(SCOPE_KEY)
    return stamped if isinstance(stamped, int) else None


def unstamped(scope: MutableMapping[str, Any]) -> dict[str, Any]:
    """A copy of `scope` without its stamp: for asking a request's questions again later,
    when only a read from now on may answer them."""
    copy = dict(scope)
    copy.pop(SCOPE_KEY, None)
    return copy


class SharedRead(Generic[T]):
    """`read()`'s last answer, shared by the requests that arrived before that read began.

    `get(arrived)` returns the kept answer when `arrived` (a request's `arrival`) is below the
    start of the read that produced it, and reads otherwise (always for `None`).  `forget()`
    drops the kept answer: call it after this process changes what `read` reads, so its own
    next request sees the change however early it arrived.
    """

    def __init__(self, read: Callable[[], Awaitable[T]]) -> None:
        self.read = read
        self._kept: tuple[int, T] | None = None  # (the read's start, its answer)
        self._forgotten = 0  # raised by forget(): a read that overlapped one is not kept

    async def get(self, arrived: int | None = None) -> T:
        kept = self._kept
        if arrived is not None and kept is not None and arrived < kept[0]:
            return kept[1]
        began, forgotten = next(_order), self._forgotten
        value = await self.read()
        kept = self._kept
        # Concurrent reads may finish out of order: keep the one that began last.
        if forgotten == self._forgotten and (kept is None or kept[0] < began):
            self._kept = (began, value)
        return value

    def forget(self) -> None:
        self._kept = None
        self._forgotten += 1
