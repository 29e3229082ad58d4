"""Live changes (EXTENSIONS.md section 3) over every store, served by a real uvicorn server.

Order, no duplicates, exact resume from history, the member view, re-checked access, the
bound on open streams, slow clients and shutdown; tenant isolation tried from every side."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from starlette_platform_metadata import DatabaseStore, PlatformMetadataApp, Store
from starlette_platform_metadata.events import EventSettings, Subscription

from .conftest import POSTGRES_URL, URL, FakeAuth, make_store
from .sse import Stream, serving, stream

pytestmark = pytest.mark.anyio

META = URL + "?platform_key=acme-corp"
EVENTS = URL + "events/?platform_key=acme-corp"
ALL = EVENTS + "&all_users=true"
FAST = EventSettings(heartbeat=0.3, recheck=0.2, poll_interval=0.05)

Headers = dict[str, dict[str, str]]


class Served:
    def __init__(self, app: PlatformMetadataApp, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client

    async def write(self, headers: dict[str, str], url: str = META, **body: Any) -> httpx.Response:
        response = await self.client.patch(url, json={"metadata": body}, headers=headers)
        assert response.status_code == 200, response.text
        return response


@pytest.fixture
async def served(auth: FakeAuth, store: Store, acme: Headers) -> AsyncIterator[Served]:
    app = PlatformMetadataApp(auth=auth, store=store, events=FAST)
    async with serving(Starlette(routes=[Mount(URL.rstrip("/"), app=app)])) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            yield Served(app, client)


async def open_streams(app: PlatformMetadataApp, count: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while app.hub.open_streams != count:
        assert time.monotonic() < deadline, app.hub.open_streams
        await asyncio.sleep(0.02)


# --- one user ----------------------------------------------------------------------------------


async def test_a_snapshot_then_every_change_in_order(served: Served, acme: Headers) -> None:
    async with stream(served.client, EVENTS, acme["john"]) as events:
        assert events.response.status_code == 200
        assert events.response.headers["content-type"].startswith("text/event-stream")
        assert events.response.headers["cache-control"] == "no-store"
        snapshot = await events.next()
        assert snapshot.event == "snapshot"
        assert snapshot.data == {
            "username": "john_doe", "platform_key": "acme-corp", "metadata": {},
            "created_at": None, "updated_at": None, "version": 0, "actor": None, "operation": None,
        }
        await served.write(acme["john"], a=1)
        await served.write(acme["admin"], META + "&username=john_doe", b=2)
        await served.client.delete(META, headers=acme["john"])
        await served.write(acme["jane"], c=3)  # another user: not on john's stream
        changes = await events.events(3)
    assert [(e.event, e.data["version"], e.data["operation"], e.data["actor"]) for e in changes] == [
        ("change", 1, "patch", "john_doe"),
        ("change", 2, "patch", "acme_admin"),
        ("change", 3, "delete", "john_doe"),
    ]
    assert [e.data["metadata"] for e in changes] == [{"a": 1}, {"a": 1, "b": 2}, {}]
    assert changes[2].data["created_at"] is None and changes[2].data["updated_at"] is None
    assert changes[1].data["created_at"] == changes[0].data["created_at"]
    assert len({e.id for e in [snapshot, *changes]}) == 4


async def test_a_body_as_get_shows_it(served: Served, acme: Headers) -> None:
    """A change's data is the GET body of that version, plus version, actor, operation."""
    async with stream(served.client, EVENTS, acme["john"]) as events:
        await events.next()
        await served.write(acme["john"], theme="dark")
        change = await events.next()
    got = (await served.client.get(META, headers=acme["john"])).json()
    assert {k: change.data[k] for k in got} == got
    assert change.data["version"] == 1


async def test_resume_replays_exactly_what_was_missed(served: Served, acme: Headers) -> None:
    john = acme["john"]
    async with stream(served.client, EVENTS, john) as events:
        await events.next()
        await served.write(john, n=1)
        await served.write(john, n=2)
        seen = await events.events(2)
    cursor = seen[-1].id
    assert cursor is not None
    for n in range(3, 6):
        await served.write(john, n=n)
    async with stream(served.client, EVENTS, {**john, "Last-Event-ID": cursor}) as events:
        replayed = await events.events(3)
        assert [(e.event, e.data["metadata"]["n"]) for e in replayed] == [
            ("change", 3), ("change", 4), ("change", 5)
        ]
        await served.write(john, n=6)
        live = await events.next()
        assert (live.event, live.data["metadata"]["n"]) == ("change", 6)
    # The same cursor as a query parameter, for clients that cannot set headers.
    async with stream(served.client, EVENTS + f"&last_event_id={cursor}", john) as events:
        replayed = await events.events(4)
        assert [e.data["metadata"]["n"] for e in replayed] == [3, 4, 5, 6]
        assert [e.id for e in replayed] == [live.id.replace("6", str(n)) for n in (3, 4, 5, 6)]


