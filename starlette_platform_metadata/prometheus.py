"""Prometheus metrics through `prometheus-client` (the `metrics` extra).

    pip install 'starlette-platform-metadata[metrics]'

    metrics = PrometheusMetrics()                      # a registry of its own
    app = PlatformMetadataApp(auth=..., store=..., metrics=metrics)
    routes = [..., Route("/metrics", metrics.asgi_app())]

Every metric, its labels and what to alert on: docs/monitoring.md.  The figures are plain
numbers (`tallies.Tallies`: well under a microsecond per request, where prometheus-client's own
counters and histograms took 8.5 us per GET) that a collector turns into metric families when
scraped (`prometheus_families.TalliesCollector`).  Each app gets a private `CollectorRegistry`
unless given one (`registry=prometheus_client.REGISTRY`, the global one, to be exported with
the process's other metrics): building many apps in one process (tests) then never registers
a name twice.  Several worker processes: each writes its figures to a shared directory and a
scrape sums them (`prometheus_shared.SharedFiles`; docs/monitoring.md, "Several workers").

Importing this module is what loads `prometheus_client`; the rest of the package never does.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, make_asgi_app
from prometheus_client.registry import Collector

from .prometheus_families import STREAM_BOUNDS, TalliesCollector
from .prometheus_shared import SharedFiles
from .tallies import Tallies

__all__ = [
    "GROUP_BUCKETS",
    "LATENCY_BUCKETS",
    "MULTIPROCESS_ENV",
    "STREAM_BOUNDS",
    "Exposition",
    "PrometheusMetrics",
]

#: Seconds: a GET answers in about a millisecond, a write in a few; 503s come after the
#: store's `busy_timeout` (5 s by default).
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
#: Updates per SQLite group commit (at most `MAX_GROUP`, 512).
GROUP_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
#: The shared directory of several workers, unless `directory=` says: the variable
#: prometheus-client's multiprocess mode reads, so that one setting serves a host that also
#: has metrics of its own (our files, `platform_metadata-*.prom`, sit beside its `*.db`).
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


class PrometheusMetrics:
    """`Metrics` exported to Prometheus.

    Args:
        registry: where this process's metrics are registered; `None`: a new private
            `CollectorRegistry` (one per app).  `prometheus_client.REGISTRY` for the
            process-wide one.
        namespace: the prefix of every name (`platform_metadata_requests_total`).
        latency_buckets: the latency histograms' bucket bounds, in seconds.
        directory: several workers' shared directory (default `$PROMETHEUS_MULTIPROC_DIR`;
            `None` and unset: one process).  `asgi_app()` then answers with every worker's
            figures summed; empty the directory before each start of the server.
        interval: with `directory`, seconds between two writes of this worker's figures.
    """

    enabled = True

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "platform_metadata",
        latency_buckets: Sequence[float] = LATENCY_BUCKETS,
        directory: str | Path | None = None,
        interval: float = 1.0,
    ) -> None:
        self.registry = CollectorRegistry() if registry is None else registry
        self.tallies = tallies = Tallies(latency_buckets, GROUP_BUCKETS)
        self.collector: Collector = TalliesCollector(tallies, namespace)
        self.registry.register(self.collector)
        shared = directory if directory is not None else os.environ.get(MULTIPROCESS_ENV)
        self.shared: SharedFiles | None = None
        if shared:
            own = CollectorRegistry()
            own.register(self.collector)
            self.shared = SharedFiles(shared, own, interval)
        # The tallies' own methods, bound once: a call costs no hop through this class.
        self.request = tallies.request
        self.unavailable = tallies.unavailable
        self.store_operation = tallies.store_operation
        self.group_committed = tallies.group_committed
        self.stream_opened = tallies.stream_opened
        self.stream_closed = tallies.stream_closed
        self.stream_refused = tallies.stream_refused
        self.policy_compiled = tallies.policy_compiled
        self.history_trimmed = tallies.history_trimmed

    def exposition_registry(self) -> CollectorRegistry:
        """What a scrape reads: this process's registry, or with a shared directory a
        registry summing every worker's figures."""
        if self.shared is None:
            return self.registry
        summed = CollectorRegistry()
        summed.register(self.shared)
        return summed

    def asgi_app(self) -> Exposition:
        """An ASGI app answering a scrape in the text exposition format (prometheus-client's
        `make_asgi_app`), to route at `/metrics`: `Route("/metrics", metrics.asgi_app())`."""
        return Exposition(make_asgi_app(self.exposition_registry()))

    def close(self) -> None:
        """With a shared directory, write this worker's last figures and stop writing: call
        it from the worker's shutdown.  Nothing to do otherwise."""
        if self.shared is not None:
            self.shared.close()


class Exposition:
    """prometheus-client's exposition app as an object, so that Starlette's `Route` serves it
    as the ASGI app it is (a plain function would be taken for a request handler)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)
