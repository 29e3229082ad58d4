"""Live changes under attack (issue 22): a stream's view follows the caller's role as it is now,
no caller or tenant holds every stream, a client that never reads pins one event, and a stream
cut by a failure ends with a proper last chunk.  Over every store, on a real uvicorn server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import Message

from starlette_platform_metadata import PlatformMetadataApp, Store
from starlette_platform_metadata.auth import Identity, PlatformAccess
from starlette_platform_metadata.events import EventSettings
from starlette_platform_metadata.stores.base import StoreUnavailable

from .conftest import URL, FakeAuth
from .sse import serving, stream

pytestmark = pytest.mark.anyio

META = URL + "?platform_key=acme-corp"
EVENTS = URL + "events/?platform_key=acme-corp"
POLICY = URL + "policy/?platform_key=acme-corp"
# Periodic re-checks far away: what these tests see comes from the check before each batch.
SLOW_RECHECK = EventSettings(recheck=600, heartbeat=600, poll_interval=0.05)

Headers = dict[str, dict[str, str]]


@pytest.fixture
async def client(auth: FakeAuth, store: Store, acme: Headers) -> AsyncIterator[httpx.AsyncClient]:
    app = PlatformMetadataApp(auth=auth, store=store, events=SLOW_RECHECK)
    async with serving(Starlette(routes=[Mount(URL.rstrip("/"), app=app)])) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            yield client


async def _write(client: httpx.AsyncClient, headers: dict[str, str], url: str, **metadata: Any) -> None:
    response = await client.patch(url, json={"metadata": metadata}, headers=headers)
    assert response.status_code == 200, response.text


async def test_a_demoted_admin_gets_the_member_view_on_the_next_event(
    client: httpx.AsyncClient, auth: FakeAuth, acme: Headers
) -> None:
    boss = auth.add("acme-corp", "boss", admin=True)
    await client.put(POLICY, json={"private_keys": ["secret*"]}, headers=boss)
    mine = META + "&username=acme_admin"
    await _write(client, boss, mine, secret_score=1, theme="dark")
    async with stream(client, EVENTS, acme["admin"]) as events:
        snapshot = await events.next()
        assert snapshot.data["metadata"] == {"secret_score": 1, "theme": "dark"}
        auth.members[("acme-corp", "acme_admin")] = False  # demoted to member by the host
        await _write(client, boss, mine, secret_score=2, theme="light")
        change = await events.next()
        assert change.data["metadata"] == {"theme": "light"}
        assert "secret" not in str(change.data)
        auth.members[("acme-corp", "acme_admin")] = True  # and back: the full view again
        await _write(client, boss, mine, secret_score=3)
        assert (await events.next()).data["metadata"] == {"secret_score": 3, "theme": "light"}


async def test_a_demoted_admin_watching_another_user_gets_no_further_event(
    client: httpx.AsyncClient, auth: FakeAuth, acme: Headers
) -> None:
    boss = auth.add("acme-corp", "boss", admin=True)
    johns = META + "&username=john_doe"
    async with stream(client, EVENTS + "&username=john_doe", acme["admin"]) as events:
        await events.next()
        auth.members[("acme-corp", "acme_admin")] = False
        await _write(client, boss, johns, diary="private to john")
        assert await events.wait_end() == []


async def test_a_caller_gets_a_bounded_share_of_the_streams(
    auth: FakeAuth, store: Store, acme: Headers
) -> None:
    """One member's streams cannot fill the process: past its share, 429; others still open."""
    settings = EventSettings(max_streams=6, max_streams_per_identity=2, max_streams_per_platform=4)
    app = PlatformMetadataApp(auth=auth, store=store, events=settings)
    async with serving(Starlette(routes=[Mount(URL.rstrip("/"), app=app)])) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            async with stream(client, EVENTS, acme["john"]) as one, stream(client, EVENTS, acme["john"]) as two:
                await one.next()
                await two.next()
                async with stream(client, EVENTS, acme["john"]) as third:
                    assert third.response.status_code == 429
                    assert third.response.headers["Retry-After"] == "10"
                    assert third.response.json() == {
                        "detail": "You have too many open event streams. Close one and try again."
                    }
                async with stream(client, EVENTS, acme["jane"]) as janes, stream(
                    client, EVENTS, acme["admin"]
                ) as admins:
                    assert (await janes.next()).event == "snapshot"
                    assert (await admins.next()).event == "snapshot"
                    # The platform's share (4) is taken; another platform still has room.
                    async with stream(client, EVENTS, acme["jane"]) as refused:
                        assert refused.response.status_code == 429
                        assert refused.response.json()["detail"] == (
                            "Too many open event streams on this platform. Try again later."
                        )
                    other = URL + "events/?platform_key=other"
                    async with stream(client, other, acme["eve"]) as eves:
                        assert (await eves.next()).event == "snapshot"
            # Closed streams give their share back.
            async with stream(client, EVENTS, acme["john"]) as again:
                assert (await again.next()).event == "snapshot"
    assert app.hub.open_streams == 0


