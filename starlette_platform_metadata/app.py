"""`PlatformMetadataApp`: the endpoint as an ASGI app to mount anywhere."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from . import errors
from . import openapi as _openapi
from .auth import AuthBackend
from .events import EventHub, EventSettings
from .feed import Feed, OnChange
from .health import Health, Probes
from .history import DEFAULT_HISTORY_PER_USER, Writer, find_revision, restore_change
from .instrumented import timed
from .limits import Limits
from .listing import export_chunks, import_ndjson
from .metrics import NO_METRICS, Metrics, Reporter
from .policies import Policies, PolicySource
from .policy import PolicyLimits
from .resource import Resource, Served, Services
from .resources.events import EventsResource
from .resources.history import HistoryResource, RestoreResource
from .resources.metadata import MetadataResource
from .resources.policy import PolicyResource
from .resources.users import UsersResource
from .responses import error_response
from .stores.base import HistoryReader, Record, RecordLister, Revision, Store

__all__ = ["RESOURCES", "PlatformMetadataApp"]

#: The resources below the mount point, each answered with and without its trailing slash.
RESOURCES = ("policy", "history", "restore", "events", "users")


def route_path(scope: Scope) -> str | None:
    """The path below the mount point (Starlette keeps the full path and sets `root_path`).

    `None` when the client spelled a `/` as `%2F`: servers decode it before routing, so
    `/api%2Fcore/...` would otherwise reach the endpoint under a path a proxy in front does not
    recognise as this one (and may not guard).  No path of ours contains an encoded slash.
    """
    raw_path = scope.get("raw_path")
    if raw_path is not None and b"%2f" in raw_path.partition(b"?")[0].lower():
        return None
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        rest = path[len(root_path) :]
        if not rest or rest.startswith("/"):
            return rest
    return path


class PlatformMetadataApp:
    """The metadata endpoint as an ASGI app.

    Mount it where the contract expects it::

        Mount("/api/core/users/platform-metadata", app=PlatformMetadataApp(auth=..., store=...))

    It answers at the mount point itself, with or without the trailing slash; the platform
    policy at `<mount>/policy/` (also without the slash); and serves
    its OpenAPI 3.1 document, without authentication, at `<mount>/openapi.json` unless
    `openapi=False` (then that path is a 404 like any other).  A mounted app's lifespan never
    runs, so `DatabaseStore` connects on first use.

    `policy_limits` bounds what a policy PUT may hold.  `policies` lets the host fix some
    platforms' policies: a mapping `{platform_key: Policy | dict}`, or a callable
    `(platform_key) -> Policy | dict | None` (sync or async; `None`: the stored policy).  A
    fixed policy is answered on GET and refused on PUT and DELETE (403).

    History (`<mount>/history/`, `<mount>/restore/`): every change keeps a revision, the
    newest `history_per_user` per user (0 turns history off), with stores that implement
    `HistoryReader` (all of ours do).  `on_change` is called with every committed change
    (`feed.Committed`), sync or async, after the commit and before the response; what it
    raises is logged, never answered.  More callbacks: `app.feed.subscribe(callback)`.

    Live changes (`<mount>/events/`, Server-Sent Events) need history on and a store with
    `ChangeReader` (all of ours); `events` bounds them (`EventSettings`: open streams per
    process, heartbeat, access re-check).  `app.hub.close_all()` ends every open stream.
    Its `send_timeout` also bounds how long an export's client may take to accept a chunk.

    `health=Health()` serves liveness at `<mount>/healthz` and readiness at `<mount>/readyz`
    (paths and readiness's store timeout are its fields), without authentication.
    `metrics` reports requests, 503s, store latencies, streams and more
    (`prometheus.PrometheusMetrics`, the `metrics` extra; default: nothing, at no cost).
    docs/monitoring.md describes both.
    """

    def __init__(
        self,
        *,
        auth: AuthBackend,
        store: Store,
        limits: Limits | None = None,
        openapi: bool = True,
        policy_limits: PolicyLimits | None = None,
        policies: PolicySource | None = None,
        history_per_user: int = DEFAULT_HISTORY_PER_USER,
        on_change: OnChange | None = None,
        events: EventSettings | None = None,
        health: Health | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.auth = auth
        self.store = store
        self.limits = limits or Limits()
        self.metrics = metrics = metrics or NO_METRICS
        if metrics.enabled and isinstance(store, Reporter):
            store.report_to(metrics)
        # What every part of the app calls: the store, its operations timed when metrics are on.
        used = timed(store, metrics)
        self.policies = Policies(used, policy_limits, policies, metrics=metrics)
        self.feed = Feed()
        if on_change is not None:
            self.feed.subscribe(on_change)
        self.writer = Writer(used, history_per_user, self.feed, metrics)
        self.hub = EventHub(used, self.feed, events, metrics)
        self.services = services = Services(
            auth, used, self.limits, self.policies, self.writer, self.hub, metrics
        )
        self.probes = None if health is None else Probes(used, health, metrics)
        metadata = Served(MetadataResource(), services, "metadata")
        self._routes: dict[str, Served] = {"": metadata, "/": metadata}
        resources: tuple[Resource, ...] = (
            PolicyResource(),
            HistoryResource(),
            RestoreResource(),
            EventsResource(),
            UsersResource(),
        )
        for name, resource in zip(RESOURCES, resources, strict=True):
            served = Served(resource, services, name)
            self._routes[f"/{name}"] = self._routes[f"/{name}/"] = served
        self.openapi = (
            _openapi.build(self.limits, services.auth_scheme, self.policies.limits)
            if openapi
            else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            # Websockets and lifespan are not ours; a mounted app never sees lifespan anyway.
            if scope["type"] == "lifespan":
                await _lifespan(receive, send)
            return
        path = route_path(scope)
        endpoint = self._routes.get(path) if path is not None else None
        if endpoint is not None:
            await endpoint(scope, receive, send)
        elif path == "/openapi.json" and self.openapi is not None:
            await self._openapi(scope, receive, send, self.openapi)
        elif path is not None and self.probes is not None and self.probes.route(path):
            await self.probes(scope, receive, send, path)
        else:
            await error_response(errors.not_found())(scope, receive, send)

    # --- from the host's own code, without HTTP ------------------------------------------

    async def history(
        self, platform_key: str, username: str, *, before: int | None = None, limit: int = 20
    ) -> list[Revision]:
        """Up to `limit` revisions of the user, newest first, older than version `before` if
        given (the full view: private keys included).  `[]` with a store without history."""
        if not isinstance(self.store, HistoryReader):
            return []
        return await self.store.revisions(platform_key, username, before=before, limit=limit)

    async def restore(
        self, platform_key: str, username: str, version: int, *, actor: str | None = None
    ) -> Record:
        """Write revision `version`'s document as a new change, as a tenant admin's restore
        would: the platform's schema applies, the change gets its revision and reaches
        `on_change`.  Raises `LookupError` when history no longer keeps that version, and the
        refusals of `changes` (`SchemaViolation`, `DocumentTooLarge`)."""
        revision = await find_revision(self.store, platform_key, username, version)
        if revision is None:
            raise LookupError(f"Revision {version} of {username!r} on {platform_key!r} is not kept")
        policy = (await self.policies.current(platform_key)).policy
        change = restore_change(
            revision,
            policy=None if policy.is_default else policy,
            member=False,
            actor=actor,
            max_bytes=self.limits.max_document_bytes,
            max_private_bytes=self.limits.max_private_bytes,
        )
        return await self.writer.write(platform_key, username, change)

    def export_records(
        self,
        platform_key: str,
        *,
        filter: Mapping[str, Any] | None = None,
        members: Callable[[Sequence[str]], Awaitable[Collection[str]]] | None = None,
    ) -> AsyncIterator[bytes]:
        """The platform's stored records matching `filter` as NDJSON chunks, as the admin
        export streams them (one success body per line).  `members(usernames)` answers which
        are members now; `None`: every stored record.  `[]` with a store without `records`."""
        if not isinstance(self.store, RecordLister):
            return _nothing()
        return export_chunks(
            self.store, platform_key, filter=filter, members=members, limits=self.limits
        )

    async def import_records(
        self,
        platform_key: str,
        body: bytes,
        *,
        actor: str | None = None,
        members: Callable[[Sequence[str]], Awaitable[Collection[str]]] | None = None,
    ) -> int:
        """Import NDJSON as the admin import does (all or nothing, a PUT per line by
        `actor`); the number of users written.  Raises `listing.ImportRefused` naming each bad
        line, and `TypeError` for a store without `update_many`."""
        return await import_ndjson(
            body,
            platform_key=platform_key,
            writer=self.writer,
            policies=self.policies,
            limits=self.limits,
            actor=actor,
            members=members,
        )

    @staticmethod
    async def _openapi(
        scope: Scope, receive: Receive, send: Send, document: dict[str, Any]
    ) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            response = error_response(errors.method_not_allowed(scope["method"], "GET, HEAD"))
        else:
            body = _openapi.render(document, scope.get("root_path", ""))
            response = Response(body, media_type="application/json")
        await response(scope, receive, send)


async def _lifespan(receive: Receive, send: Send) -> None:
    """Answer lifespan when served on its own (`uvicorn module:app`)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # an async generator that yields nothing