async def test_a_cursor_older_than_the_history_kept_gets_a_snapshot(
    auth: FakeAuth, store: Store, acme: Headers
) -> None:
    app = PlatformMetadataApp(auth=auth, store=store, events=FAST, history_per_user=2)
    async with serving(Starlette(routes=[Mount(URL.rstrip("/"), app=app)])) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            for n in range(1, 6):
                await client.patch(META, json={"metadata": {"n": n}}, headers=acme["john"])
            for cursor in ["v.1", "v.99", "s.3", "garbage"]:
                headers = {**acme["john"], "Last-Event-ID": cursor}
                async with stream(client, EVENTS, headers) as events:
                    first = await events.next()
                    assert (first.event, first.data["version"]) == ("snapshot", 5), cursor
                    assert first.data["metadata"] == {"n": 5}
            # Within the history kept: an exact replay.
            async with stream(client, EVENTS, {**acme["john"], "Last-Event-ID": "v.3"}) as events:
                assert [e.data["version"] for e in await events.events(2)] == [4, 5]


async def test_a_purge_is_a_change_like_any_delete(served: Served, acme: Headers) -> None:
    async with stream(served.client, EVENTS, acme["john"]) as events:
        await events.next()
        await served.write(acme["john"], secret="x")
        # (Read before the purge: a change erased before any stream read it is not replayed.)
        changes = [await events.next()]
        await served.client.delete(META + "&history=purge", headers=acme["john"])
        changes.append(await events.next())
    assert [(e.data["operation"], e.data["metadata"]) for e in changes] == [
        ("patch", {"secret": "x"}), ("delete", {})
    ]


async def test_members_never_see_private_keys(served: Served, acme: Headers) -> None:
    policy = URL + "policy/?platform_key=acme-corp"
    await served.client.put(policy, json={"private_keys": ["notes"]}, headers=acme["admin"])
    await served.write(acme["admin"], META + "&username=john_doe", notes="vip", theme="dark")
    async with stream(served.client, EVENTS, acme["john"]) as mine, stream(
        served.client, EVENTS + "&username=john_doe", acme["admin"]
    ) as full:
        assert (await mine.next()).data["metadata"] == {"theme": "dark"}
        assert (await full.next()).data["metadata"] == {"notes": "vip", "theme": "dark"}
        await served.write(acme["admin"], META + "&username=john_doe", notes="churn risk")
        change = await mine.next()
        assert change.data["metadata"] == {"theme": "dark"} and "churn" not in str(change.data)
        assert (await full.next()).data["metadata"]["notes"] == "churn risk"


# --- a platform's users (admins) ---------------------------------------------------------------


async def test_all_users_carries_every_change_after_its_headers_in_commit_order(
    served: Served, acme: Headers
) -> None:
    await served.write(acme["john"], before=True)  # committed before: not on the stream
    async with stream(served.client, ALL, acme["admin"]) as events:
        writes = [
            served.write(acme[name], n=n) for n in range(5) for name in ("john", "jane")
        ]
        await asyncio.gather(*writes)
        changes = await events.events(10)
        await served.write(acme["eve"], URL + "?platform_key=other", x=1)  # another platform
        await served.write(acme["jane"], last=True)
        last = await events.next()
    assert all(e.event == "change" for e in changes)
    seqs = [int(e.id.removeprefix("s.")) for e in [*changes, last] if e.id]
    assert seqs == sorted(seqs) and len(set(seqs)) == 11
    for name in ("john_doe", "jane"):
        versions = [e.data["version"] for e in changes if e.data["username"] == name]
        assert versions == sorted(versions) and len(versions) == 5
    assert last.data["username"] == "jane" and last.data["metadata"]["last"] is True


