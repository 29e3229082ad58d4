"""Writes never lose an update: concurrent requests, across connections and worker processes.

Every store (via the `store` fixture), two connections on one SQLite file, and real uvicorn
servers (one worker, then two) over one SQLite file.  A model check replays random concurrent
histories in version order.  Overload answers 503, never 500, and a cancelled or abandoned
request leaves no half-written record and no open transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import Message

from starlette_platform_metadata import DatabaseStore, PlatformMetadataApp, Store
from starlette_platform_metadata.stores.sql.sqlite_connection import SQLiteConnection

from .conftest import POSTGRES_URL, STORE_KINDS, URL, FakeAuth, close_store, make_store

pytestmark = pytest.mark.anyio

Users = dict[str, dict[str, str]]
ACME = URL + "?platform_key=acme-corp"
ROOT = Path(__file__).resolve().parent.parent
WRITERS = 200


def mount(auth: FakeAuth, store: Store) -> Starlette:
    metadata_app = PlatformMetadataApp(auth=auth, store=store)
    return Starlette(routes=[Mount(URL.rstrip("/"), app=metadata_app)])


def client_for(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


def version(response: httpx.Response) -> int:
    etag = response.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"'), etag
    return int(etag.strip('"'))


def sqlite_path(store: Store) -> str | None:
    if isinstance(store, DatabaseStore) and isinstance(store.connection, SQLiteConnection):
        return store.connection.path
    return None


def rows_for(path: str, username: str) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        (count,) = db.execute(
            "SELECT count(*) FROM platform_metadata WHERE platform_key = 'acme-corp' "
            "AND username = ?",
            (username,),
        ).fetchone()
    return int(count)


def assert_write_lock_free(path: str) -> None:
    """No connection holds SQLite's write lock or sits in an open write transaction."""
    with contextlib.closing(sqlite3.connect(path, timeout=0, isolation_level=None)) as db:
        db.execute("BEGIN IMMEDIATE")
        db.execute("ROLLBACK")


async def patch_distinct_keys(
    clients: list[httpx.AsyncClient], url: str, headers: dict[str, str], count: int = WRITERS
) -> list[httpx.Response]:
    """`count` concurrent PATCHes, each adding its own key, spread over `clients`."""
    return await asyncio.gather(
        *(
            clients[i % len(clients)].patch(url, json={"metadata": {f"k{i}": i}}, headers=headers)
            for i in range(count)
        )
    )


def assert_all_landed(responses: list[httpx.Response], final: httpx.Response, count: int) -> None:
    statuses = [r.status_code for r in responses]
    assert statuses == [200] * count, sorted(set(statuses))
    # Versions follow commit order: every write got its own, with no gap and no repeat, and
    # answered the state right after it: its own key and one key per earlier write.
    assert sorted(version(r) for r in responses) == list(range(1, count + 1))
    for i, response in enumerate(responses):
        metadata = response.json()["metadata"]
        assert metadata[f"k{i}"] == i and len(metadata) == version(response)
    assert final.status_code == 200
    assert final.json()["metadata"] == {f"k{i}": i for i in range(count)}
    assert version(final) == count


async def race_first_writes(
    clients: list[httpx.AsyncClient], auth_headers: Callable[[str], dict[str, str]], users: int
) -> None:
    """Pairs of first writes race to create each user's record: one record keeps both keys."""
    for n in range(users):
        headers = auth_headers(f"racer{n}")
        first, second = await asyncio.gather(
            clients[0].patch(ACME, json={"metadata": {"a": n}}, headers=headers),
            clients[-1].patch(ACME, json={"metadata": {"b": n}}, headers=headers),
        )
        assert (first.status_code, second.status_code) == (200, 200), (first.text, second.text)
        assert sorted([version(first), version(second)]) == [1, 2]
        final = await clients[0].get(ACME, headers=headers)
        assert final.json()["metadata"] == {"a": n, "b": n}
        assert version(final) == 2


# --- a. many writers, one record -----------------------------------------------------------


