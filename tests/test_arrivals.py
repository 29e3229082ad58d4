"""`arrivals`: one read shared by the requests that arrived before it began, never by a
request that arrived after it; and the example host's auth counter read that way on SQLite
(a batch of requests that arrived together reads it once; a change by another connection is
seen by every request that arrived after it)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from example_host import HostDB
from starlette_platform_metadata.arrivals import (
    SCOPE_KEY,
    SharedRead,
    arrival,
    stamp,
    unstamped,
)

from .conftest import URL
from .test_example_host import P, auth, count_statements, started

pytestmark = pytest.mark.anyio


class Counter:
    """A value another process may change, and the reads of it."""

    def __init__(self) -> None:
        self.value = 0
        self.reads = 0

    async def read(self) -> int:
        self.reads += 1
        return self.value


def arrived() -> int:
    scope: dict[str, Any] = {}
    stamp(scope)
    found = arrival(scope)
    assert found is not None
    return found


async def test_requests_that_arrived_before_a_read_share_it() -> None:
    counter = Counter()
    shared = SharedRead(counter.read)
    batch = [arrived() for _ in range(5)]
    assert [await shared.get(a) for a in batch] == [0] * 5
    assert counter.reads == 1


async def test_a_request_that_arrived_after_a_read_reads_again_and_sees_a_change() -> None:
    """The change comes between the read and the request: the request must see it."""
    counter = Counter()
    shared = SharedRead(counter.read)
    assert await shared.get(arrived()) == 0
    counter.value = 1  # committed by someone else, then a request is sent
    assert await shared.get(arrived()) == 1
    assert counter.reads == 2


async def test_a_request_without_a_stamp_always_reads() -> None:
    counter = Counter()
    shared = SharedRead(counter.read)
    early = arrived()
    for _ in range(3):
        await shared.get(None)
    assert counter.reads == 3
    assert arrival({}) is None and arrival({SCOPE_KEY: "7"}) is None
    assert await shared.get(early) == 0 and counter.reads == 3  # the last read is kept


async def test_a_question_asked_again_later_shares_no_read_from_before() -> None:
    """A stream's recheck asks with `unstamped(scope)`: it reads, though a read made since the
    stream arrived is kept (with the stamp, that read would answer it, however old)."""
    counter = Counter()
    shared = SharedRead(counter.read)
    scope: dict[str, Any] = {"type": "http", "state": {}}
    stamp(scope)
    assert await shared.get(arrival(scope)) == 0
    counter.value = 1  # revoked meanwhile
    assert await shared.get(arrival(scope)) == 0 and counter.reads == 1  # the hazard
    later = unstamped(scope)
    assert arrival(later) is None and SCOPE_KEY in scope and later["state"] is scope["state"]
    assert await shared.get(arrival(later)) == 1


async def test_forget_drops_the_kept_answer_and_an_overlapping_read() -> None:
    """After this process's own change nothing read before it is shared, not even a read
    that was under way when the change was made."""
    counter = Counter()
    started_reading, finish = asyncio.Event(), asyncio.Event()

    async def slow_read() -> int:
        value = counter.value
        started_reading.set()
        await finish.wait()
        counter.reads += 1
        return value

    shared = SharedRead(slow_read)
    early = arrived()
    first = asyncio.ensure_future(shared.get(early))
    await started_reading.wait()
    counter.value = 1
    shared.forget()
    finish.set()
    assert await first == 0  # the request itself gets its read: it was under way
    assert await shared.get(early) == 1 and counter.reads == 2  # but it was not kept
    assert await shared.get(early) == 1 and counter.reads == 2
    shared.forget()
    assert await shared.get(early) == 1 and counter.reads == 3


async def test_of_two_overlapping_reads_the_later_one_is_kept() -> None:
    """A read that began earlier and finished later does not replace a newer answer."""
    gates = [asyncio.Event(), asyncio.Event()]
    values = iter([0, 1])

    async def read() -> int:
        value = next(values)
        await gates[value].wait()
        return value

    shared = SharedRead(read)
    early = arrived()
    older = asyncio.ensure_future(shared.get(None))
    await asyncio.sleep(0)
    newer = asyncio.ensure_future(shared.get(None))
    await asyncio.sleep(0)
    gates[1].set()
    assert await newer == 1
    gates[0].set()
    assert await older == 0
    assert await shared.get(early) == 1  # kept, not read: a third read would find no value


# --- the example host, on SQLite -------------------------------------------------------------


def batch_arrival(app: Any, size: int) -> tuple[Callable[..., Awaitable[None]], asyncio.Event]:
    """`app` behind a stand-in for the server's protocol: each request is stamped as it
    arrives, then waits until `size` have arrived, as a batch read in one turn of a loop."""
    all_in = asyncio.Event()
    count = 0

    async def server(scope: Any, receive: Any, send: Any) -> None:
        nonlocal count
        stamp(scope)
        count += 1
        if count == size:
            all_in.set()
        await all_in.wait()
        await app(scope, receive, send)

    return server, all_in


async def test_a_batch_of_requests_that_arrived_together_reads_the_auth_counter_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'host.db'}"
    async with started(url) as (app, _):
        db: HostDB = app.state.db
        await db.add_platform(P)
        tokens = [await db.add_user(f"user{i}", P) for i in range(8)]
        server, _ = batch_arrival(app, len(tokens))
        transport = httpx.ASGITransport(app=server)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            warm = [client.get(URL, params={"platform_key": P}, headers=auth(t)) for t in tokens]
            assert {r.status_code for r in await asyncio.gather(*warm)} == {200}
            host: Any = SimpleNamespace(db=db)  # what count_statements reads of a Host
            statements = count_statements(host, monkeypatch)
            server, _ = batch_arrival(app, len(tokens))
            transport.app = server
            again = [client.get(URL, params={"platform_key": P}, headers=auth(t)) for t in tokens]
            assert {r.status_code for r in await asyncio.gather(*again)} == {200}
    reads = [s for s in statements if "example_host_generation" in s]
    assert len(reads) == 1, statements


async def test_a_token_revoked_by_another_connection_is_refused_to_every_later_arrival(
    tmp_path: Path,
) -> None:
    """Shared reads never reach across a change: a request that arrives after another
    process revoked a token gets 401, though the request before it was answered from a read
    a moment earlier."""
    url = f"sqlite:///{tmp_path / 'host.db'}"
    async with started(url) as (app, _):
        db: HostDB = app.state.db
        await db.add_platform(P)
        token = await db.add_user("alice", P)

        async def server(scope: Any, receive: Any, send: Any) -> None:
            stamp(scope)
            await app(scope, receive, send)

        transport = httpx.ASGITransport(app=server)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for _ in range(2):
                r = await client.get(URL, params={"platform_key": P}, headers=auth(token))
                assert r.status_code == 200
            async with HostDB(url) as other_process:
                assert await other_process.revoke_token(token)
            r = await client.get(URL, params={"platform_key": P}, headers=auth(token))
            assert (r.status_code, r.json()) == (401, {"detail": "Invalid token."})
