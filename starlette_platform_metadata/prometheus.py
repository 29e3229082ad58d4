"""Prometheus metrics through `prometheus-client` (the `metrics` extra).

    pip install 'starlette-platform-metadata[metrics]'

    metrics = PrometheusMetrics()                      # a registry of its own
    app = PlatformMetadataApp(auth=..., store=..., metrics=metrics)
    routes = [..., Mount("/metrics", app=metrics.asgi_app())]

Every metric, its labels and what to alert on: docs/monitoring.md.  Each app gets a private
`CollectorRegistry` unless given one (`registry=prometheus_client.REGISTRY`, the global one,
to be exported with the process's other metrics): building many apps in one process (tests)
then never registers a name twice.  Several worker processes: prometheus-client's
multiprocess mode, set up by `$PROMETHEUS_MULTIPROC_DIR` before this module is imported;
`asgi_app()` then exports every worker's figures together (docs/monitoring.md, "Several
workers").

Importing this module is what loads `prometheus_client`; the rest of the package never does.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_asgi_app
from prometheus_client import multiprocess

from .errors import UNAVAILABLE_REASONS
from .metrics import status_class

__all__ = [
    "Exposition",
    "GROUP_BUCKETS",
    "LATENCY_BUCKETS",
    "MULTIPROCESS_ENV",
    "STREAM_BOUNDS",
    "PrometheusMetrics",
    "process_exited",
]

#: Seconds: a GET answers in about a millisecond, a write in a few; 503s come after the
#: store's `busy_timeout` (5 s by default).
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
#: Updates per SQLite group commit (at most `MAX_GROUP`, 512).
GROUP_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
#: The bounds a stream is refused at (`streams_refused_total`'s label).
STREAM_BOUNDS = ("process", "identity", "platform", "shutting_down")
#: Set, prometheus-client keeps each process's figures in files there (multiprocess mode).
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


class PrometheusMetrics:
    """`Metrics` as Prometheus counters, gauges and histograms.

    Args:
        registry: where the metrics are registered; `None`: a new private
            `CollectorRegistry` (one per app).  `prometheus_client.REGISTRY` for the
            process-wide one.
        namespace: the prefix of every name (`platform_metadata_requests_total`).
        latency_buckets: the latency histograms' bucket bounds, in seconds.
    """

    enabled = True

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "platform_metadata",
        latency_buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> None:
        self.registry = CollectorRegistry() if registry is None else registry
        common: dict[str, Any] = {"namespace": namespace, "registry": self.registry}
        self.requests = Counter(
            "requests",
            "Requests answered, by resource, method and status class.",
            ("resource", "method", "status_class"),
            **common,
        )
        self.request_seconds = Histogram(
            "request_duration_seconds",
            "Seconds from a request's arrival to its answer being ready to send (a live "
            "stream: to its headers), by resource and method.",
            ("resource", "method"),
            buckets=latency_buckets,
            **common,
        )
        self.unavailable_responses = Counter(
            "unavailable_responses",
            "503 answers, by reason (readiness's included).",
            ("reason",),
            **common,
        )
        self.store_seconds = Histogram(
            "store_operation_duration_seconds",
            "Seconds a store operation took, returned or raised, by operation.",
            ("operation",),
            buckets=latency_buckets,
            **common,
        )
        self.group_commit_updates = Histogram(
            "sqlite_group_commit_updates",
            "Updates written per SQLite group commit (one transaction).",
            buckets=GROUP_BUCKETS,
            **common,
        )
        self.streams_open = Gauge(
            "streams_open",
            "Live-change subscriptions open (streams, and the host's own watch()).",
            multiprocess_mode="livesum",
            **common,
        )
        self.streams_refused = Counter(
            "streams_refused",
            "Live-change streams refused, by the bound reached.",
            ("bound",),
            **common,
        )
        self.policy_compilations = Counter(
            "policy_compilations",
            "Platform policies parsed and their schemas compiled (policy cache misses).",
            **common,
        )
        self.history_trims = Counter(
            "history_trims",
            "Writes whose retention (history_per_user) dropped the user's oldest revision.",
            **common,
        )
        # Every reason and bound shows from the start, at 0: `rate()` and `increase()` then
        # see the first one counted.
        self._unavailable = {r: self.unavailable_responses.labels(r) for r in UNAVAILABLE_REASONS}
        self._refused = {b: self.streams_refused.labels(b) for b in STREAM_BOUNDS}
        # Label children found once per label set: `labels()` costs more than what it finds.
        self._requests: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._operations: dict[str, Any] = {}

    # --- Metrics -----------------------------------------------------------------------------

    def request(self, resource: str, method: str, status: int, seconds: float) -> None:
        key = (resource, method, status)
        children = self._requests.get(key)
        if children is None:
            children = self._requests[key] = (
                self.requests.labels(resource, method, status_class(status)),
                self.request_seconds.labels(resource, method),
            )
        children[0].inc()
        children[1].observe(seconds)

    def unavailable(self, reason: str) -> None:
        child = self._unavailable.get(reason)
        if child is None:  # a reason of a newer package than this backend knows
            child = self._unavailable[reason] = self.unavailable_responses.labels(reason)
        child.inc()

    def store_operation(self, operation: str, seconds: float) -> None:
        child = self._operations.get(operation)
        if child is None:
            child = self._operations[operation] = self.store_seconds.labels(operation)
        child.observe(seconds)

    def group_committed(self, updates: int) -> None:
        self.group_commit_updates.observe(updates)

    def stream_opened(self) -> None:
        self.streams_open.inc()

    def stream_closed(self) -> None:
        self.streams_open.dec()

    def stream_refused(self, bound: str) -> None:
        child = self._refused.get(bound)
        if child is None:
            child = self._refused[bound] = self.streams_refused.labels(bound)
        child.inc()

    def policy_compiled(self) -> None:
        self.policy_compilations.inc()

    def history_trimmed(self) -> None:
        self.history_trims.inc()

    # --- exposition ----------------------------------------------------------------------

    def exposition_registry(self) -> CollectorRegistry:
        """What a scrape reads: this registry, or in multiprocess mode a registry collecting
        every process's files (this one's metrics included)."""
        if os.environ.get(MULTIPROCESS_ENV):
            collected = CollectorRegistry()
            multiprocess.MultiProcessCollector(collected)  # type: ignore[no-untyped-call]
            return collected
        return self.registry

    def asgi_app(self) -> Exposition:
        """An ASGI app answering a scrape with the text exposition format (prometheus-
        client's `make_asgi_app`), to route at `/metrics` (`Route("/metrics", metrics.
        asgi_app())` or a `Mount`)."""
        return Exposition(make_asgi_app(self.exposition_registry()))


class Exposition:
    """prometheus-client's exposition app as an object, so that Starlette's `Route` serves it
    as the ASGI app it is (a plain function would be taken for a request handler)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def process_exited(pid: int | None = None) -> None:
    """In multiprocess mode, forget a worker's live gauges (`streams_open`) once it exits:
    call it from the worker's shutdown.  Nothing to do otherwise."""
    if os.environ.get(MULTIPROCESS_ENV):
        multiprocess.mark_process_dead(os.getpid() if pid is None else pid)  # type: ignore[no-untyped-call]
