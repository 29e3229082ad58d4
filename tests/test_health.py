"""Liveness and readiness (`health=Health()`), on the mounted app and the middleware.

Liveness never touches the store; readiness makes one bounded round trip at every call and
answers 503 naming the reason: the store busy or unreachable, too slow, or its tables another
release's schema.  No authentication, nothing of a tenant in any body."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from starlette_platform_metadata import (
    DatabaseStore,
    Health,
    HealthChecker,
    MemoryStore,
    PlatformMetadataApp,
    PlatformMetadataMiddleware,
    Store,
    StoreUnavailable,
)
from starlette_platform_metadata.stores import EMPTY, Change, Record
from starlette_platform_metadata.stores.sql.schema import SCHEMA_VERSION

from .conftest import DATABASE_KINDS, URL, FakeAuth, close_store, make_store
from .test_postgres_faults import silent_server  # noqa: F401  (a fixture)

pytestmark = pytest.mark.anyio

MOUNT = URL.rstrip("/")


class FlakyStore(MemoryStore):
    """A memory store whose database can be made to fail, hang or break."""

    def __init__(self) -> None:
        super().__init__()
        self.failure: BaseException | None = None
        self.hang = False
        self.calls = 0

    async def check(self) -> None:
        self.calls += 1
        if self.hang:
            await asyncio.Event().wait()
        if self.failure is not None:
            raise self.failure

    async def get(self, platform_key: str, username: str) -> Record:
        self.calls += 1
        if self.failure is not None:
            raise self.failure
        return await super().get(platform_key, username)


class GetOnlyStore:
    """A store of a host's own with no `check()`: readiness reads a record instead."""

    def __init__(self) -> None:
        self.reads: list[tuple[str, str]] = []
        self.down = False

    async def get(self, platform_key: str, username: str) -> Record:
        self.reads.append((platform_key, username))
        if self.down:
            raise StoreUnavailable("down")
        return EMPTY

    async def update(self, platform_key: str, username: str, change: Change) -> Record:
        raise NotImplementedError


HEALTH = Health()


def mounted(store: Store, health: Health | None = HEALTH) -> Starlette:
    app = PlatformMetadataApp(auth=FakeAuth(), store=store, health=health)
    return Starlette(routes=[Mount(MOUNT, app=app)])


async def host_app(request: object) -> PlainTextResponse:
    return PlainTextResponse("host")


def _with_middleware(store: Store, health: Health | None) -> Starlette:
    app = Starlette(routes=[Route("/{path:path}", host_app)])
    app.add_middleware(
        PlatformMetadataMiddleware, auth=FakeAuth(), store=store, path=URL, health=health
    )
    return app