async def test_all_users_resume_and_reset(auth: FakeAuth, store: Store, acme: Headers) -> None:
    app = PlatformMetadataApp(auth=auth, store=store, events=FAST, history_per_user=3)
    async with serving(Starlette(routes=[Mount(URL.rstrip("/"), app=app)])) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            for n in range(3):
                await client.patch(META, json={"metadata": {"n": n}}, headers=acme["jane"])
            headers = {**acme["admin"], "Last-Event-ID": "s.1"}
            async with stream(client, ALL, headers) as events:
                assert [e.id for e in await events.events(2)] == ["s.2", "s.3"]
            # jane's revisions 1..2 (seq 1..2) fall out of the 3 kept: s.1 is too old now.
            for n in range(3, 5):
                await client.patch(META, json={"metadata": {"n": n}}, headers=acme["jane"])
            async with stream(client, ALL, headers) as events:
                reset = await events.next()
                assert (reset.event, reset.id) == ("reset", "s.5")
                await client.patch(META, json={"metadata": {"n": 9}}, headers=acme["john"])
                change = await events.next()
                assert (change.event, change.id, change.data["username"]) == ("change", "s.6", "john_doe")


# --- who may open what --------------------------------------------------------------------------


async def test_access_is_checked_as_for_get(served: Served, acme: Headers) -> None:
    admin_only = {"error": "Only tenant admins can access other users' metadata"}
    cases = [
        (EVENTS, {}, 401, {"detail": "Authentication credentials were not provided."}),
        (URL + "events/?platform_key=nope", acme["john"], 404, {"error": "Platform not found"}),
        (EVENTS, acme["eve"], 403, {"error": "You are not a member of this platform"}),
        (EVENTS + "&username=john_doe", acme["jane"], 403, admin_only),
        (EVENTS + "&username=ghost", acme["admin"], 404, {"error": "User not found"}),
        (ALL, acme["john"], 403, admin_only),
        (ALL, acme["other_admin"], 403, admin_only),
        (ALL + "&username=jane", acme["admin"], 400, {"all_users": ["Give either username or all_users, not both."]}),
        (EVENTS + "&all_users=maybe", acme["admin"], 400, {"all_users": ["Must be a valid boolean."]}),
    ]
    for url, headers, status, body in cases:
        async with stream(served.client, url, headers) as events:
            assert (events.response.status_code, events.response.json()) == (status, body), url
    assert served.app.hub.open_streams == 0


async def test_a_revoked_token_or_a_lost_membership_ends_the_stream(
    served: Served, auth: FakeAuth, acme: Headers
) -> None:
    async with stream(served.client, EVENTS, acme["john"]) as events:
        await events.next()
        del auth.tokens["tok-john_doe"]
        started = time.monotonic()
        assert await events.wait_end() == []
        assert time.monotonic() - started < 2
    async with stream(served.client, ALL, acme["admin"]) as events:
        auth.members[("acme-corp", "acme_admin")] = False  # no longer a tenant admin
        await events.wait_end()
    async with stream(served.client, EVENTS, acme["jane"]) as events:
        await events.next()
        del auth.members[("acme-corp", "jane")]
        await events.wait_end()
    await open_streams(served.app, 0)


async def test_idle_streams_get_a_comment_every_heartbeat(served: Served, acme: Headers) -> None:
    async with stream(served.client, EVENTS, acme["john"]) as events:
        await events.next()
        with pytest.raises(TimeoutError):
            await events.next(timeout=1.0)
        assert events.comments >= 2


async def test_open_streams_are_bounded_per_process(auth: FakeAuth, store: Store, acme: Headers) -> None:
    app = PlatformMetadataApp(auth=auth, store=store, events=EventSettings(max_streams=2))
    async with serving(Starlette(routes=[Mount(URL.rstrip("/"), app=app)])) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            async with stream(client, EVENTS, acme["john"]) as one, stream(client, EVENTS, acme["jane"]) as two:
                await one.next()
                await two.next()
                async with stream(client, EVENTS, acme["admin"]) as three:
                    assert three.response.status_code == 503
                    assert three.response.headers["Retry-After"] == "1"
                    assert three.response.json() == {"detail": "Too many open event streams. Try again shortly."}
            await open_streams(app, 0)
            async with stream(client, EVENTS, acme["admin"]) as again:
                assert (await again.next()).event == "snapshot"


async def test_a_stream_that_falls_behind_is_ended_not_buffered(
    auth: FakeAuth, store: Store, acme: Headers
) -> None:
    app = PlatformMetadataApp(auth=auth, store=store, events=EventSettings(max_queued=3, poll_interval=0.05))
    async with serving(Starlette(routes=[Mount(URL.rstrip("/"), app=app)])) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            for n in range(40):
                auth.add("acme-corp", f"u{n}")
            async with stream(client, ALL, acme["admin"]) as events:
                await open_streams(app, 1)
                # 40 changes in one commit, so the hub hands them over together, more than
                # the stream may queue (40 PATCHes could trickle in, 3 at a time, on a slow
                # machine, and the stream would keep up).
                lines = "".join(f'{{"username": "u{n}", "metadata": {{"n": 1}}}}\n' for n in range(40))
                assert await app.import_records("acme-corp", lines.encode(), actor="acme_admin") == 40
                await events.wait_end()
            await open_streams(app, 0)


