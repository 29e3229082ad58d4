"""The demo web app: its page at `/`, its static files under `/demo/static/`, and `GET /demo/me`.

Plain HTML, CSS and JavaScript modules from `web/`, no build step.  The page talks to the
metadata endpoint through the package's TypeScript client (`clients/js`), whose committed
build `web/client/` links to and `/demo/static/client/` serves, with the token the user signs
in with; the one thing the endpoint cannot tell it is which platforms the user belongs to,
which `GET /demo/me` answers from the host's own tables.

Only these routes carry the demo's security headers (a Content-Security-Policy without inline
script or style, framing refused, among others), their 404 and 405 included: the metadata
endpoint's answers stay byte for byte as API.md says.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from starlette_platform_metadata import AuthenticationFailed
from starlette_platform_metadata.errors import NOT_AUTHENTICATED

from .auth import TokenAuthBackend

__all__ = ["CLIENT_DIR", "CONTENT_SECURITY_POLICY", "WEB_DIR", "demo_routes"]

WEB_DIR = Path(__file__).resolve().parent / "web"
#: The JavaScript client's build (`clients/js/dist`): in a checkout `web/client` is a symbolic
#: link to it, so an editable install serves the committed build with no step of its own; a
#: wheel or sdist holds the files themselves (pyproject.toml's package data).
CLIENT_DIR = WEB_DIR / "client"

#: Scripts and styles from this origin only, no inline script, no eval; requests to this origin
#: only; no plugins, frames or form posts anywhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    # `frame-ancestors 'none'` for browsers that predate it (issue 22): no site may frame the
    # page to trick a click on it.
    (b"x-frame-options", b"DENY"),
]
# The files change with the package: revalidate instead of running a stale module (unless the
# route says otherwise: `/demo/me` is `no-store`).
_CACHE_CONTROL = (b"cache-control", b"no-cache")


class DemoHeaders:
    """Pure ASGI middleware adding the demo's security headers to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in _HEADERS}
                headers = [h for h in message.get("headers", []) if h[0].lower() not in names]
                if not any(name.lower() == _CACHE_CONTROL[0] for name, _ in headers):
                    headers.append(_CACHE_CONTROL)
                message = {**message, "headers": [*headers, *_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def demo_routes(
    auth: TokenAuthBackend,
    api_path: str,
    *,
    http_error: Callable[[Request, Exception], Awaitable[Response]],
) -> list[BaseRoute]:
    """The demo's routes, for the host's `Starlette(routes=...)`; `api_path` is where the
    metadata endpoint is mounted, `http_error` the host's answer to an `HTTPException` (a
    404, a 405), which the demo's routes give with the demo's headers."""

    async def index(request: Request) -> Response:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html; charset=utf-8")

    async def me(request: Request) -> Response:
        """Who the token belongs to, and its platforms with the admin flag on each."""
        challenge = {"WWW-Authenticate": "Token", "Cache-Control": "no-store"}
        try:
            identity = await auth.authenticate(request)
        except AuthenticationFailed as exc:
            return JSONResponse({"detail": exc.detail}, status_code=401, headers=challenge)
        if identity is None:
            return JSONResponse({"detail": NOT_AUTHENTICATED}, status_code=401, headers=challenge)
        user_id, _generation = identity.id
        platforms = await auth.db.memberships(user_id)
        body = {
            "username": identity.username,
            "platforms": [{"platform_key": m.key, "is_admin": m.is_admin} for m in platforms],
            "api": api_path.rstrip("/") + "/",
        }
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    demo = Router(
        routes=[
            Route("/", index),
            Route("/demo/me", me),
            # Its own mount: `StaticFiles` serves no file whose real path is outside its
            # directory, which the link's files are.
            Mount("/demo/static/client", app=StaticFiles(directory=CLIENT_DIR), name="client"),
            Mount("/demo/static", app=StaticFiles(directory=WEB_DIR), name="static"),
        ],
        # The errors are answered inside the headers: left to the host app's own handler,
        # outside this router, a missing static file or a POST to the page went without them.
        middleware=[
            Middleware(DemoHeaders),
            Middleware(ExceptionMiddleware, handlers={HTTPException: http_error}),
        ],
    )
    # One mount for all of them, so that the headers wrap exactly the demo's routes; any
    # other path (but the metadata endpoint's, which its middleware answers before any route)
    # falls through the mount's router to the host's JSON 404, with the headers too.
    return [Mount("", app=demo)]
