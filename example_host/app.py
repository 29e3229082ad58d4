"""The example host as a Starlette app: the metadata endpoint over the host's own users, the
demo web app at `/` (web.py), liveness and readiness at `/healthz` and `/readyz`, and, when on,
Prometheus metrics at `/metrics` (docs/monitoring.md)."""

from __future__ import annotations

import contextlib
import gc
import os
from dataclasses import fields
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from starlette_platform_metadata import DatabaseStore, PlatformMetadataMiddleware
from starlette_platform_metadata.events import EventSettings
from starlette_platform_metadata.health import Health
from starlette_platform_metadata.history import DEFAULT_HISTORY_PER_USER
from starlette_platform_metadata.metrics import Metrics

from .auth import TokenAuthBackend
from .db import DEFAULT_URL, HostDB
from .jwt_auth import HostAuthBackend, JWTSettings
from .web import demo_routes

__all__ = [
    "HEALTH",
    "HISTORY_ENV",
    "LISTEN_ENV",
    "METRICS_ENV",
    "METRICS_PATH",
    "MOUNT_PATH",
    "create_app",
    "create_app_from_env",
]

MOUNT_PATH = "/api/core/users/platform-metadata"
#: Objects allocated (net) between two young collections in a served process (default 700).
YOUNG_GC_THRESHOLD = 10_000
#: Revisions kept per user (`serve --history-per-user` sets it for every worker).
HISTORY_ENV = "EXAMPLE_HOST_HISTORY_PER_USER"
#: Where live changes LISTEN, when the database URL goes through PgBouncer
#: (`serve --listen-database` sets it for every worker).
LISTEN_ENV = "EXAMPLE_HOST_LISTEN_DATABASE_URL"
#: `1`: serve Prometheus metrics at `METRICS_PATH` (`serve --metrics` sets it for every worker).
METRICS_ENV = "EXAMPLE_HOST_METRICS"
METRICS_PATH = "/metrics"
#: Liveness at `/healthz`, readiness at `/readyz` (a store round trip of at most 3 s).
HEALTH = Health()


def create_app(
    database_url: str,
    *,
    sqlite_synchronous: str = "NORMAL",
    freeze_gc: bool = False,
    history_per_user: int = DEFAULT_HISTORY_PER_USER,
    events: EventSettings | None = None,
    metrics: bool = False,
    jwt: JWTSettings | None = None,
    listen_url: str | None = None,
) -> Starlette:
    """The host app on `database_url`: host tables and metadata in the same database.

    Its lifespan connects both (creating missing tables) at startup and closes them at shutdown.
    `sqlite_synchronous` is the store's SQLite `PRAGMA synchronous`; PostgreSQL ignores it.
    `freeze_gc` hands what exists after startup to `gc.freeze()` and raises the collector's
    young-generation threshold to `YOUNG_GC_THRESHOLD`, as a served process should.
    `history_per_user`: revisions kept per user and platform (0: history off).
    `events`: bounds and timings of live-change streams.
    `metrics`: serve Prometheus metrics at `/metrics` (needs prometheus-client, the `metrics`
    or `example` extra), every worker's summed when `$PROMETHEUS_MULTIPROC_DIR` is set.
    `jwt`: also accept Bearer JWTs of this issuer (jwt_auth.py).
    `listen_url`: PostgreSQL only, a direct URL for the LISTEN connections (the store's and
    the host tables' generation watch) when `database_url` goes through a transaction pooler.
    """
    db = HostDB(database_url, listen_url=listen_url)
    auth = TokenAuthBackend(db)
    endpoint_auth = auth if jwt is None else HostAuthBackend(auth, jwt)
    store = DatabaseStore(database_url, synchronous=sqlite_synchronous, listen_url=listen_url)
    reporter: Metrics | None = None
    routes: list[BaseRoute] = []
    if metrics:
        from starlette_platform_metadata.prometheus import PrometheusMetrics

        prometheus = reporter = PrometheusMetrics()
        routes.append(Route(METRICS_PATH, prometheus.asgi_app(), methods=["GET", "HEAD"]))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await db.connect()
        try:
            await store.connect()
            # Everything alive now (modules, classes, caches) lives as long as the process:
            # take it out of the cyclic collector's sight.  Each full collection otherwise
            # walks some 50,000 objects, 15-20 ms with the event loop stopped, a few times a
            # second under load: measured, PATCH p99 23 ms with, 11 ms without (64 connections).
            thresholds = gc.get_threshold()
            if freeze_gc:
                gc.collect()
                gc.freeze()
                # A young generation larger than what the requests in flight hold: at the
                # default 700 objects the collector ran every 20 requests (64 connections),
                # walked the in-flight requests' objects and found nothing to free, 4 % of
                # the worker; at 10,000 it runs a few times a minute.
                gc.set_threshold(YOUNG_GC_THRESHOLD, *thresholds[1:])
            try:
                yield
            finally:
                gc.set_threshold(*thresholds)
                if isinstance(endpoint_auth, HostAuthBackend):
                    await endpoint_auth.aclose()
                await store.disconnect()
                if metrics:
                    prometheus.close()  # its last figures, for the other workers' scrapes
        finally:
            await db.disconnect()

    app = Starlette(
        # The demo web app at `/`; the metadata endpoint is served by the middleware below.
        routes=[*routes, *demo_routes(auth, MOUNT_PATH, http_error=_json_http_error)],
        exception_handlers={HTTPException: _json_http_error},
        middleware=[
            # Middleware rather than a Mount: it serves the path with and without the trailing
            # slash instead of redirecting, which `curl` without -L would not follow.
            Middleware(
                PlatformMetadataMiddleware,
                auth=endpoint_auth,
                store=store,
                path=MOUNT_PATH,
                history_per_user=history_per_user,
                events=events,
                health=HEALTH,
                metrics=reporter,
            )
        ],
        lifespan=lifespan,
    )
    app.state.db = db
    app.state.store = store
    return app


