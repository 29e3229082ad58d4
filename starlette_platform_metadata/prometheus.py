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

from prometheus_client import CollectorRegistry, make_asgi_app, multiprocess
from prometheus_client.registry import Collector

from .prometheus_families import STREAM_BOUNDS, ClientMetrics, TalliesCollector
from .tallies import Tallies

__all__ = [
    "GROUP_BUCKETS",
    "LATENCY_BUCKETS",
    "MULTIPROCESS_ENV",
    "STREAM_BOUNDS",
    "Exposition",
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
#: Set, prometheus-client keeps each process's figures in files there (multiprocess mode).
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


class PrometheusMetrics:
    """`Metrics` exported to Prometheus.

    Args:
        registry: where the metrics are registered; `None`: a new private
            `CollectorRegistry` (one per app).  `prometheus_client.REGISTRY` for the
            process-wide one.
        namespace: the prefix of every name (`platform_metadata_requests_total`).
        latency_buckets: the latency histograms' bucket bounds, in seconds.

    In one process the figures are plain numbers (`tallies.Tallies`, well under a
    microsecond per request) that a collector of ours turns into metric families when
    scraped.  In multiprocess mode they must live in prometheus-client's shared files, so
    each is a prometheus-client counter, gauge or histogram (`ClientMetrics`), which costs
    it a few microseconds per request more (docs/monitoring.md, "What it costs").
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
        self.namespace = namespace
        recorder: Tallies | ClientMetrics
        if os.environ.get(MULTIPROCESS_ENV):
            recorder = ClientMetrics(self.registry, namespace, latency_buckets, GROUP_BUCKETS)
            self.collectors: list[Collector] = list(recorder.collectors)
        else:
            recorder = Tallies(latency_buckets, GROUP_BUCKETS)
            collector = TalliesCollector(recorder, namespace)
            self.registry.register(collector)
            self.collectors = [collector]
        self.recorder = recorder
        # The recorder's own methods, bound once: a call costs no hop through this class.
        self.request = recorder.request
        self.unavailable = recorder.unavailable
        self.store_operation = recorder.store_operation
        self.group_committed = recorder.group_committed
        self.stream_opened = recorder.stream_opened
        self.stream_closed = recorder.stream_closed
        self.stream_refused = recorder.stream_refused
        self.policy_compiled = recorder.policy_compiled
        self.history_trimmed = recorder.history_trimmed

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