def client_of(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


@pytest.fixture(params=["app", "middleware"])
def where(request: pytest.FixtureRequest) -> str:
    """The mounted app answers below its mount point; the middleware at the site's root."""
    kind: str = request.param
    return kind


def serve(where: str, store: Store, health: Health | None = HEALTH) -> tuple[Starlette, str]:
    """The app serving `health`, and the prefix of its health paths."""
    if where == "app":
        return mounted(store, health), MOUNT
    return _with_middleware(store, health), ""


async def test_liveness_answers_ok_without_touching_a_broken_store(where: str) -> None:
    """A database outage must never get the process restarted: liveness stays 200."""
    store = FlakyStore()
    store.failure = StoreUnavailable("the disk is full")
    app, prefix = serve(where, store)
    async with client_of(app) as client:
        live = await client.get(f"{prefix}/healthz")
        ready = await client.get(f"{prefix}/readyz")
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    assert live.headers["cache-control"] == "no-store"
    assert ready.status_code == 503
    assert store.calls == 1  # readiness's round trip, and nothing from liveness


async def test_readiness_is_ready_on_every_store(store: Store, where: str) -> None:
    """200 `{"status": "ready"}` without any credentials, on memory, SQLite and PostgreSQL,
    also before the store was ever opened (readiness opens it)."""
    app, prefix = serve(where, store)
    async with client_of(app) as client:
        response = await client.get(f"{prefix}/readyz")
    assert (response.status_code, response.json()) == (200, {"status": "ready"})


async def test_readiness_is_asked_again_at_each_call(where: str) -> None:
    """Not remembered from startup: ready, unavailable, ready again as the store goes."""
    store = FlakyStore()
    app, prefix = serve(where, store)
    async with client_of(app) as client:
        first = await client.get(f"{prefix}/readyz")
        store.failure = StoreUnavailable("PostgreSQL unavailable: connection refused")
        down = await client.get(f"{prefix}/readyz")
        store.failure = None
        again = await client.get(f"{prefix}/readyz")
    assert [first.status_code, down.status_code, again.status_code] == [200, 503, 200]
    assert down.json() == {
        "status": "unavailable",
        "reason": "store_unavailable",
        "detail": "The metadata store is busy or unreachable.",
    }
    assert "connection refused" not in down.text  # the cause goes to the log, not the body


async def test_a_hung_store_is_unready_within_the_timeout(where: str) -> None:
    store = FlakyStore()
    store.hang = True
    app, prefix = serve(where, store, Health(timeout=0.2))
    async with client_of(app) as client:
        started = time.monotonic()
        response = await client.get(f"{prefix}/readyz")
    assert time.monotonic() - started < 1.5
    assert response.status_code == 503
    assert response.json()["reason"] == "store_timeout"
    assert response.json()["detail"] == "The metadata store did not answer within 0.2 s."


async def test_a_store_error_is_unready_and_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FlakyStore()
    store.failure = ValueError("a bug in a store")
    async with client_of(mounted(store)) as client:
        with caplog.at_level(logging.WARNING, "starlette_platform_metadata"):
            response = await client.get(f"{MOUNT}/readyz")
    assert (response.status_code, response.json()["reason"]) == (503, "store_error")
    (record,) = caplog.records
    assert "a bug in a store" in record.getMessage() and record.exc_info is not None


async def test_readiness_logs_when_it_starts_failing_and_when_it_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One line per change of state, not one per probe."""
    store = FlakyStore()
    store.failure = StoreUnavailable("SQLite: database is locked")
    async with client_of(mounted(store)) as client:
        with caplog.at_level(logging.WARNING, "starlette_platform_metadata"):
            for _ in range(3):
                await client.get(f"{MOUNT}/readyz")
            store.failure = None
            for _ in range(2):
                await client.get(f"{MOUNT}/readyz")
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "readiness: not ready (store_unavailable): SQLite: database is locked",
        "readiness: ready again (was store_unavailable)",
    ]


@pytest.fixture(params=DATABASE_KINDS)
async def database_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[DatabaseStore]:
    store = make_store(request.param, tmp_path)
    assert isinstance(store, DatabaseStore)
    yield store
    await close_store(store)


async def test_tables_of_a_newer_release_make_it_unready_until_they_are_not(
    database_store: DatabaseStore,
) -> None:
    """A newer release migrated the tables while this process runs: readiness says so at the
    next call (a rolling deploy's old workers leave the load balancer), SQLite and PostgreSQL."""
    store = database_store
    version_table = f"{store.table}_schema"
    async with client_of(mounted(store)) as client:
        assert (await client.get(f"{MOUNT}/readyz")).status_code == 200
        await store.connection.fetch(f"UPDATE {version_table} SET version = $1", 99)
        newer = await client.get(f"{MOUNT}/readyz")
        await store.connection.fetch(f"UPDATE {version_table} SET version = $1", 2)
        older = await client.get(f"{MOUNT}/readyz")
        await store.connection.fetch(
            f"UPDATE {version_table} SET version = $1", SCHEMA_VERSION
        )
        again = await client.get(f"{MOUNT}/readyz")
    assert newer.status_code == 503
    assert newer.json() == {
        "status": "unavailable",
        "reason": "schema_newer",
        "detail": f"The metadata tables are schema version 99, newer than this release's "
        f"{SCHEMA_VERSION}: a newer release has migrated them.",
    }
    assert (older.status_code, older.json()["reason"]) == (503, "schema_older")
    assert again.status_code == 200


async def test_missing_tables_make_it_unready(database_store: DatabaseStore) -> None:
    store = database_store
    await store.connect()
    await store.connection.fetch(f"DROP TABLE {store.table}_schema")
    async with client_of(mounted(store)) as client:
        response = await client.get(f"{MOUNT}/readyz")
    assert (response.status_code, response.json()["reason"]) == (503, "schema_missing")


async def test_a_newer_schema_refuses_a_store_that_opens_on_it(tmp_path: Path) -> None:
    """Opening on a newer release's tables fails with `SchemaMismatch` (still a RuntimeError,
    as before); readiness names it rather than answering 500."""
    url = f"sqlite:///{tmp_path / 'newer.db'}"
    async with DatabaseStore(url) as first:
        await first.connection.fetch("UPDATE platform_metadata_schema SET version = 7")
    store = DatabaseStore(url)
    async with client_of(mounted(store)) as client:
        response = await client.get(f"{MOUNT}/readyz")
    assert (response.status_code, response.json()["reason"]) == (503, "schema_newer")
    assert "version 7" in response.json()["detail"]
    with pytest.raises(RuntimeError, match="schema version 7"):
        await store.get("acme-corp", "john_doe")
    await store.disconnect()


async def test_a_hung_postgresql_is_unready_within_the_timeout(
    silent_server: int,  # noqa: F811
) -> None:
    """Needs no PostgreSQL: a server that accepts and never answers (its busy_timeout is
    longer than readiness's timeout, which bounds the answer)."""
    store = DatabaseStore(f"postgresql://u:p@127.0.0.1:{silent_server}/db", busy_timeout=5.0)
    async with client_of(mounted(store, Health(timeout=0.5))) as client:
        started = time.monotonic()
        response = await client.get(f"{MOUNT}/readyz")
        elapsed = time.monotonic() - started
    await store.disconnect()
    assert (response.status_code, response.json()["reason"]) == (503, "store_timeout")
    assert elapsed < 2.0, elapsed


async def test_a_store_without_check_is_read_instead() -> None:
    """A host's store with `get` alone: readiness reads a record no request can name."""
    store = GetOnlyStore()
    assert not isinstance(store, HealthChecker)
    async with client_of(mounted(store)) as client:  # type: ignore[arg-type]
        ready = await client.get(f"{MOUNT}/readyz")
        store.down = True
        down = await client.get(f"{MOUNT}/readyz")
    assert (ready.status_code, down.status_code) == (200, 503)
    assert down.json()["reason"] == "store_unavailable"
    platform_key, username = store.reads[0]
    assert platform_key == "" and username.startswith("\x01")


async def test_health_answers_get_and_head_only(where: str) -> None:
    app, prefix = serve(where, MemoryStore())
    async with client_of(app) as client:
        head = await client.head(f"{prefix}/readyz")
        post = await client.post(f"{prefix}/healthz")
    assert (head.status_code, head.content) == (200, b"")
    assert post.status_code == 405
    assert post.headers["allow"] == "GET, HEAD"
    assert post.json() == {"detail": 'Method "POST" not allowed.'}


async def test_health_is_opt_in() -> None:
    """Without `health=`, the app answers its paths 404 and the middleware passes them on."""
    async with client_of(mounted(MemoryStore(), None)) as client:
        assert (await client.get(f"{MOUNT}/healthz")).status_code == 404
    async with client_of(_with_middleware(MemoryStore(), None)) as client:
        assert (await client.get("/readyz")).text == "host"


async def test_health_paths_are_configurable() -> None:
    health = Health(live_path="/live", ready_path=None)
    app = _with_middleware(MemoryStore(), health)
    async with client_of(app) as client:
        assert (await client.get("/live")).json() == {"status": "ok"}
        assert (await client.get("/readyz")).text == "host"


def test_health_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="start with '/'"):
        Health(live_path="healthz")
    with pytest.raises(ValueError, match="must differ"):
        Health(live_path="/h", ready_path="/h")
    with pytest.raises(ValueError, match="positive"):
        Health(timeout=0)
