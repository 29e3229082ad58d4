"""Serve the endpoint at a path in front of any ASGI app (FastAPI, Django, a bare callable)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from .app import RESOURCES, PlatformMetadataApp, route_path
from .auth import AuthBackend
from .events import EventSettings
from .feed import OnChange
from .health import Health, Probes
from .history import DEFAULT_HISTORY_PER_USER
from .limits import Limits
from .metrics import Metrics
from .policies import PolicySource
from .policy import PolicyLimits
from .stores.base import Store

__all__ = ["CORS_DEFAULTS", "PlatformMetadataMiddleware"]

logger = logging.getLogger("starlette_platform_metadata")

#: What `cors=` adds to Starlette's `CORSMiddleware` options unless given: every method (the
#: endpoint itself answers 405), the request headers the API reads, and the response headers a
#: browser client needs to see (`ETag` for conditional writes above all).
CORS_DEFAULTS: Mapping[str, Any] = {
    "allow_methods": ["*"],
    "allow_headers": [
        "Authorization", "Content-Type", "If-Match", "If-None-Match", "Last-Event-ID"
    ],
    "expose_headers": ["ETag", "Retry-After", "X-Request-ID"],
}


class PlatformMetadataMiddleware:
    """Pure ASGI middleware: requests to `path` go to the metadata endpoint, the rest to `app`.

    The endpoint answers at `path` with and without the trailing slash (the platform policy
    at `path + "policy/"`, history at `path + "history/"` and `path + "restore/"`, live
    changes at `path + "events/"`, also without the slash), and its OpenAPI
    document at `path + "openapi.json"` unless `openapi=False` (then that path goes to `app`
    like any other).  Non-http scopes (lifespan, websocket) pass through untouched.

    `cors`: Starlette `CORSMiddleware` options (`{"allow_origins": [...]}`, over
    `CORS_DEFAULTS`) for the endpoint's paths, so that browser preflights, which carry no
    credentials, are answered before authentication, wherever this middleware sits among
    the host's.  Without it, a `CORSMiddleware` must run outside this one.

    `health=Health()`: liveness at `/healthz` and readiness at `/readyz`, paths of the whole
    site (`Health`'s fields), without authentication.  `metrics`: as the app's.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        auth: AuthBackend,
        store: Store,
        path: str = "/api/core/users/platform-metadata/",
        limits: Limits | None = None,
        openapi: bool = True,
        policy_limits: PolicyLimits | None = None,
        policies: PolicySource | None = None,
        cors: Mapping[str, Any] | None = None,
        history_per_user: int = DEFAULT_HISTORY_PER_USER,
        on_change: OnChange | None = None,
        events: EventSettings | None = None,
        health: Health | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.app = app
        self.path = "/" + path.strip("/")
        paths = [self.path, self.path + "/"]
        for name in RESOURCES:
            paths += [f"{self.path}/{name}", f"{self.path}/{name}/"]
        if openapi:
            paths.append(self.path + "/openapi.json")
        self._paths = frozenset(paths)
        self.metadata_app = PlatformMetadataApp(
            auth=auth,
            store=store,
            limits=limits,
            openapi=openapi,
            policy_limits=policy_limits,
            policies=policies,
            history_per_user=history_per_user,
            on_change=on_change,
            events=events,
            metrics=metrics,
        )
        # Paths of the whole site, not below `path`: answered here, not by the app.
        self._probes = (
            None
            if health is None
            else Probes(self.metadata_app.services.store, health, self.metadata_app.metrics)
        )
        self._endpoint: ASGIApp = (
            self.metadata_app
            if cors is None
            else CORSMiddleware(self.metadata_app, **{**CORS_DEFAULTS, **cors})
        )
        self._cors = cors is not None
        self._warned_preflight = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = route_path(scope)
            if path in self._paths:
                if scope["method"] == "OPTIONS" and not self._cors:
                    self._check_preflight(scope)
                root_path = scope.get("root_path", "") + self.path
                await self._endpoint({**scope, "root_path": root_path}, receive, send)
                return
            if self._probes is not None and path is not None and self._probes.route(path):
                await self._probes(scope, receive, send, path)
                return
        await self.app(scope, receive, send)

    def _check_preflight(self, scope: Scope) -> None:
        """Say once why browsers fail: a preflight reaching us met no `CORSMiddleware` on its
        way (that one answers every preflight itself), so the endpoint answers it as any
        request without credentials: 401, no CORS headers."""
        if self._warned_preflight:
            return
        headers = Headers(scope=scope)
        if "origin" in headers and "access-control-request-method" in headers:
            self._warned_preflight = True
            logger.warning(
                "CORS preflight from %r reached the metadata endpoint: no CORSMiddleware runs "
                "before PlatformMetadataMiddleware, so browsers get no CORS headers; pass it "
                "cors={...} or add CORSMiddleware outside it",
                headers["origin"],
            )
