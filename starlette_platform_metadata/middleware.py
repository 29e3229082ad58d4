"""Serve the endpoint at a path in front of any ASGI app (FastAPI, Django, a bare callable)."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from .app import RESOURCES, PlatformMetadataApp, route_path
from .auth import AuthBackend
from .feed import OnChange
from .history import DEFAULT_HISTORY_PER_USER
from .limits import Limits
from .policies import PolicySource
from .policy import PolicyLimits
from .stores.base import Store

__all__ = ["PlatformMetadataMiddleware"]


class PlatformMetadataMiddleware:
    """Pure ASGI middleware: requests to `path` go to the metadata endpoint, the rest to `app`.

    The endpoint answers at `path` with and without the trailing slash (the platform policy
    at `path + "policy/"`, history at `path + "history/"` and `path + "restore/"`, also
    without the slash), and its OpenAPI
    document at `path + "openapi.json"` unless `openapi=False` (then that path goes to `app`
    like any other).  Non-http scopes (lifespan, websocket) pass through untouched.
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
        history_per_user: int = DEFAULT_HISTORY_PER_USER,
        on_change: OnChange | None = None,
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
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = route_path(scope)
            if path in self._paths:
                root_path = scope.get("root_path", "") + self.path
                await self.metadata_app({**scope, "root_path": root_path}, receive, send)
                return
        await self.app(scope, receive, send)