async def test_concurrent_patches_of_distinct_keys_all_land(
    client: httpx.AsyncClient, acme: Users
) -> None:
    """200 concurrent PATCHes adding distinct keys: 200 successes, 200 keys, versions 1..200."""
    responses = await patch_distinct_keys([client], ACME, acme["john"])
    assert_all_landed(responses, await client.get(ACME, headers=acme["john"]), WRITERS)


async def test_racing_first_writes_create_one_record_with_both_keys(
    client: httpx.AsyncClient, auth: FakeAuth, store: Store
) -> None:
    """Two first writes racing to create a record: one record, both keys, versions 1 and 2."""
    await race_first_writes([client], lambda name: auth.add("acme-corp", name), users=10)
    if (path := sqlite_path(store)) is not None:
        assert all(rows_for(path, f"racer{n}") == 1 for n in range(10))


async def test_two_connections_on_one_sqlite_file_lose_nothing(
    tmp_path: Path, auth: FakeAuth, acme: Users
) -> None:
    """Two stores (two SQLite connections, as two workers have) contend for one file's lock."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    stores = [DatabaseStore(url), DatabaseStore(url)]
    try:
        async with client_for(mount(auth, stores[0])) as one, client_for(
            mount(auth, stores[1])
        ) as two:
            responses = await patch_distinct_keys([one, two], ACME, acme["john"])
            assert_all_landed(responses, await two.get(ACME, headers=acme["john"]), WRITERS)
            await race_first_writes([one, two], lambda name: auth.add("acme-corp", name), users=10)
    finally:
        for made in stores:
            await made.disconnect()
    assert all(rows_for(str(tmp_path / "shared.db"), f"racer{n}") == 1 for n in range(10))


# --- a. and d. a real uvicorn server, one worker and two, over one SQLite file --------------


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Server:
    url: str
    port: int
    log: Path


@contextlib.asynccontextmanager
async def uvicorn_server(
    tmp_path: Path, workers: int, database: str = "sqlite"
) -> AsyncIterator[Server]:
    """`uvicorn tests.servers.store_app:create_app --factory --workers N` on 127.0.0.1.

    Ready when every worker has logged its startup (bounded); always stopped on the way out.
    """
    port = free_port()
    log = tmp_path / "uvicorn.log"
    env = {
        **os.environ,
        "SPM_TEST_DATABASE_URL": f"sqlite:///{tmp_path / 'server.db'}",
        "PYTHONUNBUFFERED": "1",
    }
    if database == "postgresql":
        assert POSTGRES_URL is not None
        env["SPM_TEST_DATABASE_URL"] = POSTGRES_URL
        env["SPM_TEST_TABLE"] = f"srv_{uuid.uuid4().hex[:12]}"
    command = [
        sys.executable, "-m", "uvicorn", "tests.servers.store_app:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        "--no-access-log", "--timeout-graceful-shutdown", "5",
    ]  # fmt: skip
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while log.read_text().count("Application startup complete.") < workers:
            if process.poll() is not None:
                pytest.fail(f"uvicorn exited with {process.returncode}:\n{log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"uvicorn not ready within 30 s:\n{log.read_text()}")
            await asyncio.sleep(0.05)
        yield Server(f"http://127.0.0.1:{port}", port, log)
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server (it stops its workers), then SIGKILL its process group if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        # The group we started: lingering workers too, and nothing else.
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=5)


def token(name: str) -> dict[str, str]:
    return {"Authorization": f"Token tok-{name}"}


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
async def test_uvicorn_server_loses_no_update(tmp_path: Path, workers: int) -> None:
    """200 concurrent PATCHes over HTTP, to one worker or two sharing one SQLite file."""
    async with uvicorn_server(tmp_path, workers) as server:
        limits = httpx.Limits(max_connections=WRITERS, max_keepalive_connections=WRITERS)
        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as client:
            responses = await patch_distinct_keys([client], ACME, token("john_doe"))
            server_errors = [r.text for r in responses if r.status_code >= 500]
            assert not server_errors, server_errors
            final = await client.get(ACME, headers=token("john_doe"))
            assert_all_landed(responses, final, WRITERS)
            pids = {r.headers["x-worker-pid"] for r in responses}
            if workers > 1:
                # Workers take connections as the kernel hands them out; 200 at once reach both.
                assert len(pids) == workers, pids
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as other:
                await race_first_writes([client, other], token, users=10)
            await disconnect_mid_body(server, client)
    assert "Traceback" not in server.log.read_text(), server.log.read_text()
    assert rows_for(str(tmp_path / "server.db"), "racer0") == 1


@pytest.mark.slow
@pytest.mark.skipif(POSTGRES_URL is None, reason="TEST_POSTGRES_URL is not set")
async def test_two_uvicorn_workers_on_postgresql_lose_no_update(tmp_path: Path) -> None:
    """200 concurrent PATCHes to two workers sharing one PostgreSQL table: all land, no 5xx."""
    async with uvicorn_server(tmp_path, 2, "postgresql") as server:
        limits = httpx.Limits(max_connections=WRITERS, max_keepalive_connections=WRITERS)
        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as client:
            responses = await patch_distinct_keys([client], ACME, token("john_doe"))
            server_errors = [r.text for r in responses if r.status_code >= 500]
            assert not server_errors, server_errors
            final = await client.get(ACME, headers=token("john_doe"))
            assert_all_landed(responses, final, WRITERS)
            assert len({r.headers["x-worker-pid"] for r in responses}) == 2
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as other:
                await race_first_writes([client, other], token, users=10)
    assert "Traceback" not in server.log.read_text(), server.log.read_text()


async def disconnect_mid_body(server: Server, client: httpx.AsyncClient) -> None:
    """A client that sends half a PATCH body and hangs up changes nothing."""
    before = await client.get(ACME, headers=token("quitter"))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        raw.sendall(
            b"PATCH " + ACME.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Token tok-quitter\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n" + b'{"metadata": {"lost": 1'
        )
    await asyncio.sleep(0.2)
    after = await client.get(ACME, headers=token("quitter"))
    assert (after.json(), after.headers["etag"]) == (before.json(), before.headers["etag"])
    written = await client.patch(ACME, json={"metadata": {"kept": 1}}, headers=token("quitter"))
    assert written.status_code == 200, written.text


# --- b. random concurrent histories against a serial model ---------------------------------

KEYS = st.sampled_from(["a", "b", "c", "d"])
VALUES = st.none() | st.integers(0, 9) | st.lists(st.integers(0, 3), max_size=2)
DOCUMENTS = st.dictionaries(KEYS, VALUES, max_size=3)
Operation = tuple[str, dict[str, Any], list[str]]
OPERATIONS: st.SearchStrategy[Operation] = st.one_of(
    st.tuples(st.just("PATCH"), DOCUMENTS, st.lists(KEYS, max_size=2, unique=True)).filter(
        lambda op: bool(op[1] or op[2])
    ),
    st.tuples(st.just("PUT"), DOCUMENTS, st.just([])),
    st.tuples(st.just("DELETE"), st.just({}), st.just([])),
)
# (operation, send If-Match with the last ETag this task saw, yields to the loop before it)
STEPS = st.tuples(OPERATIONS, st.booleans(), st.integers(0, 3))
HISTORIES = st.lists(st.lists(STEPS, min_size=1, max_size=6), min_size=2, max_size=6)


@dataclass
class Outcome:
    method: str
    set: dict[str, Any]
    delete: list[str]
    if_match: int | None
    status: int
    version: int | None
    body: Any


async def run_history(
    client: httpx.AsyncClient, headers: dict[str, str], history: Any
) -> list[Outcome]:
    """Each list of steps runs in its own task, all at once; every answer is kept."""
    outcomes: list[Outcome] = []

    async def worker(steps: list[Any]) -> None:
        last_seen = 0
        for (method, document, delete), conditional, yields in steps:
            for _ in range(yields):
                await asyncio.sleep(0)
            extra = {"If-Match": f'"{last_seen}"'} if conditional else {}
            body: dict[str, Any] = {}
            if method == "PATCH":
                body = {"metadata": document, "delete_keys": delete}
            elif method == "PUT":
                body = {"metadata": document}
            response = await client.request(
                method, ACME, json=body or None, headers={**headers, **extra}
            )
            acknowledged = response.status_code == 200
            outcomes.append(
                Outcome(
                    method, document, delete, last_seen if conditional else None,
                    response.status_code,
                    version(response) if acknowledged else None,
                    response.json() if acknowledged else None,
                )
            )  # fmt: skip
            if acknowledged:
                last_seen = version(response)

    await asyncio.gather(*(worker(steps) for steps in history))
    return outcomes


def check_against_serial_model(outcomes: list[Outcome], final: httpx.Response) -> None:
    """Replay acknowledged writes in version order on a dict; every answer must match it.

    A PATCH or PUT answers its version, and versions follow commit order.  A DELETE answers no
    version, but one that removes a record bumps the version by one, and a second DELETE finds
    nothing and bumps nothing.  So between two consecutive acknowledged writes there is a gap
    of at most one version, and a gap means "a DELETE committed here": the state is empty.
    """
    for outcome in outcomes:
        expected = (200, 412) if outcome.if_match is not None else (200,)
        if outcome.method == "DELETE":
            expected = (204, 412) if outcome.if_match is not None else (204,)
        assert outcome.status in expected, outcome
    writes = sorted((o for o in outcomes if o.version is not None), key=lambda o: o.version or 0)
    versions = [o.version for o in writes]
    assert len(set(versions)) == len(versions), f"a version named two writes: {versions}"
    deletes = sum(o.status == 204 for o in outcomes)
    state: dict[str, Any] = {}
    previous, created_at, gaps = 0, None, 0
    for write in writes:
        assert write.version is not None
        gap = write.version - previous - 1
        assert gap in (0, 1), f"versions jump from {previous} to {write.version}"
        if gap or previous == 0:
            state, created_at = {}, None
        gaps += gap
        if write.if_match is not None:
            assert write.if_match == write.version - 1, f"If-Match admitted {write}"
        if write.method == "PUT":
            state = dict(write.set)
        else:
            for key in write.delete:
                state.pop(key, None)
            state.update(write.set)
        assert write.body["metadata"] == state, (write, state)
        if created_at is not None:
            assert write.body["created_at"] == created_at, "created_at changed within a life"
        created_at = write.body["created_at"]
        previous = write.version
    final_gap = version(final) - previous
    assert final_gap in (0, 1), (previous, final.headers["etag"])
    gaps += final_gap
    assert gaps <= deletes, "versions were skipped that no DELETE accounts for"
    for outcome in outcomes:
        if outcome.method == "DELETE" and outcome.status == 204 and outcome.if_match:
            # It removed the record a write left at version v: v + 1 is its tombstone.
            assert outcome.if_match + 1 not in versions, outcome
            assert outcome.if_match + 1 <= version(final), outcome
    if final_gap or previous == 0:
        assert (final.json()["metadata"], final.json()["created_at"]) == ({}, None)
    else:
        assert final.json()["metadata"] == state


@pytest.mark.parametrize("kind", STORE_KINDS)
@settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=HISTORIES)
def test_concurrent_histories_match_a_serial_model(
    kind: str, tmp_path_factory: pytest.TempPathFactory, history: Any
) -> None:
    """Random concurrent PATCH/PUT/DELETE (some with If-Match) replay serially by version."""

    async def run() -> None:
        store = make_store(kind, tmp_path_factory.mktemp("history"))
        auth = FakeAuth()
        headers = auth.add("acme-corp", "john_doe")
        try:
            async with client_for(mount(auth, store)) as client:
                outcomes = await run_history(client, headers, history)
                check_against_serial_model(outcomes, await client.get(ACME, headers=headers))
        finally:
            await close_store(store)

    asyncio.run(run())


# --- e. overload is not failure --------------------------------------------------------------


@contextlib.contextmanager
def write_lock_held(path: Path) -> Any:
    """Another connection (another process, in real life) holds the SQLite write lock."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None, timeout=0)) as holder:
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")


