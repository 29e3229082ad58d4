"""What an export holds (issue 22): chunks bounded in bytes, one bounded page of the store in
memory at a time, and a client that stops reading dropped after the send timeout with
everything the export held released; over every store.

The app is driven as an ASGI server would drive it, with a `send` of our own: it sees every
message, and can take as long as a client that does not read would make it.
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
import weakref
from collections.abc import Mapping
from typing import Any

import pytest
from starlette.types import Message

from starlette_platform_metadata import Limits, PlatformMetadataApp, Store, changes
from starlette_platform_metadata.events import EventSettings
from starlette_platform_metadata.responses import render_record
from starlette_platform_metadata.listing import EXPORT_PAGE_BYTES, export_page_size
from starlette_platform_metadata.stores.base import ManyWriter, Record, RecordLister

from .conftest import FakeAuth

pytestmark = pytest.mark.anyio

P = "acme-corp"
# The bound the export promises: whole lines, at most this many bytes a message, unless one
# line alone is longer.
CHUNK_BYTES = 64 * 1024
# Enough records of ~20 KB that the old reads of 500 records held ~10 MB at once.
USERS = 600
BIG = "user0300b"  # a record larger than a chunk: sent alone
SEND_TIMEOUT = 0.3
HEADERS = [
    (b"vary", b"Accept, Authorization"),
    (b"allow", b"GET, POST, HEAD, OPTIONS"),
    (b"content-type", b"application/x-ndjson"),
]


async def fill(store: Store, auth: FakeAuth) -> dict[str, str]:
    admin = auth.add(P, "boss", admin=True)
    names = [f"user{i:04d}" for i in range(USERS)]
    for name in [*names, BIG]:
        auth.members[(P, name)] = False
    assert isinstance(store, ManyWriter)
    await store.update_many(
        P, [(name, changes.replace({"i": i, "blob": "x" * (20_000 + i)})) for i, name in enumerate(names)]
    )
    await store.update(P, BIG, changes.replace({"blob": "y" * 100_000}))
    return admin


def scope(admin: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": "/users/",
        "raw_path": b"/users/",
        "root_path": "",
        "query_string": b"platform_key=" + P.encode(),
        "headers": [
            (b"authorization", admin["Authorization"].encode()),
            (b"accept", b"application/x-ndjson"),
        ],
        "scheme": "http",
        "server": ("testserver", 80),
        "http_version": "1.1",
    }


async def stays() -> Message:
    await asyncio.Event().wait()  # the client stays connected
    raise AssertionError


async def expected_body(store: Store) -> bytes:
    assert isinstance(store, RecordLister)
    found = await store.records(P, limit=USERS + 10)
    return b"".join(render_record(name, P, record) + b"\n" for name, record in found)


class _Page(list[tuple[str, Record]]):
    """A page as the store returns it, that a weak reference can watch."""


def track_pages(monkeypatch: pytest.MonkeyPatch, store: Store) -> list[weakref.ref[_Page]]:
    """Every page the store's `records` hands out, weakly: alive while someone holds it."""
    assert isinstance(store, RecordLister)
    inner = store.records
    pages: list[weakref.ref[_Page]] = []

    async def records(
        platform_key: str,
        *,
        after: str | None = None,
        limit: int = 100,
        filter: Mapping[str, Any] | None = None,
    ) -> list[tuple[str, Record]]:
        page = _Page(await inner(platform_key, after=after, limit=limit, filter=filter))
        pages.append(weakref.ref(page))
        return page

    monkeypatch.setattr(store, "records", records)
    return pages


async def test_an_export_sends_whole_lines_in_chunks_of_64_kib_holding_one_bounded_page(
    store: Store, auth: FakeAuth
) -> None:
    """Every body message is at most 64 KiB of whole lines (the 100 KB record alone in its
    own), the body is exactly the records rendered as a GET renders them, the headers are the
    export's as before, and what the export allocates at its peak is a small bounded amount
    (one page of the store, one chunk), not a read of 500 documents."""
    admin = await fill(store, auth)
    app = PlatformMetadataApp(auth=auth, store=store)
    expected = await expected_body(store)
    starts: list[Any] = []
    # Each body message as (size, lines, whether it is the big record's); its bytes are
    # compared with `expected` as they come, never kept (that would be the peak measured).
    bodies: list[tuple[int, int, bool]] = []
    offset = 0

    async def send(message: Message) -> None:
        nonlocal offset
        if message["type"] == "http.response.start":
            starts.append((message["status"], message["headers"]))
            return
        body = message.get("body", b"")
        assert memoryview(expected)[offset : offset + len(body)] == body, offset
        offset += len(body)
        bodies.append((len(body), body.count(b"\n"), f'"{BIG}"'.encode() in body))

    await asyncio.wait_for(app(scope(admin), stays, send), 60)  # warm: the store opens
    assert offset == len(expected)
    bodies.clear()
    offset = 0
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        await asyncio.wait_for(app(scope(admin), stays, send), 60)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert starts == [(200, HEADERS)] * 2
    assert offset == len(expected)
    assert bodies[-1] == (0, 0, False)  # the end of the body: the client has everything
    for size, lines, _ in bodies:
        if lines > 1:
            assert size <= CHUNK_BYTES
    big = [(size, lines) for size, lines, is_big in bodies if is_big]
    assert len(big) == 1 and big[0][1] == 1 and big[0][0] > CHUNK_BYTES
    # Sent in many messages, each a small part of the whole (12 MB).
    assert len(bodies) > len(expected) // CHUNK_BYTES
    # One page of ~20 KB documents and a chunk, with the copies a driver makes: well under
    # 4 MiB; reading 500 of them at once held ~10 MB three times over.
    assert peak < 4 * 1024 * 1024, peak


