"""Liveness and readiness: whether the process runs, and whether it can serve now.

Opt-in on the app and the middleware (`health=Health()`), answered without authentication and
with nothing of any tenant in the body:

- liveness (`live_path`, default `/healthz`): 200 `{"status": "ok"}` while the event loop
  runs.  It never touches the store, so a database outage never gets the process restarted.
- readiness (`ready_path`, default `/readyz`): one round trip to the store, bounded by
  `timeout`, at every call: 200 `{"status": "ready"}`, or 503 `{"status": "unavailable",
  "reason": ..., "detail": ...}` when the store is busy, unreachable, does not answer in time,
  or its tables are another release's (`HealthChecker.check`).  A load balancer stops sending
  requests to a process that is not ready, and sends them again once it is.

docs/monitoring.md says how to point probes at them.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from starlette.types import Receive, Scope, Send

from . import errors
from .errors import ApiError
from .metrics import NO_METRICS, Metrics
from .responses import error_response, json_response, send_head
from .stores.base import (
    POLICY_USERNAME,
    HealthChecker,
    SchemaMismatch,
    Store,
    StoreUnavailable,
)

__all__ = ["Health", "Probes"]

logger = logging.getLogger("starlette_platform_metadata")

ALLOW = "GET, HEAD"
# A store without `check()` is asked for a record no request can name (the policy's reserved
# username on a platform key no request can send, the empty one): a read, and nothing found.
_PROBE_KEY = ("", POLICY_USERNAME)


@dataclass(frozen=True, slots=True)
class Health:
    """Where liveness and readiness answer, and how long readiness waits for the store.

    Attributes:
        live_path: liveness's path (`None`: not served).  On the middleware a path of the
            whole site (`/healthz`); on a mounted app, below its mount point.
        ready_path: readiness's path (`None`: not served), likewise.
        timeout: seconds readiness waits for the store before answering 503
            `store_timeout`; keep it below the probe's own timeout.
    """

    live_path: str | None = "/healthz"
    ready_path: str | None = "/readyz"
    timeout: float = 3.0

    def __post_init__(self) -> None:
        for path in (self.live_path, self.ready_path):
            if path is not None and not path.startswith("/"):
                raise ValueError(f"Health paths start with '/', not {path!r}")
        if self.live_path is not None and self.live_path == self.ready_path:
            raise ValueError("Health: live_path and ready_path must differ")
        if isinstance(self.timeout, bool) or not self.timeout > 0:
            raise ValueError(f"Health.timeout must be positive, not {self.timeout!r}")

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(path for path in (self.live_path, self.ready_path) if path is not None)


class Probes:
    """The ASGI side of `Health` for one app: its store, its metrics, and the readiness state
    it logs (once when readiness starts failing, once when it recovers)."""

    def __init__(self, store: Store, settings: Health, metrics: Metrics = NO_METRICS) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self._checks = isinstance(store, HealthChecker)
        self.failing: str | None = None  # the reason readiness failed last, if it did

    def route(self, path: str) -> bool:
        """Whether `path` is one of ours."""
        return path == self.settings.live_path or path == self.settings.ready_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            response = error_response(errors.method_not_allowed(method, ALLOW))
        elif path == self.settings.live_path:
            response = json_response(errors.ALIVE, {"Cache-Control": "no-store"})
        else:
            error = await self.readiness()
            if error is None:
                response = json_response(errors.READY, {"Cache-Control": "no-store"})
            else:
                response = error_response(error)
        if method == "HEAD":
            await send_head(response, send)
        else:
            await response(scope, receive, send)

    async def readiness(self) -> ApiError | None:
        """One bounded round trip to the store, now: `None` when it can serve, else the 503."""
        store = self.store
        timeout = self.settings.timeout
        cause: BaseException | None = None
        try:
            async with asyncio.timeout(timeout):
                if self._checks:
                    await store.check()  # type: ignore[attr-defined]
                else:
                    await store.get(*_PROBE_KEY)
            error = None
        except TimeoutError:
            error = errors.not_ready(errors.STORE_TIMEOUT_REASON, timeout=timeout)
        except StoreUnavailable as exc:
            error, cause = errors.not_ready(errors.STORE_UNAVAILABLE_REASON), exc
        except SchemaMismatch as exc:
            error, cause = _schema_error(exc), exc
        except Exception as exc:
            error, cause = errors.not_ready(errors.STORE_ERROR_REASON), exc
        self._log(error, cause)
        if error is not None:
            assert error.reason is not None
            self.metrics.unavailable(error.reason)
        return error

    def _log(self, error: ApiError | None, cause: BaseException | None) -> None:
        """A line when readiness starts failing or fails for another reason, one when it
        recovers: not one per probe."""
        if error is None:
            if self.failing is not None:
                logger.warning("readiness: ready again (was %s)", self.failing)
                self.failing = None
            return
        if error.reason != self.failing:
            self.failing = error.reason
            logger.warning(
                "readiness: not ready (%s): %s",
                error.reason,
                cause if cause is not None else error.body["detail"],
                exc_info=cause if error.reason == errors.STORE_ERROR_REASON else None,
            )


def _schema_error(exc: SchemaMismatch) -> ApiError:
    if exc.found is None:
        return errors.not_ready(errors.SCHEMA_MISSING_REASON)
    reason = errors.SCHEMA_NEWER_REASON if exc.newer else errors.SCHEMA_OLDER_REASON
    return errors.not_ready(reason, found=exc.found, expected=exc.expected)
