"""Serve the endpoint at a path in front of any ASGI app (FastAPI, Django, a bare callable)."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from .app import PlatformMetadataApp, route_path
from .auth import AuthBackend
from .limits import Limits
from .policies import PolicySource
from .policy import PolicyLimits
from .stores.base import Store

__all__ = ["PlatformMetadataMiddleware"]


class PlatformMetadataMiddleware:
    """Pure ASGI middleware: requests to `path` go to the metadata endpoint, the rest to `app`.

    The endpoint answers at `path` with and without the trailing slash (the platform policy
    at `path + "policy/"`, also without the slash), and its OpenAPI
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
    ) -> None:
        self.app = app
        self.path = "/" + path.strip("/")
        paths = [self.path, self.path + "/", self.path + "/policy", self.path + "/policy/"]
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
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = route_path(scope)
            if path in self._paths:
                root_path = scope.get("root_path", "") + self.path
                await self.metadata_app({**scope, "root_path": root_path}, receive, send)
                return
        await self.app(scope, receive, send)
