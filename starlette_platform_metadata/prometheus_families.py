"""The Prometheus metrics themselves: names, help and labels, once; and their collector.

`FAMILIES` describes every metric (docs/monitoring.md lists them).  `TalliesCollector` exports
a `tallies.Tallies` (plain numbers) as metric families when scraped, through prometheus-client's
custom collector interface.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .errors import UNAVAILABLE_REASONS
from .tallies import Histogram, Tallies

__all__ = ["FAMILIES", "STREAM_BOUNDS", "Family", "TalliesCollector"]

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
        # Each dict is copied first (one step under the GIL): a shared directory's thread
        # collects while the event loop counts, and may meet a label set added meanwhile.
        t = self.tallies
        t.fold()
        p = self.prefix
        requests = CounterMetricFamily(p + REQUESTS.name, REQUESTS.help, labels=REQUESTS.labels)
        for labels, count in sorted(t.requests.copy().items()):
            requests.add_metric(labels, count)
        yield requests
        yield _histograms(p, REQUEST_SECONDS, t.request_seconds.copy())
        unavailable = CounterMetricFamily(
            p + UNAVAILABLE.name, UNAVAILABLE.help, labels=UNAVAILABLE.labels
        )
        counted = t.unavailable_responses.copy()
        for reason in dict.fromkeys((*UNAVAILABLE_REASONS, *sorted(counted))):
            unavailable.add_metric((reason,), counted.get(reason, 0))
        yield unavailable
        operations = {(name,): h for name, h in t.store_seconds.copy().items()}
        yield _histograms(p, STORE_SECONDS, operations)
        yield _histograms(p, GROUP_UPDATES, {(): t.group_commit_updates})
        yield GaugeMetricFamily(p + STREAMS_OPEN.name, STREAMS_OPEN.help, t.streams_open)
        refused = CounterMetricFamily(
            p + STREAMS_REFUSED.name, STREAMS_REFUSED.help, labels=STREAMS_REFUSED.labels
        )
        counted = t.streams_refused.copy()
        for bound in dict.fromkeys((*STREAM_BOUNDS, *sorted(counted))):
            refused.add_metric((bound,), counted.get(bound, 0))
        yield refused
        for family, value in (
            (POLICY_COMPILATIONS, t.policy_compilations),
            (HISTORY_TRIMS, t.history_trims),
        ):
            yield CounterMetricFamily(p + family.name, family.help, value)


def _histograms(
    prefix: str, family: Family, found: Mapping[Any, Histogram]
) -> HistogramMetricFamily:
    metric = HistogramMetricFamily(prefix + family.name, family.help, labels=family.labels)
    for labels, histogram in sorted(found.items()):
        metric.add_metric(labels, histogram.cumulative(), histogram.total)
    return metric
