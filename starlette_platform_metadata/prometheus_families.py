"""The Prometheus metrics themselves: names, help, labels, once; and the two ways they are kept.

`FAMILIES` describes every metric (docs/monitoring.md lists them).  `TalliesCollector` exports
a `tallies.Tallies` (plain numbers, one process) as metric families when scraped;
`ClientMetrics` keeps them as prometheus-client counters, gauges and histograms, which is what
multiprocess mode needs (their values live in the shared files).  `prometheus.py` picks one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .errors import UNAVAILABLE_REASONS
from .metrics import status_class
from .tallies import Tallies

__all__ = ["FAMILIES", "STREAM_BOUNDS", "ClientMetrics", "Family", "TalliesCollector"]

#: The bounds a stream is refused at (`streams_refused_total`'s label).
STREAM_BOUNDS = ("process", "identity", "platform", "shutting_down")


@dataclass(frozen=True, slots=True)
class Family:
    """One metric: its name after the namespace (without `_total`), kind, help, labels."""

    name: str
    kind: str  # "counter", "gauge" or "histogram"
    help: str
    labels: tuple[str, ...] = ()


REQUESTS = Family(
    "requests", "counter", "Requests answered, by resource, method and status class.",
    ("resource", "method", "status_class"),
)  # fmt: skip
REQUEST_SECONDS = Family(
    "request_duration_seconds",
    "histogram",
    "Seconds from a request's arrival to its answer being ready to send (a live stream: to "
    "its headers), by resource and method.",
    ("resource", "method"),
)
UNAVAILABLE = Family(
    "unavailable_responses", "counter", "503 answers, by reason (readiness's included).",
    ("reason",),
)  # fmt: skip
STORE_SECONDS = Family(
    "store_operation_duration_seconds",
    "histogram",
    "Seconds a store operation took, returned or raised, by operation.",
    ("operation",),
)
GROUP_UPDATES = Family(
    "sqlite_group_commit_updates",
    "histogram",
    "Updates written per SQLite group commit (one transaction).",
)
STREAMS_OPEN = Family(
    "streams_open", "gauge",
    "Live-change subscriptions open (streams, and the host's own watch()).",
)  # fmt: skip
STREAMS_REFUSED = Family(
    "streams_refused", "counter", "Live-change streams refused, by the bound reached.",
    ("bound",),
)  # fmt: skip
POLICY_COMPILATIONS = Family(
    "policy_compilations", "counter",
    "Platform policies parsed and their schemas compiled (policy cache misses).",
)  # fmt: skip
HISTORY_TRIMS = Family(
    "history_trims", "counter",
    "Writes whose retention (history_per_user) dropped the user's oldest revision.",
)  # fmt: skip

#: Every metric, in the order a scrape lists them.
FAMILIES = (
    REQUESTS, REQUEST_SECONDS, UNAVAILABLE, STORE_SECONDS, GROUP_UPDATES, STREAMS_OPEN,
    STREAMS_REFUSED, POLICY_COMPILATIONS, HISTORY_TRIMS,
)  # fmt: skip


class TalliesCollector(Collector):
    """A `Tallies` as metric families, read at each scrape (prometheus-client's custom
    collector interface).  Every 503 reason and refusal bound is exported from the start, at
    0, so that `rate()` sees the first one counted."""

    def __init__(self, tallies: Tallies, namespace: str) -> None:
        self.tallies = tallies
        self.prefix = f"{namespace}_" if namespace else ""

    def collect(self) -> Iterator[Metric]:
        t = self.tallies
        p = self.prefix
        requests = CounterMetricFamily(p + REQUESTS.name, REQUESTS.help, labels=REQUESTS.labels)
        for labels, count in sorted(t.requests.items()):
            requests.add_metric(labels, count)
        yield requests
        yield _histograms(p, REQUEST_SECONDS, t.request_seconds)
        unavailable = CounterMetricFamily(
            p + UNAVAILABLE.name, UNAVAILABLE.help, labels=UNAVAILABLE.labels
        )
        for reason in dict.fromkeys((*UNAVAILABLE_REASONS, *sorted(t.unavailable_responses))):
            unavailable.add_metric((reason,), t.unavailable_responses.get(reason, 0))
        yield unavailable
        yield _histograms(p, STORE_SECONDS, {(k,): v for k, v in t.store_seconds.items()})
        yield _histograms(p, GROUP_UPDATES, {(): t.group_commit_updates})
        yield GaugeMetricFamily(p + STREAMS_OPEN.name, STREAMS_OPEN.help, t.streams_open)
        refused = CounterMetricFamily(
            p + STREAMS_REFUSED.name, STREAMS_REFUSED.help, labels=STREAMS_REFUSED.labels
        )
        for bound in dict.fromkeys((*STREAM_BOUNDS, *sorted(t.streams_refused))):
            refused.add_metric((bound,), t.streams_refused.get(bound, 0))
        yield refused
        for family, value in (
            (POLICY_COMPILATIONS, t.policy_compilations),
            (HISTORY_TRIMS, t.history_trims),
        ):
            yield CounterMetricFamily(p + family.name, family.help, value)


def _histograms(prefix: str, family: Family, found: Any) -> HistogramMetricFamily:
    metric = HistogramMetricFamily(prefix + family.name, family.help, labels=family.labels)
    for labels, histogram in sorted(found.items()):
        metric.add_metric(labels, histogram.cumulative(), histogram.total)
    return metric


class ClientMetrics:
    """The same metrics as prometheus-client objects (multiprocess mode keeps their values in
    its shared files).  Each label set's child is found once."""

    enabled = True

    def __init__(
        self,
        registry: CollectorRegistry,
        namespace: str,
        latency_buckets: Sequence[float],
        group_buckets: Sequence[float],
    ) -> None:
        common: dict[str, Any] = {"namespace": namespace, "registry": registry}
        self.requests = Counter(REQUESTS.name, REQUESTS.help, REQUESTS.labels, **common)
        self.request_seconds = Histogram(
            REQUEST_SECONDS.name, REQUEST_SECONDS.help, REQUEST_SECONDS.labels,
            buckets=latency_buckets, **common,
        )  # fmt: skip
        self.unavailable_responses = Counter(
            UNAVAILABLE.name, UNAVAILABLE.help, UNAVAILABLE.labels, **common
        )
        self.store_seconds = Histogram(
            STORE_SECONDS.name, STORE_SECONDS.help, STORE_SECONDS.labels,
            buckets=latency_buckets, **common,
        )  # fmt: skip
        self.group_commit_updates = Histogram(
            GROUP_UPDATES.name, GROUP_UPDATES.help, buckets=group_buckets, **common
        )
        # Summed over the live workers: a worker gone takes its streams with it.
        self.streams_open = Gauge(
            STREAMS_OPEN.name, STREAMS_OPEN.help, multiprocess_mode="livesum", **common
        )
        self.streams_refused = Counter(
            STREAMS_REFUSED.name, STREAMS_REFUSED.help, STREAMS_REFUSED.labels, **common
        )
        self.policy_compilations = Counter(
            POLICY_COMPILATIONS.name, POLICY_COMPILATIONS.help, **common
        )
        self.history_trims = Counter(HISTORY_TRIMS.name, HISTORY_TRIMS.help, **common)
        self.collectors: tuple[Collector, ...] = (
            self.requests, self.request_seconds, self.unavailable_responses,
            self.store_seconds, self.group_commit_updates, self.streams_open,
            self.streams_refused, self.policy_compilations, self.history_trims,
        )  # fmt: skip
        self._unavailable = {r: self.unavailable_responses.labels(r) for r in UNAVAILABLE_REASONS}
        self._refused = {b: self.streams_refused.labels(b) for b in STREAM_BOUNDS}
        self._requests: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._operations: dict[str, Any] = {}

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
        if child is None:
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