def test_the_default_stream_bounds_leave_most_connections_to_requests() -> None:
    settings = EventSettings()
    assert settings.max_streams <= 500  # half of the example host's --limit-concurrency
    assert settings.max_streams_per_platform < settings.max_streams
    assert settings.max_streams_per_identity <= 10


async def _call(app: PlatformMetadataApp, path: str, query: str, headers: dict[str, str],
                send_message: Any) -> None:
    scope = {
        "type": "http", "method": "GET", "path": path, "root_path": "", "raw_path": path.encode(),
        "query_string": query.encode(), "scheme": "http", "server": ("testserver", 80),
        "http_version": "1.1", "client": ("127.0.0.1", 1),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    never = asyncio.Event()

    async def receive() -> Message:
        await never.wait()
        return {"type": "http.disconnect"}

    await app(scope, receive, send_message)


async def test_a_replay_sends_each_event_once_the_client_took_the_one_before(
    auth: FakeAuth, store: Store, acme: Headers
) -> None:
    """A replay holds one page of history, and each send carries one event: a client that
    stops reading pins one event in the server's buffer, not the whole replay."""
    app = PlatformMetadataApp(auth=auth, store=store, events=EventSettings(send_timeout=0.3))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        for n in range(40):
            response = await c.patch(
                "/?platform_key=acme-corp", json={"metadata": {"n": n, "pad": "x" * 2000}},
                headers=acme["john"],
            )
            assert response.status_code == 200
    bodies: list[bytes] = []
    stalled = asyncio.Event()

    async def send(message: Message) -> None:
        if message["type"] != "http.response.body":
            return
        bodies.append(message["body"])
        if len(bodies) == 5:
            stalled.set()
            await asyncio.Event().wait()  # the client stops reading: this send never returns

    headers = {**acme["john"], "Last-Event-ID": "v.0"}
    await asyncio.wait_for(_call(app, "/events/", "platform_key=acme-corp", headers, send), 10)
    assert stalled.is_set()
    assert [body.count(b"event: change") for body in bodies] == [1] * 5
    assert [b"id: v.%d\n" % (n + 1) in body for n, body in enumerate(bodies)] == [True] * 5
    assert app.hub.open_streams == 0  # the stalled stream was dropped and let go


class _FailingAuth(FakeAuth):
    """The host's auth starts failing (its database is down) once `failure` is set."""

    failure: BaseException | None = None

    async def access(self, identity: Identity, platform_key: str, target: str | None) -> PlatformAccess:
        if self.failure is not None:
            raise self.failure
        return await super().access(identity, platform_key, target)


@pytest.mark.parametrize("failure", [StoreUnavailable("database restarting"), RuntimeError("bug")])
async def test_a_stream_cut_by_a_failure_ends_with_its_last_chunk(
    store: Store, failure: BaseException
) -> None:
    auth = _FailingAuth()
    john = auth.add("acme-corp", "john_doe")
    settings = EventSettings(recheck=0.2, heartbeat=600, poll_interval=0.05)
    app = PlatformMetadataApp(auth=auth, store=store, events=settings)
    async with serving(Starlette(routes=[Mount(URL.rstrip("/"), app=app)])) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            async with stream(client, EVENTS, john) as events:
                await events.next()
                auth.failure = failure
                # A clean end (EOF), not httpx.RemoteProtocolError (an incomplete chunked read).
                assert await events.wait_end() == []
                assert events.ended
    assert app.hub.open_streams == 0
