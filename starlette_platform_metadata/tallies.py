"""Metrics kept as plain numbers in the process, read when scraped: the `Metrics` that costs
about nothing per request.

prometheus-client's own counters and histograms take a lock and do several calls per value
(measured here: 1.2 us per `inc`, 1.6 us per `observe`, so 8.5 us per GET with a request's
counter and histogram and a store operation's histogram, against 26 us for the whole GET in
process).  The request path runs on one event loop thread, so these are dict and list
updates (well under a microsecond per call), and `prometheus.PrometheusMetrics` turns them
into metric families only when a scrape asks (a custom collector).  Call them from one thread
(the event loop's), as the package does; reading them from another (a scrape, a shared
directory's writer) is safe, after `fold()`.

The two figures of every request, its own and its store operations', are not even counted
as they come: the call keeps the observation (a list append) and every `FOLD_EVERY`
observations, or when a scrape reads, they are counted in one loop.  Counted one at a time,
amid the rest of a request's work, the histogram and dictionary updates ran some 3 us per
GET in process (benchmarks/README.md, "Prometheus metrics"); in a batch they run with the
code and the tallies warm in the CPU's caches.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

from .metrics import status_class

__all__ = ["FOLD_EVERY", "Histogram", "Tallies"]

#: Observations kept before they are counted (a scrape counts those pending first).
FOLD_EVERY = 256


class Histogram:
    """Observations counted per bucket (not cumulative) and summed."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last: above every bound (+Inf)
        self.total = 0.0

    def observe(self, value: float) -> None:
        # The first bound at or above the value: Prometheus's `le` (less than or equal).
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        """`(le, count)` pairs as the exposition wants them, `+Inf` last."""
        found: list[tuple[str, float]] = []
        running = 0
        counts = list(self.counts)  # a copy: the event loop may count meanwhile
        for bound, count in zip((*map(repr, map(float, self.bounds)), "+Inf"), counts):
            running += count
            found.append((bound, running))
        return found


class Tallies:
    """Every figure `Metrics` reports, as numbers: the in-process recorder."""

    enabled = True

    def __init__(
        self, latency_buckets: Sequence[float], group_buckets: Sequence[float]
    ) -> None:
        self.latency_buckets = tuple(latency_buckets)
        self.requests: dict[tuple[str, str, str], int] = {}
        self.request_seconds: dict[tuple[str, str], Histogram] = {}
        self.unavailable_responses: dict[str, int] = {}
        self.store_seconds: dict[str, Histogram] = {}
        self.group_commit_updates = Histogram(group_buckets)
        self.streams_open = 0
        self.streams_refused: dict[str, int] = {}
        self.policy_compilations = 0
        self.history_trims = 0
        # A status's class, found once per status.
        self._classes: dict[int, str] = {}
        # Requests' and store operations' observations not counted yet, and how many of them
        # a reader on another thread counted already (see `_fold`).
        self._pending: list[tuple[Any, ...]] = []
        self._counted = 0
        self._lock = threading.Lock()

    def request(self, resource: str, method: str, status: int, seconds: float) -> None:
        pending = self._pending
        pending.append((resource, method, status, seconds))
        if len(pending) >= FOLD_EVERY:
            self._fold(restart=True)

    def unavailable(self, reason: str) -> None:
        self.unavailable_responses[reason] = self.unavailable_responses.get(reason, 0) + 1

    def store_operation(self, operation: str, seconds: float) -> None:
        pending = self._pending
        pending.append((operation, seconds))
        if len(pending) >= FOLD_EVERY:
            self._fold(restart=True)

    def fold(self) -> None:
        """Count the observations still pending: what a reader calls first, from any
        thread."""
        self._fold(restart=False)

    def _fold(self, restart: bool) -> None:
        # Only the counting thread (the event loop's) appends, and only it starts a new list
        # (`restart`), under the lock: a reader on another thread counts what was there when
        # it took the lock and leaves later appends for the next fold; none is lost or
        # counted twice.
        with self._lock:
            pending = self._pending
            end = len(pending)
            classes = self._classes
            requests = self.requests
            for i in range(self._counted, end):
                item = pending[i]
                if len(item) == 4:
                    resource, method, status, seconds = item
                    cls = classes.get(status)
                    if cls is None:
                        cls = classes[status] = status_class(status)
                    key = (resource, method, cls)
                    requests[key] = requests.get(key, 0) + 1
                    histogram = self.request_seconds.get((resource, method))
                    if histogram is None:
                        histogram = self.request_seconds[(resource, method)] = Histogram(
                            self.latency_buckets
                        )
                else:
                    operation, seconds = item
                    histogram = self.store_seconds.get(operation)
                    if histogram is None:
                        histogram = self.store_seconds[operation] = Histogram(
                            self.latency_buckets
                        )
                histogram.observe(seconds)
            if restart:
                self._pending = []
                self._counted = 0
            else:
                self._counted = end

    def group_committed(self, updates: int) -> None:
        self.group_commit_updates.observe(updates)

    def stream_opened(self) -> None:
        self.streams_open += 1

    def stream_closed(self) -> None:
        self.streams_open -= 1

    def stream_refused(self, bound: str) -> None:
        self.streams_refused[bound] = self.streams_refused.get(bound, 0) + 1

    def policy_compiled(self) -> None:
        self.policy_compilations += 1

    def history_trimmed(self) -> None:
        self.history_trims += 1
