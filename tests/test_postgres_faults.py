"""PostgreSQL going away and coming back: bounded 503s, then recovery without a restart.

The cluster tests start their own throwaway server with scripts/pg-cluster (the helper behind
scripts/with-postgres), on its own port and directory, and stop and start it; the shared cluster
of TEST_POSTGRES_URL is never touched.  They run wherever the other PostgreSQL tests run
(CI always sets TEST_POSTGRES_URL) and are skipped, saying so, where it is unset.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from starlette_platform_metadata import (
    DatabaseStore,
    Limits,
    PlatformMetadataApp,
    StoreUnavailable,
    changes,
)
from starlette_platform_metadata.stores.sql.postgres_connection import PostgresConnection, postgres_database

from .conftest import POSTGRES_URL, URL, FakeAuth

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

PG_CLUSTER = Path(__file__).resolve().parent.parent / "scripts" / "pg-cluster"
BOUND = 10.0  # seconds a request may take while the database is away
TIMEOUT = 2.0  # the store's busy_timeout in these tests


class Cluster:
    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.url = self._run("init")

    def _run(self, command: str) -> str:
        result = subprocess.run(
            [str(PG_CLUSTER), command, self.directory],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    async def stop(self) -> None:
        await anyio.to_thread.run_sync(self._run, "stop")

    async def start(self) -> None:
        await anyio.to_thread.run_sync(self._run, "start")

    @contextlib.contextmanager
    def hung(self) -> Iterator[None]:
        """The server frozen with SIGSTOP, postmaster and every backend: connections are still
        accepted by the kernel, and nothing ever answers.  SIGCONT on the way out, however the
        block ends."""
        tolerate_terminated_connections()
        pid_file = Path(self.directory) / "data" / "postmaster.pid"
        postmaster = int(pid_file.read_text().split()[0])
        stopped: list[int] = []
        try:
            stopped.append(postmaster)
            os.kill(postmaster, signal.SIGSTOP)  # first, so that it forks no more backends
            children = subprocess.run(
                ["pgrep", "-P", str(postmaster)], capture_output=True, text=True, timeout=30
            ).stdout.split()
            assert children, "the postmaster has no backends to stop"
            for pid in map(int, children):
                stopped.append(pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
            yield
        finally:
            for pid in stopped:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)


def tolerate_terminated_connections() -> None:
    """Let asyncpg's complaint about a connection we terminated pass, for this test's loop.

    `PostgresConnection` terminates a connection still busy past the deadline; when asyncpg
    was meanwhile waiting for its own cancel request, its protocol reports "unexpected
    connection_lost() call" to the loop's exception handler (asyncio logs it; anyio's test
    runner would fail the test).  The request was already answered 503 within its bound, which
    is what the tests check; every other exception still reaches the previous handler."""
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, ConnectionError) and "unexpected connection_lost()" in str(exc):
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if POSTGRES_URL is None:
        pytest.skip("TEST_POSTGRES_URL is not set: run under scripts/with-postgres (CI does)")
    # As root the cluster belongs to the postgres user, who must reach the directory.
    directory = tempfile.mkdtemp(prefix="spm-faults-", dir="/tmp" if os.geteuid() == 0 else None)
    try:
        yield Cluster(directory)
    finally:
        subprocess.run([str(PG_CLUSTER), "destroy", directory], timeout=120, check=False)


@pytest.fixture
async def running(cluster: Cluster) -> AsyncIterator[Cluster]:
    yield cluster
    await cluster.start()  # leave it running for the next test, even after a failure


def make_app(url: str) -> tuple[Starlette, DatabaseStore, dict[str, str]]:
    auth = FakeAuth()
    headers = auth.add("acme-corp", "john_doe")
    store = DatabaseStore(url, busy_timeout=TIMEOUT)
    app = PlatformMetadataApp(auth=auth, store=store, limits=Limits())
    return Starlette(routes=[Mount(URL.rstrip("/"), app=app)]), store, headers


async def timed(call: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await call
    return response, time.monotonic() - started


def assert_unavailable(response: httpx.Response, elapsed: float) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"].isdigit()
    assert response.headers["Content-Type"] == "application/json"
    assert "unavailable" in response.json()["detail"]
    assert elapsed < BOUND


async def test_stopped_server_answers_503_then_recovers_without_restarting_the_app(
    running: Cluster,
) -> None:
    app, store, headers = make_app(running.url)
    params = {"platform_key": "acme-corp"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        stored = await client.patch(URL, params=params, headers=headers, json={"metadata": {"a": 1}})
        assert stored.status_code == 200, stored.text

        await running.stop()
        for request in (
            client.get(URL, params=params, headers=headers),
            client.patch(URL, params=params, headers=headers, json={"metadata": {"b": 2}}),
            client.put(URL, params=params, headers=headers, json={"metadata": {}}),
            client.delete(URL, params=params, headers=headers),
        ):
            assert_unavailable(*await timed(request))

        await running.start()
        got = await client.get(URL, params=params, headers=headers)
        assert got.status_code == 200, got.text
        assert got.json()["metadata"] == {"a": 1}, "nothing refused while down was written"
        patched = await client.patch(URL, params=params, headers=headers, json={"metadata": {"b": 2}})
        assert patched.status_code == 200 and patched.json()["metadata"] == {"a": 1, "b": 2}
    await store.disconnect()


async def test_an_outage_is_one_warning_line_and_one_when_it_ends(
    running: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """A 2 s outage with requests every 0.1 s: the log says "unavailable" once and "available
    again" once, with no traceback (asyncpg's pool logged one per reconnect try before)."""
    app, store, headers = make_app(running.url)
    params = {"platform_key": "acme-corp"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        for n in range(12):  # more than asyncpg's default floor of 10 connections
            await client.patch(URL, params=params, headers=headers, json={"metadata": {"n": n}})
        with caplog.at_level(logging.DEBUG):
            await running.stop()
            until = time.monotonic() + 2
            while time.monotonic() < until:
                response = await client.get(URL, params=params, headers=headers)
                assert response.status_code == 503
                await asyncio.sleep(0.1)
            await running.start()
            assert (await client.get(URL, params=params, headers=headers)).status_code == 200
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert [r.name for r in warnings] == ["starlette_platform_metadata"] * 2, caplog.text
        assert "unavailable" in warnings[0].getMessage()
        assert "available again" in warnings[1].getMessage()
        assert not any(r.exc_info for r in caplog.records if r.levelno >= logging.INFO)
    await store.disconnect()


async def test_server_down_at_first_use_answers_503_then_connects(running: Cluster) -> None:
    await running.stop()
    app, store, headers = make_app(running.url)
    params = {"platform_key": "acme-corp"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert_unavailable(*await timed(client.get(URL, params=params, headers=headers)))
        await running.start()
        got = await client.get(URL, params=params, headers=headers)
        assert got.status_code == 200, got.text
    await store.disconnect()


async def test_a_hung_server_answers_503_within_one_timeout_then_recovers(
    running: Cluster,
) -> None:
    """PostgreSQL frozen mid-flight: every request ends within busy_timeout, not twice that.

    A query cut off by the deadline must not then wait, outside it, for a cancellation the
    server never acknowledges before its connection goes back to the pool (a moment's grace
    for the acknowledgement, `PostgresConnection.cancel_grace`, is all).  Requests on
    connections the pool already holds, requests waiting for a free one, and requests that
    must open a new one are all covered.
    """
    app, store, headers = make_app(running.url)
    params = {"platform_key": "acme-corp"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:

        def requests() -> list[Awaitable[httpx.Response]]:
            return [
                client.get(URL, params=params, headers=headers),
                client.patch(URL, params=params, headers=headers, json={"metadata": {"b": 2}}),
                client.put(URL, params=params, headers=headers, json={"metadata": {}}),
                client.delete(URL, params=params, headers=headers),
            ]

        stored = await client.patch(URL, params=params, headers=headers, json={"metadata": {"a": 1}})
        assert stored.status_code == 200, stored.text
        for _ in range(3):  # the pool is open and warm
            warm = await client.get(URL, params=params, headers=headers)
            assert warm.status_code == 200, warm.text

        timings: list[float] = []
        with running.hung():
            # One request on the most recently used pooled connection, then more at once than
            # the pool holds (pooled connections, and waits for one), then one after another,
            # each having to open a connection to the frozen server.
            response, elapsed = await timed(client.get(URL, params=params, headers=headers))
            assert_unavailable(response, elapsed)
            timings.append(elapsed)
            batch = await asyncio.gather(*(timed(call) for _ in range(3) for call in requests()))
            for response, elapsed in batch:
                assert_unavailable(response, elapsed)
            timings.extend(elapsed for _, elapsed in batch)
            for call in requests():
                response, elapsed = await timed(call)
                assert_unavailable(response, elapsed)
                timings.append(elapsed)
        rounded = [round(elapsed, 2) for elapsed in timings]
        assert max(timings) < TIMEOUT + 1.0, f"not bounded by one timeout: {rounded}"

        # Back: the pool replaces the connections it gave up, without a restart.  (A write
        # that timed out may still be applied: a statement already sent sits in the frozen
        # server's socket buffer.  A 503 after the deadline means "unknown", as ever.)
        got = await client.get(URL, params=params, headers=headers)
        assert got.status_code == 200, got.text
        patched = await client.patch(URL, params=params, headers=headers, json={"metadata": {"c": 3}})
        assert patched.status_code == 200 and patched.json()["metadata"]["c"] == 3, patched.text
    await store.disconnect()


async def test_a_hung_server_inside_a_transaction_costs_at_most_the_timeout(
    running: Cluster,
) -> None:
    """The deadline also bounds what runs after it inside the call: the ROLLBACK of a
    transaction whose query it cut off (a contended PATCH), then the release."""
    connection = PostgresConnection(
        postgres_database(running.url, TIMEOUT), timeout=TIMEOUT, owns_database=True
    )
    assert await connection.fetch("SELECT 1") == [(1,)]
    with contextlib.ExitStack() as hung:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="did not answer"):
            async with connection.session() as raw:
                async with raw.transaction():
                    await raw.fetchval("SELECT 1")
                    hung.enter_context(running.hung())
                    await raw.fetchval("SELECT 2")
        elapsed = time.monotonic() - started
    assert elapsed < TIMEOUT + 1.0, f"{elapsed:.2f} s"
    assert await connection.fetch("SELECT 3") == [(3,)]
    await connection.close()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers, like a hung server."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


async def test_a_hung_server_costs_at_most_the_timeout(silent_server: int) -> None:
    """Needs no PostgreSQL: the store gives up after busy_timeout instead of hanging."""
    store = DatabaseStore(f"postgresql://u:p@127.0.0.1:{silent_server}/db", busy_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await store.get("acme-corp", "john_doe")
    assert time.monotonic() - started < 5
    await store.disconnect()


async def test_a_refused_connection_is_unavailable() -> None:
    """Needs no PostgreSQL: nothing listening is a 503, not a 500."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    store = DatabaseStore(f"postgresql://u:p@127.0.0.1:{port}/db", busy_timeout=TIMEOUT)
    with pytest.raises(StoreUnavailable):
        await store.update("acme-corp", "john_doe", changes.patch({"a": 1}))
    await store.disconnect()