async def _json_http_error(request: Request, exc: Exception) -> Response:
    """The host's own 404/405 in DRF's JSON shape, like every answer of the endpoint."""
    assert isinstance(exc, HTTPException)
    detail = "Not found." if exc.status_code == 404 else exc.detail
    if exc.status_code == 405:
        detail = f'Method "{request.method}" not allowed.'
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)


def create_app_from_env() -> Starlette:
    """`create_app($DATABASE_URL)`, for `uvicorn --factory` and its worker processes.

    `$EXAMPLE_HOST_SQLITE_SYNCHRONOUS` (default `NORMAL`) sets the store's SQLite
    `PRAGMA synchronous`, e.g. `FULL` (benchmarks/run.py --synchronous); ignored for PostgreSQL.
    `$EXAMPLE_HOST_HISTORY_PER_USER` (default 100) the revisions kept per user.
    `$EXAMPLE_HOST_METRICS=1` serves Prometheus metrics at `/metrics`.
    `$EXAMPLE_HOST_JWT_JWKS_URL` (with `..._ISSUER`, `..._AUDIENCE`, `..._ALGORITHMS`, as
    `serve --jwks-url ...` sets them) turns JWT auth on.
    `$EXAMPLE_HOST_LISTEN_DATABASE_URL` where live changes LISTEN (default: `$DATABASE_URL`).
    """
    url = os.environ.get("DATABASE_URL") or DEFAULT_URL
    synchronous = os.environ.get("EXAMPLE_HOST_SQLITE_SYNCHRONOUS") or "NORMAL"
    history = int(os.environ.get(HISTORY_ENV) or DEFAULT_HISTORY_PER_USER)
    return create_app(
        url,
        sqlite_synchronous=synchronous,
        freeze_gc=True,
        history_per_user=history,
        events=events_from_env(),
        metrics=os.environ.get(METRICS_ENV) == "1",
        jwt=JWTSettings.from_env(),
        listen_url=os.environ.get(LISTEN_ENV) or None,
    )


#: `EventSettings` fields read from `$EXAMPLE_HOST_EVENTS_<FIELD>` (e.g.
#: `EXAMPLE_HOST_EVENTS_MAX_STREAMS=5000`, `EXAMPLE_HOST_EVENTS_RECHECK=1`).
EVENTS_ENV = "EXAMPLE_HOST_EVENTS_"


def events_from_env() -> EventSettings:
    """Live-change settings from the environment, the package's defaults for the rest."""
    given: dict[str, float] = {}
    for field in fields(EventSettings):
        value = os.environ.get(EVENTS_ENV + field.name.upper())
        if value:
            given[field.name] = int(value) if field.type in (int, "int") else float(value)
    return EventSettings(**given)  # type: ignore[arg-type]