async def test_a_client_that_stops_reading_is_dropped_after_the_send_timeout_and_released(
    store: Store, auth: FakeAuth, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that takes one chunk and then none: within the send timeout (the events'
    `send_timeout`, shared) the export stops, ends the response without its final empty
    message (the client sees a cut body, never a complete-looking one), reads nothing more and
    holds nothing: every page the store handed out is freed."""
    admin = await fill(store, auth)
    app = PlatformMetadataApp(
        auth=auth, store=store, events=EventSettings(send_timeout=SEND_TIMEOUT)
    )
    pages = track_pages(monkeypatch, store)
    messages: list[Message] = []

    async def send(message: Message) -> None:
        messages.append(message)
        if len(messages) > 2:
            await asyncio.Event().wait()  # the socket is full and stays full

    started = time.monotonic()
    await asyncio.wait_for(app(scope(admin), stays, send), 10)
    elapsed = time.monotonic() - started
    assert SEND_TIMEOUT <= elapsed < SEND_TIMEOUT + 2, elapsed
    assert len(messages) == 3
    assert all(message.get("more_body") for message in messages[1:])
    reads = len(pages)
    await asyncio.sleep(SEND_TIMEOUT)
    gc.collect()
    assert len(pages) == reads  # no store read after the export ended
    assert [page for page in pages if page() is not None] == []


async def test_an_export_stops_reading_when_the_client_disconnects(
    store: Store, auth: FakeAuth, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client gone after the first chunk: a server sends nothing more to it (uvicorn's
    `send` returns at once), and the export stops reading the store within a page or two."""
    admin = await fill(store, auth)
    app = PlatformMetadataApp(auth=auth, store=store)
    pages = track_pages(monkeypatch, store)
    gone = asyncio.Event()

    async def receive() -> Message:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            gone.set()
            await asyncio.sleep(0)

    await asyncio.wait_for(app(scope(admin), receive, send), 30)
    assert len(pages) <= 3, len(pages)


def test_a_store_read_of_an_export_holds_at_most_2_mib_of_documents() -> None:
    """As many documents of `max_document_bytes` as fit in 2 MiB: 32 at the default 64 KiB,
    never fewer than one nor more than 500 (a platform of small documents is not read in
    thousands of queries)."""
    assert EXPORT_PAGE_BYTES == 2 * 1024 * 1024
    assert export_page_size(64 * 1024) == 32
    assert export_page_size(16 * 1024 * 1024) == 1
    assert export_page_size(1024) == 500


async def test_the_hosts_own_export_reads_pages_sized_by_the_apps_limits(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`app.export_records` sizes its reads by the app's `max_document_bytes`, as the HTTP
    export does: 4 records of 512 KiB fill the 2 MiB a read may hold."""
    app = PlatformMetadataApp(
        auth=FakeAuth(), store=store, limits=Limits(max_document_bytes=512 * 1024)
    )
    for i in range(5):
        await store.update(P, f"u{i}", changes.replace({"i": i}))
    assert isinstance(store, RecordLister)
    inner = store.records
    asked: list[int] = []

    async def records(
        platform_key: str,
        *,
        after: str | None = None,
        limit: int = 100,
        filter: Mapping[str, Any] | None = None,
    ) -> list[tuple[str, Record]]:
        asked.append(limit)
        return await inner(platform_key, after=after, limit=limit, filter=filter)

    monkeypatch.setattr(store, "records", records)
    body = b"".join([chunk async for chunk in app.export_records(P)])
    assert body.count(b"\n") == 5
    assert asked == [4, 4]
