"""How a resource is served: one dispatcher over the request path and the response layer.

A resource is a plain class: `allow` (its methods, in DRF's order), `options` (its OPTIONS
body), `query_names` (the parameters it reads) and one async handler per method (`get`,
`put`, `patch`, `delete`, `post`; HEAD runs `get`), each taking a `Request` and answering an
`Answer`.  `Served(resource, services, name)` is its ASGI app: authentication first, then the
method (a 401 before a 405, as DRF), OPTIONS, the handler, and every refusal rendered as the
contract's JSON error in one place, as Starlette's `HTTPEndpoint` dispatches and derives
`Allow` itself.
"""

from __future__ import annotations

import logging
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from . import errors, request
from .auth import AuthBackend, AuthScheme, Identity
from .conditional import Conditions
from .errors import ApiError
from .events import EventHub
from .history import Writer
from .jsontext import dump
from .limits import Limits
from .metrics import NO_METRICS, Metrics, method_label
from .payload import ClientDisconnected
from .policies import Policies
from .request import Grant, Query, Reach
from .responses import Answer, error_response, send_head
from .stores.base import Store, StoreUnavailable

__all__ = ["Request", "Resource", "Served", "Services"]

logger = logging.getLogger("starlette_platform_metadata")


class Outage:
    """Requests answered 503 since the store last failed.  An outage (a full disk, a
    database restart) is logged once when it starts and once when it ends, not once per
    refused request, whichever resource answered them."""

    def __init__(self) -> None:
        self.refused: int | None = None

    def unavailable(self, exc: StoreUnavailable) -> None:
        if self.refused is None:
            self.refused = 0
            logger.warning("metadata store unavailable, answering 503: %s", exc)
        self.refused += 1

    def recovered(self) -> None:
        if self.refused is not None:
            logger.warning(
                "metadata store available again after %d request(s) answered 503", self.refused
            )
            self.refused = None


@dataclass(slots=True)
class Services:
    """What the resources of one app share."""

    auth: AuthBackend
    store: Store
    limits: Limits
    policies: Policies
    writer: Writer
    hub: EventHub
    metrics: Metrics = NO_METRICS
    auth_scheme: AuthScheme = field(init=False)
    outage: Outage = field(default_factory=Outage)

    def __post_init__(self) -> None:
        self.auth_scheme = AuthScheme.of(self.auth)


class Request:
    """One request on its way through a resource: the connection, the authenticated caller,
    the query as the resource reads it, and the app's services."""

    __slots__ = ("conn", "identity", "method", "query", "receive", "scope", "services")

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        conn: HTTPConnection,
        identity: Identity,
        query: Query,
        services: Services,
    ) -> None:
        self.scope = scope
        self.receive = receive
        self.conn = conn
        self.identity = identity
        self.query = query
        self.services = services
        self.method: str = scope["method"]

    async def authorize(
        self, reach: Reach, platform_key: str, target: str | None = None
    ) -> Grant:
        """`request.authorize` for this caller."""
        auth = self.services.auth
        return await request.authorize(auth, self.identity, platform_key, target, reach)

    async def json(self, max_depth: int | None = None) -> object:
        """The body as strict JSON, under the limits (`max_depth`: the metadata's)."""
        limits = self.services.limits
        depth = limits.max_depth if max_depth is None else max_depth
        return await request.read_json(self.conn, self.receive, limits, depth)

    def conditions(self) -> Conditions:
        return request.conditions(self.conn, self.services.limits)


Handler = Callable[[Request], Awaitable[Answer]]


class Resource(Protocol):
    """A resource: its methods, its OPTIONS body and the query parameters it reads; the
    handlers are found by method name."""

    allow: str
    options: dict[str, object]
    query_names: frozenset[bytes]


class Served:
    """The ASGI app of one resource; `name` is its label in metrics (`"metadata"`, ...)."""

    def __init__(self, resource: Resource, services: Services, name: str) -> None:
        self.resource = resource
        self.services = services
        self.name = name
        # Read once: with metrics off, a request reads no clock and makes no call for them.
        self.metrics: Metrics | None = services.metrics if services.metrics.enabled else None
        self.methods = frozenset(resource.allow.split(", "))
        self.options_body = dump(resource.options).encode()
        # Found once: HEAD runs `get`.
        self.handlers: dict[str, Handler] = {
            method: getattr(resource, "get" if method == "HEAD" else method.lower())
            for method in self.methods
            if method != "OPTIONS"
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        outage = self.services.outage
        metrics = self.metrics
        started = time.perf_counter() if metrics is not None else 0.0
        try:
            response = await self._handle(scope, receive)
            if outage.refused is not None:
                outage.recovered()
        except ApiError as error:
            response = error_response(error)
            if error.reason is not None:  # a 503 (too many streams)
                self.services.metrics.unavailable(error.reason)
        except ClientDisconnected:
            return
        except StoreUnavailable as exc:
            outage.unavailable(exc)
            self.services.metrics.unavailable(errors.STORE_UNAVAILABLE_REASON)
            response = error_response(errors.service_unavailable())
        except Exception as exc:
            request_id = uuid.uuid4().hex
            # The request line without its query or headers, and a traceback with the
            # credentials cut out (an exception message may quote them): no token in the log.
            logger.error(
                "unexpected error [request_id=%s] %s %r\n%s",
                request_id,
                scope.get("method"),
                scope.get("path"),
                _redacted_traceback(exc, scope),
            )
            response = error_response(errors.server_error(request_id))
            response.headers["X-Request-ID"] = request_id
        if metrics is not None:
            # Until the answer is ready to send: a live stream counts its setup, not its life.
            seconds = time.perf_counter() - started
            metrics.request(self.name, method_label(scope["method"]), response.status_code, seconds)
        if scope["method"] == "HEAD":
            await send_head(response, send)
        else:
            await response(scope, receive, send)

    async def _handle(self, scope: Scope, receive: Receive) -> Answer:
        services = self.services
        conn = HTTPConnection(scope, receive)
        identity = await request.authenticate(services.auth, services.auth_scheme, conn)
        method: str = scope["method"]
        if method not in self.methods:
            raise errors.method_not_allowed(method, self.resource.allow)
        if method == "OPTIONS":
            return Response(
                self.options_body,
                headers={"Allow": self.resource.allow},
                media_type="application/json",
            )
        query = Query(scope["query_string"], self.resource.query_names, services.limits)
        return await self.handlers[method](Request(scope, receive, conn, identity, query, services))


def _redacted_traceback(exc: BaseException, scope: Scope) -> str:
    """The formatted traceback with every word of the Authorization header cut out."""
    text = "".join(traceback.format_exception(exc))
    for name, value in scope.get("headers", []):
        if name.lower() == b"authorization":
            words = value.decode("latin-1").split()
            # The scheme word ("Token") stays readable when there is one; the credentials go.
            for secret in words[1:] if len(words) > 1 else words:
                text = text.replace(secret, "[redacted]")
    return text