def assert_busy(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"].isdigit()
    assert response.headers["content-type"] == "application/json"
    assert "detail" in response.json()


async def test_held_write_lock_answers_503_with_retry_after_and_changes_nothing(
    tmp_path: Path, auth: FakeAuth, acme: Users
) -> None:
    """A write that cannot get the lock within busy_timeout is 503 + Retry-After, never 500."""
    path = tmp_path / "busy.db"
    store = DatabaseStore(f"sqlite:///{path}", busy_timeout=0.2)
    john = acme["john"]
    try:
        async with client_for(mount(auth, store)) as client:
            stored = await client.put(ACME, json={"metadata": {"a": 1}}, headers=john)
            assert stored.status_code == 200
            with write_lock_held(path):
                started = time.monotonic()
                for method, body in [
                    ("PATCH", {"metadata": {"b": 2}}),
                    ("PUT", {"metadata": {"c": 3}}),
                    ("DELETE", None),
                ]:
                    assert_busy(await client.request(method, ACME, json=body, headers=john))
                assert time.monotonic() - started < 5, "each write waits about busy_timeout"
                # WAL: readers are not blocked by a writer.
                during = await client.get(ACME, headers=john)
                assert during.status_code == 200
            after = await client.get(ACME, headers=john)
            assert (after.json(), after.headers["etag"]) == (stored.json(), stored.headers["etag"])
            written = await client.patch(ACME, json={"metadata": {"b": 2}}, headers=john)
            assert written.status_code == 200
            assert written.json()["metadata"] == {"a": 1, "b": 2}
    finally:
        await store.disconnect()


async def test_every_write_answers_within_busy_timeout_of_its_arrival(
    tmp_path: Path, auth: FakeAuth, acme: Users
) -> None:
    """While another process holds the lock past busy_timeout, writes arriving one after another
    each answer 503 within busy_timeout of their own arrival: none waits behind another's wait."""
    path = tmp_path / "bound.db"
    timeout = 0.5
    store = DatabaseStore(f"sqlite:///{path}", busy_timeout=timeout)
    john = acme["john"]

    async def timed_patch(client: httpx.AsyncClient, n: int) -> tuple[httpx.Response, float]:
        await asyncio.sleep(n * 0.1)
        started = time.monotonic()
        response = await client.patch(ACME, json={"metadata": {f"k{n}": n}}, headers=john)
        return response, time.monotonic() - started

    try:
        async with client_for(mount(auth, store)) as client:
            stored = await client.put(ACME, json={"metadata": {"a": 1}}, headers=john)
            with write_lock_held(path):
                results = await asyncio.gather(*(timed_patch(client, n) for n in range(12)))
            for response, took in results:
                assert_busy(response)
                assert timeout * 0.9 < took < timeout + 0.3, took
            after = await client.get(ACME, headers=john)
            assert after.headers["etag"] == stored.headers["etag"]
    finally:
        await store.disconnect()


async def test_a_write_waiting_for_the_lock_goes_through_when_it_is_released(
    tmp_path: Path, auth: FakeAuth, acme: Users
) -> None:
    """Released within busy_timeout: every waiting write lands, none is lost or refused."""
    path = tmp_path / "wait.db"
    store = DatabaseStore(f"sqlite:///{path}", busy_timeout=3)
    john = acme["john"]
    try:
        async with client_for(mount(auth, store)) as client:
            await client.put(ACME, json={"metadata": {}}, headers=john)
            with contextlib.ExitStack() as stack:
                stack.enter_context(write_lock_held(path))
                started = time.monotonic()
                release = asyncio.get_running_loop().call_later(0.4, stack.close)
                responses = await asyncio.gather(
                    *(
                        client.patch(ACME, json={"metadata": {f"k{n}": n}}, headers=john)
                        for n in range(20)
                    )
                )
                release.cancel()
                took = time.monotonic() - started
            assert [r.status_code for r in responses] == [200] * 20
            assert 0.35 < took < 2.5, took
            final = await client.get(ACME, headers=john)
            assert final.json()["metadata"] == {f"k{n}": n for n in range(20)}
    finally:
        await store.disconnect()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB file system of its own (tmpfs), to fill up: needs root, as CI runs."""
    where = tmp_path / "small"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (CI can): {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def fill(disk: Path) -> Path:
    """Write a file until the file system has no byte left; return it."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"x" * 4096)
    return filler


async def test_a_full_disk_answers_503_logs_once_and_recovers(
    small_disk: Path, auth: FakeAuth, acme: Users, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLite on a full file system: every write is a 503 with Retry-After (clients retry those,
    not 500s), nothing stored changes, the log says so once, and writes work once space is back."""
    store = DatabaseStore(f"sqlite:///{small_disk / 'metadata.db'}")
    john = acme["john"]
    big = "y" * 30_000
    try:
        async with client_for(mount(auth, store)) as client:
            stored = await client.put(ACME, json={"metadata": {"a": 1}}, headers=john)
            filler = fill(small_disk)
            with caplog.at_level(logging.WARNING, logger="starlette_platform_metadata"):
                for n in range(20):
                    body = {"metadata": {"big": big, "n": n}}
                    method = "PUT" if n % 2 else "PATCH"
                    assert_busy(await client.request(method, ACME, json=body, headers=john))
                during = await client.get(ACME, headers=john)
                assert (during.json(), during.headers["etag"]) == (
                    stored.json(),
                    stored.headers["etag"],
                )
                filler.unlink()
                written = await client.patch(ACME, json={"metadata": {"big": big}}, headers=john)
                assert written.status_code == 200, written.text
            lines = [r.getMessage() for r in caplog.records]
            assert lines == [
                "metadata store unavailable, answering 503: SQLite: database or disk is full",
                "metadata store available again after 20 request(s) answered 503",
            ]
            assert written.json()["metadata"] == {"a": 1, "big": big}
    finally:
        await store.disconnect()


async def test_lock_held_at_first_use_answers_503_then_connects(
    tmp_path: Path, auth: FakeAuth, acme: Users
) -> None:
    """A store opening while another process holds the lock answers 503, then recovers."""
    path = tmp_path / "busy.db"
    first = DatabaseStore(f"sqlite:///{path}")
    await first.connect()  # creates the file and tables, in WAL mode
    assert open_handles(path) > 0  # what the checks below count, while a store holds it
    await first.disconnect()
    store = DatabaseStore(f"sqlite:///{path}", busy_timeout=0.2)
    await wait_for_closed(path)  # the first store's connections close with disconnect()
    try:
        async with client_for(mount(auth, store)) as client:
            with write_lock_held(path):
                for _ in range(3):
                    assert_busy(
                        await client.patch(ACME, json={"metadata": {"a": 1}}, headers=acme["john"])
                    )
                opening = asyncio.ensure_future(client.get(ACME, headers=acme["john"]))
                await asyncio.sleep(0.1)  # in the middle of opening, waiting for the lock
                opening.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await opening
            # SQLite keeps a closed connection's descriptors while another connection of the
            # process holds a lock on the file (closing them would drop that lock): counted
            # once the holder is gone.
            await wait_for_closed(path)
            written = await client.patch(ACME, json={"metadata": {"a": 1}}, headers=acme["john"])
            assert (written.status_code, version(written)) == (200, 1)
    finally:
        await store.disconnect()
    assert_write_lock_free(str(path))


def open_handles(path: Path) -> int:
    """This process's open file descriptors on the database file, its WAL and shared memory:
    every open SQLite connection holds some, a closed one none."""
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(fd).startswith(str(path)):
                count += 1
    return count


async def wait_for_closed(path: Path) -> None:
    """Failed and cancelled opens close their connections: no handle is left behind (none
    for a quarter of a second: a thread may still be opening one it will close)."""
    deadline = time.monotonic() + 5
    closed_since: float | None = None
    while time.monotonic() < deadline:
        if open_handles(path):
            closed_since = None
        elif closed_since is None:
            closed_since = time.monotonic()
        elif time.monotonic() - closed_since >= 0.25:
            return
        await asyncio.sleep(0.02)
    assert open_handles(path) == 0, "a failed open leaked its connection"


@pytest.mark.parametrize("yields", [0, 1, 2, 3, 5, 8])
async def test_an_open_cancelled_while_its_thread_connects_leaks_no_connection(
    tmp_path: Path, yields: int
) -> None:
    """A thread cannot be stopped: the connection it opens after its caller was cancelled
    must still be closed."""
    path = tmp_path / "cancelled.db"
    store = DatabaseStore(f"sqlite:///{path}")
    opening = asyncio.ensure_future(store.connect())
    for _ in range(yields):
        await asyncio.sleep(0)
    opening.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await opening
    await store.disconnect()
    await wait_for_closed(path)


# --- f. cancellation and disconnects ---------------------------------------------------------


async def test_cancelled_requests_apply_whole_or_not_at_all(
    client: httpx.AsyncClient, acme: Users, store: Store
) -> None:
    """Requests cancelled at every point of their life leave each write whole or absent."""
    john = acme["john"]
    rounds = range(1, 31)
    await client.put(ACME, json={"metadata": {f"d{n}": n for n in rounds}}, headers=john)
    for n in rounds:
        task = asyncio.ensure_future(
            client.patch(
                ACME,
                json={"metadata": {f"a{n}": n, f"b{n}": n}, "delete_keys": [f"d{n}"]},
                headers=john,
            )
        )
        for _ in range(n % 10):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    response = await client.get(ACME, headers=john)
    assert response.status_code == 200
    metadata = response.json()["metadata"]
    for n in rounds:
        applied = f"a{n}" in metadata
        assert applied == (f"b{n}" in metadata) == (f"d{n}" not in metadata), (n, metadata)
    written = await client.patch(ACME, json={"metadata": {"after": 1}}, headers=john)
    assert written.status_code == 200
    assert written.json()["metadata"] == {**metadata, "after": 1}
    if (path := sqlite_path(store)) is not None:
        assert_write_lock_free(path)


async def test_request_cancelled_while_waiting_for_the_lock_leaves_no_transaction(
    tmp_path: Path, auth: FakeAuth, acme: Users
) -> None:
    """Cancelled while its statement waits for another process's lock: whole or nothing."""
    path = tmp_path / "cancel.db"
    store = DatabaseStore(f"sqlite:///{path}", busy_timeout=2)
    john = acme["john"]
    try:
        async with client_for(mount(auth, store)) as client:
            await client.put(ACME, json={"metadata": {"a": 1}}, headers=john)
            with write_lock_held(path):
                task = asyncio.ensure_future(
                    client.patch(ACME, json={"metadata": {"b": 2, "c": 3}}, headers=john)
                )
                await asyncio.sleep(0.3)  # the statement is in SQLite's busy wait now
                assert not task.done()
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            after = await client.get(ACME, headers=john)
            assert after.json()["metadata"] in ({"a": 1}, {"a": 1, "b": 2, "c": 3})
            assert_write_lock_free(str(path))
            written = await client.patch(ACME, json={"metadata": {"d": 4}}, headers=john)
            assert written.status_code == 200
            assert version(written) == version(after) + 1
    finally:
        await store.disconnect()


async def test_client_disconnecting_mid_body_changes_nothing(
    app: Starlette, client: httpx.AsyncClient, acme: Users, store: Store
) -> None:
    """`http.disconnect` before the whole body arrived: no response, no write, next one works."""
    john = acme["john"]
    before = await client.put(ACME, json={"metadata": {"keep": 1}}, headers=john)
    for method in ("PATCH", "PUT"):
        messages: list[Message] = [
            {"type": "http.request", "body": b'{"metadata": {"lost"', "more_body": True},
            {"type": "http.disconnect"},
        ]
        sent: list[Message] = []

        async def receive() -> Message:
            return messages.pop(0)

        async def send(message: Message) -> None:
            sent.append(message)

        headers = [(k.lower().encode(), v.encode()) for k, v in john.items()]
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": URL, "raw_path": URL.encode(),
            "root_path": "", "query_string": b"platform_key=acme-corp",
            "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"),
                        (b"content-length", b"100"), *headers],
            "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
        }  # fmt: skip
        await asyncio.wait_for(app(scope, receive, send), timeout=10)
        assert [m for m in sent if m["type"] == "http.response.start"] == []
    after = await client.get(ACME, headers=john)
    assert (after.json(), after.headers["etag"]) == (before.json(), before.headers["etag"])
    written = await client.patch(ACME, json={"metadata": {"next": 2}}, headers=john)
    assert written.json()["metadata"] == {"keep": 1, "next": 2}
    if (path := sqlite_path(store)) is not None:
        assert_write_lock_free(path)