def test_a_subscription_never_holds_more_than_its_bound() -> None:
    from starlette_platform_metadata import Revision
    from datetime import datetime, timezone

    subscription = Subscription("p", None, max_queued=2)
    revision = Revision(1, "patch", "a", datetime.now(timezone.utc), "{}", ())
    for _ in range(5):
        subscription.push("a", revision)
    assert len(subscription.queue) == 2 and subscription.overflowed


async def test_close_all_and_disconnects_free_every_stream(served: Served, acme: Headers) -> None:
    async with stream(served.client, EVENTS, acme["john"]) as one:
        await one.next()
        async with stream(served.client, ALL, acme["admin"]) as two:
            await open_streams(served.app, 2)
        await open_streams(served.app, 1)  # the client went away
        served.app.hub.close_all()
        started = time.monotonic()
        await one.wait_end()
        assert time.monotonic() - started < 1
    await open_streams(served.app, 0)


async def test_history_off_means_no_live_changes(auth: FakeAuth, store: Store, acme: Headers) -> None:
    app = PlatformMetadataApp(auth=auth, store=store, history_per_user=0)
    async with serving(Starlette(routes=[Mount(URL.rstrip("/"), app=app)])) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            response = await client.get(EVENTS, headers=acme["john"])
            assert (response.status_code, response.json()) == (
                404, {"detail": "Live changes are not available on this server."}
            )


# --- other processes ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sqlite"] + (["postgresql"] if POSTGRES_URL else []))
async def test_a_change_by_another_process_reaches_the_stream_within_a_second(
    kind: str, tmp_path: Path, auth: FakeAuth, acme: Headers
) -> None:
    """Two stores on one database stand for two workers: nothing in memory is shared."""
    reader = make_store(kind, tmp_path)
    assert isinstance(reader, DatabaseStore)
    writer = DatabaseStore(str(reader.connection.database.url) if kind == "postgresql" else f"sqlite:///{tmp_path / 'metadata.db'}", table=reader.table)
    app = PlatformMetadataApp(auth=auth, store=reader, events=EventSettings(poll_interval=0.2))
    other = PlatformMetadataApp(auth=auth, store=writer)
    try:
        async with serving(Starlette(routes=[Mount(URL.rstrip("/"), app=app)])) as base, serving(
            Starlette(routes=[Mount(URL.rstrip("/"), app=other)])
        ) as other_base:
            async with httpx.AsyncClient(base_url=base, timeout=10) as client, httpx.AsyncClient(
                base_url=other_base, timeout=10
            ) as other_client:
                async with stream(client, ALL, acme["admin"]) as events:
                    await open_streams(app, 1)
                    for n in range(3):
                        started = time.monotonic()
                        response = await other_client.patch(
                            META, json={"metadata": {"n": n}}, headers=acme["john"]
                        )
                        assert response.status_code == 200
                        change = await events.next(timeout=2)
                        assert time.monotonic() - started < 1.0
                        assert change.data["metadata"] == {"n": n}
    finally:
        await reader.disconnect()
        await writer.disconnect()


async def test_hosts_watch_the_same_feed_from_python(served: Served, acme: Headers) -> None:
    seen: list[tuple[str, int, str]] = []

    async def watch() -> None:
        async for change in served.app.hub.watch("acme-corp"):
            seen.append((change.username, change.version, change.operation))
            if len(seen) == 3:
                return

    task = asyncio.create_task(watch())
    await open_streams(served.app, 1)
    await served.write(acme["john"], a=1)
    await served.write(acme["jane"], b=1)
    await served.client.delete(META, headers=acme["john"])
    await asyncio.wait_for(task, 5)
    assert seen == [("john_doe", 1, "patch"), ("jane", 1, "patch"), ("john_doe", 2, "delete")]
    await open_streams(served.app, 0)


async def test_writes_build_nothing_for_live_changes_while_no_stream_is_open(
    served: Served, acme: Headers
) -> None:
    """The hub listens only while streams are open, and then only for which platform
    committed: a write never builds a `Committed` for it."""
    assert not served.app.feed.watched and not served.app.feed.active
    async with stream(served.client, EVENTS, acme["john"]) as events:
        await events.next()
        assert served.app.feed.watched and not served.app.feed.active
    await open_streams(served.app, 0)
    deadline = time.monotonic() + 2
    while served.app.feed.watched and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not served.app.feed.watched
