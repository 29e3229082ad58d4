"""The metrics seam: what the package tells a metrics backend, and the backend that does nothing.

The app, the middleware and `DatabaseStore` call a `Metrics` at a few places: each answered
request, each 503 (by reason), each store operation, each SQLite group commit, each live
stream opened, closed or refused, each policy compiled and each write whose history retention
dropped old revisions.  `NO_METRICS` (the default) does nothing; the request path skips even
its clock reads when metrics are off (`enabled`).  `starlette_platform_metadata.prometheus`
has the Prometheus backend (the `metrics` extra); a host may write its own (statsd, OpenTelemetry)
as a class with these methods.

Every label value passed here is from a small fixed set (docs/monitoring.md lists them): never a
username, a platform key or anything else a client chooses.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = [
    "METHODS",
    "NO_METRICS",
    "Metrics",
    "NoMetrics",
    "Reporter",
    "method_label",
    "status_class",
]

#: The request methods a metric names; any other becomes `"other"`, so that a client sending
#: made-up methods cannot grow a label without bound.
METHODS = frozenset(("GET", "HEAD", "PUT", "PATCH", "DELETE", "POST", "OPTIONS"))


def method_label(method: str) -> str:
    """`method` as a label value: one of `METHODS`, else `"other"`."""
    return method if method in METHODS else "other"


def status_class(status: int) -> str:
    """`"2xx"`, `"4xx"`, ... for a status code."""
    return f"{status // 100}xx"


class Metrics(Protocol):
    """What the package reports.  Calls are synchronous and must be cheap: most run on the
    request path, once per request or per store operation."""

    #: `False` lets the request path skip timing altogether.
    enabled: bool

    def request(self, resource: str, method: str, status: int, seconds: float) -> None:
        """A request answered by `resource` (`"metadata"`, `"policy"`, ...): its method (one
        of `METHODS` or `"other"`), status, and seconds until its answer was ready to send
        (a live stream: until its headers)."""
        ...

    def unavailable(self, reason: str) -> None:
        """A 503 answered, by reason (docs/monitoring.md, "503 runbook")."""
        ...

    def store_operation(self, operation: str, seconds: float) -> None:
        """A store method (`"get"`, `"update"`, ...) returned or raised after `seconds`."""
        ...

    def group_committed(self, updates: int) -> None:
        """A SQLite group commit wrote `updates` updates in one transaction."""
        ...

    def stream_opened(self) -> None:
        """A live-change subscription opened (a stream, or the host's own `watch()`)."""
        ...

    def stream_closed(self) -> None:
        """One closed."""
        ...

    def stream_refused(self, bound: str) -> None:
        """A stream refused at a bound: `"process"`, `"identity"`, `"platform"` or
        `"shutting_down"`."""
        ...

    def policy_compiled(self) -> None:
        """A platform policy parsed and its schema compiled (a cache miss)."""
        ...

    def history_trimmed(self) -> None:
        """A write whose retention (`history_per_user`) dropped the user's oldest revision."""
        ...


class NoMetrics:
    """Reports nothing: the default."""

    enabled = False

    def request(self, resource: str, method: str, status: int, seconds: float) -> None:
        pass

    def unavailable(self, reason: str) -> None:
        pass

    def store_operation(self, operation: str, seconds: float) -> None:
        pass

    def group_committed(self, updates: int) -> None:
        pass

    def stream_opened(self) -> None:
        pass

    def stream_closed(self) -> None:
        pass

    def stream_refused(self, bound: str) -> None:
        pass

    def policy_compiled(self) -> None:
        pass

    def history_trimmed(self) -> None:
        pass


#: The default of every `metrics=`.
NO_METRICS: Metrics = NoMetrics()


@runtime_checkable
class Reporter(Protocol):
    """A store with figures of its own to report (`DatabaseStore`: SQLite's group commits).
    The app hands it its metrics when built; a store shared by several apps reports to the
    last one's."""

    def report_to(self, metrics: Metrics) -> None: ...
