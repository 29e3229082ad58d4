"""Export (`GET <mount>/users/` with `Accept: application/x-ndjson`) and import (`POST`
NDJSON) of a platform's records, over every store (EXTENSIONS.md section 4)."""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from starlette_platform_metadata import (
    Committed,
    Limits,
    MemoryStore,
    PlatformMetadataApp,
    Store,
    changes,
)
from starlette_platform_metadata.listing import ImportRefused
from starlette_platform_metadata.stores.base import HistoryReader, ManyWriter

from .conftest import URL, FakeAuth, close_store, make_store

pytestmark = pytest.mark.anyio

USERS = URL + "users/"
P = "acme-corp"
NDJSON = {"Accept": "application/x-ndjson"}
IMPORT = {"Content-Type": "application/x-ndjson"}


def ndjson(*lines: Any) -> bytes:
    return b"".join(
        (line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines
    )


async def export(
    client: httpx.AsyncClient, headers: dict[str, str], **params: str
) -> list[dict[str, Any]]:
    response = await client.get(
        USERS, params={"platform_key": P, **params}, headers={**headers, **NDJSON}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.content == b"" or response.content.endswith(b"\n")
    return [json.loads(line) for line in response.content.splitlines()]


async def test_export_streams_every_matching_record_of_members_as_get_renders_it(
    client: httpx.AsyncClient, store: Store, auth: FakeAuth, acme: dict[str, dict[str, str]]
) -> None:
    for i in range(1200):  # more than one store read
        name = f"user{i:04d}"
        auth.add(P, name)
        await store.update(P, name, changes.replace({"i": i, "odd": i % 2 == 1}))
    await store.update(P, "gone", changes.replace({"odd": True}))  # not a member
    await store.update("other", "user0001", changes.replace({"odd": True}))
    every = await export(client, acme["admin"], limit="3", cursor="ignored")
    assert [r["username"] for r in every] == [f"user{i:04d}" for i in range(1200)]
    odd = await export(client, acme["admin"], filter='{"odd": true}')
    assert [r["username"] for r in odd] == [f"user{i:04d}" for i in range(1, 1200, 2)]
    response = await client.get(
        URL, params={"platform_key": P, "username": "user0007"}, headers=acme["admin"]
    )
    raw = await client.get(
        USERS, params={"platform_key": P, "filter": '{"i": 7}'}, headers={**acme["admin"], **NDJSON}
    )
    assert raw.content == response.content + b"\n"


@pytest.mark.parametrize(
    ("accept", "ndjson"),
    [
        ("application/x-ndjson", True),
        ("application/x-ndjson; q=0.9, application/json; q=0.5", True),
        ("application/json, application/x-ndjson", True),
        ("application/json, application/x-ndjson; q=0.5", False),
        ("application/x-ndjson; q=0", False),
        ("*/*", False),
        ("application/json", False),
    ],
)
async def test_accept_chooses_the_export(
    client: httpx.AsyncClient, acme: dict[str, dict[str, str]], accept: str, ndjson: bool
) -> None:
    response = await client.get(
        USERS, params={"platform_key": P}, headers={**acme["admin"], "Accept": accept}
    )
    expected = "application/x-ndjson" if ndjson else "application/json"
    assert (response.status_code, response.headers["content-type"]) == (200, expected)


async def test_export_of_20000_records_is_sent_in_chunks_in_flat_memory(tmp_path: Path) -> None:
    """The body goes out in chunks (many `http.response.body` messages, each a small part of
    the whole), and what the export holds at its peak does not grow with the
    number of records: exporting 20,000 peaks above exporting 5,000 of them by far less than
    the 15,000 extra records' text (what differs is the bounded caches' turnover)."""
    store = make_store("sqlite", tmp_path)
    auth = FakeAuth()
    admin = auth.add(P, "boss", admin=True)
    names = [f"user{i:05d}" for i in range(20_000)]
    for name in names:
        auth.members[(P, name)] = False
    assert isinstance(store, ManyWriter)
    document = {"plan": "pro", "settings": {"theme": "dark", "langs": ["en", "fr"]}, "n": 1.5}
    await store.update_many(
        P, [(name, changes.replace({**document, "q": i % 4})) for i, name in enumerate(names)]
    )
    app = PlatformMetadataApp(auth=auth, store=store)
    token = admin["Authorization"].encode()
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/users/",
        "raw_path": b"/users/",
        "root_path": "",
        "query_string": b"platform_key=acme-corp",
        "headers": [(b"authorization", token), (b"accept", b"application/x-ndjson")],
        "scheme": "http",
        "server": ("testserver", 80),
        "http_version": "1.1",
    }
    chunks: list[int] = []
    lines = 0

    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await never.wait()  # the client stays: Starlette listens for a disconnect meanwhile
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal lines
        if message["type"] == "http.response.start":
            assert message["status"] == 200
        elif message.get("body"):
            chunks.append(len(message["body"]))
            lines += message["body"].count(b"\n")

    async def peak_of(query: bytes) -> int:
        nonlocal lines
        chunks.clear()
        lines = 0
        tracemalloc.start()
        try:
            await app({**scope, "query_string": query}, receive, send)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    try:
        await app(scope, receive, send)  # warm: the store opens, caches fill
        quarter = await peak_of(b"platform_key=acme-corp&filter=%7B%22q%22%3A0%7D")
        assert lines == 5_000
        everything = await peak_of(b"platform_key=acme-corp")
    finally:
        await close_store(store)
    total = sum(chunks)
    assert lines == 20_000
    assert len(chunks) >= 40
    assert max(chunks) < total / 20
    # Memory that grew with the records would add at least the 15,000 extra records' text
    # (three quarters of `total`, 3.4 MB) to the peak.  What does differ is bounded: the
    # renderer's and the reader's caches (4,096 entries each) compact their tables as entries
    # turn over, one 200 KiB table at a time, more often over 20,000 records than 5,000.
    assert everything - quarter < total / 3, (everything, quarter, total)


async def test_import_replaces_each_users_document_as_the_admins_put(
    store: Store, tmp_path: Path
) -> None:
    """200 `{"imported": N}`; each line a PUT by the admin: versions go on, history keeps a
    "put" revision by the admin, `on_change` hears each change; others' records stay."""
    auth = FakeAuth()
    admin = auth.add(P, "boss", admin=True)
    for name in ("amy", "bob", "cid"):
        auth.add(P, name)
    heard: list[Committed] = []
    app = PlatformMetadataApp(auth=auth, store=store, on_change=heard.append)
    await store.update(P, "bob", changes.replace({"old": True}))
    await store.update(P, "cid", changes.replace({"kept": 1}))
    body = ndjson(
        {"username": "amy", "metadata": {"plan": "pro", "n": 1.0}},
        b"",
        {"username": "bob", "metadata": {}, "ignored": "field"},
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post(
            "/users/", params={"platform_key": P}, content=body, headers={**admin, **IMPORT}
        )
    assert (response.status_code, response.json()) == (200, {"imported": 2})
    amy, bob, cid = [await store.get(P, name) for name in ("amy", "bob", "cid")]
    assert (amy.metadata_json, amy.version) == ('{"plan":"pro","n":1.0}', 1)
    assert (bob.metadata, bob.version) == ({}, 2)
    assert cid.metadata == {"kept": 1}
    assert [(c.username, c.version, c.operation, c.actor) for c in heard] == [
        ("amy", 1, "put", "boss"),
        ("bob", 2, "put", "boss"),
    ]
    if isinstance(store, HistoryReader):
        (revision, *_) = await store.revisions(P, "bob")
        assert (revision.version, revision.operation, revision.actor) == (2, "put", "boss")


async def test_one_bad_line_refuses_the_whole_import_naming_every_bad_line(
    client: httpx.AsyncClient, store: Store, auth: FakeAuth, acme: dict[str, dict[str, str]]
) -> None:
    """Nothing is written, history included, and each bad line is named, counted from 1."""
    policy = {"schema": {"type": "object", "properties": {"plan": {"enum": ["free", "pro"]}}}}
    answer = await client.put(
        URL + "policy/", params={"platform_key": P}, json=policy, headers=acme["admin"]
    )
    assert answer.status_code == 200
    await client.put(URL, params={"platform_key": P}, json={"metadata": {"v": 1}}, headers=acme["john"])
    before = await store.get(P, "john_doe")
    auth.add(P, "big")
    body = ndjson(
        {"username": "john_doe", "metadata": {"plan": "pro"}},
        {"username": "jane", "metadata": {"plan": "free"}},
        b'{"username": "x", "metadata": ',
        {"username": "eve", "metadata": {}},
        {"username": "jane", "metadata": {}},
        {"username": "acme_admin", "metadata": {"plan": "gold"}},
        [1, 2],
        {"metadata": {"a": 1}},
        {"username": "jane\n", "metadata": []},
        {"username": 7, "metadata": {"a": 1}},
        {"username": "john_doe"},
        {"username": "big", "metadata": {"x": "y" * 70_000}},
    )
    response = await client.post(
        USERS, params={"platform_key": P}, content=body, headers={**acme["admin"], **IMPORT}
    )
    assert response.status_code == 400
    lines = response.json()["lines"]
    assert list(lines) == ["3", "4", "5", "6", "7", "8", "9", "10", "11", "12"]
    assert lines["3"][0].startswith("JSON parse error - Expecting value")
    assert lines["4"] == ["User not found"]
    assert lines["5"] == ["username: also given on line 2."]
    assert lines["6"] == ['metadata: /plan: value is not one of "free" or "pro"']
    assert lines["7"] == ['Expected an object {"username": ..., "metadata": {...}}, but got list.']
    assert lines["8"] == ["username: This field is required."]
    assert lines["9"] == [
        "username: May not contain control characters.",
        'metadata: Expected a dictionary of items but got type "list".',
    ]
    assert lines["10"] == ["username: Not a valid string."]
    assert lines["11"] == ["metadata: This field is required."]
    assert lines["12"] == [
        "metadata: Stored metadata would be larger than the limit of 65536 bytes."
    ]
    assert await store.get(P, "john_doe") == before
    assert (await store.get(P, "jane")).version == 0
    if isinstance(store, HistoryReader):
        assert [r.version for r in await store.revisions(P, "john_doe")] == [1]
        assert await store.revisions(P, "jane") == []


async def test_an_import_over_max_import_bytes_is_413_and_other_media_types_415(
    store: Store,
) -> None:
    auth = FakeAuth()
    admin = auth.add(P, "boss", admin=True)
    app = PlatformMetadataApp(auth=auth, store=store, limits=Limits(max_import_bytes=100))
    transport = httpx.ASGITransport(app=app)
    line = ndjson({"username": "boss", "metadata": {"a": "b" * 100}})
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        too_big = await client.post(
            "/users/", params={"platform_key": P}, content=line, headers={**admin, **IMPORT}
        )
        assert too_big.status_code == 413
        assert too_big.json() == {
            "detail": "Import body is larger than the limit of 100 bytes.",
            "limit": "max_import_bytes",
            "value": 100,
        }

        async def chunked() -> Any:
            for _ in range(10):
                yield line[:50]

        streamed = await client.post(
            "/users/", params={"platform_key": P}, content=chunked(), headers={**admin, **IMPORT}
        )
        assert streamed.status_code == 413
        json_body = await client.post(
            "/users/", params={"platform_key": P}, json={"username": "boss"}, headers=admin
        )
        assert json_body.status_code == 415
        assert json_body.json() == {"detail": 'Unsupported media type "application/json" in request.'}
        empty = await client.post(
            "/users/", params={"platform_key": P}, content=b"", headers={**admin, **IMPORT}
        )
        assert (empty.status_code, empty.json()) == (200, {"imported": 0})
    assert await store.get(P, "boss") == await MemoryStore().get(P, "boss")


async def test_export_then_import_into_an_empty_store_gives_back_the_same_documents(
    client: httpx.AsyncClient,
    store: Store,
    auth: FakeAuth,
    acme: dict[str, dict[str, str]],
    store_kind: str,
    tmp_path: Path,
) -> None:
    from starlette_platform_metadata.testing import AWKWARD, FILTER_DOCUMENTS

    # As a client may PUT them: keys of 1 to max_key_length (256) characters.
    documents = {
        name: {key: value for key, value in document.items() if 0 < len(key) <= 256}
        for name, document in {"awkward": AWKWARD, **FILTER_DOCUMENTS}.items()
    }
    for name, document in documents.items():
        auth.add(P, name)
        await store.update(P, name, changes.replace(document))
    exported = await client.get(
        USERS, params={"platform_key": P}, headers={**acme["admin"], **NDJSON}
    )
    lines = [json.loads(line) for line in exported.content.splitlines()]
    backup = b"".join(
        json.dumps({"username": r["username"], "metadata": r["metadata"]}).encode() + b"\n"
        for r in lines
    )
    target = make_store(store_kind, tmp_path / "target")
    (tmp_path / "target").mkdir()
    try:
        app = PlatformMetadataApp(auth=auth, store=target)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as other:
            imported = await other.post(
                "/users/", params={"platform_key": P}, content=backup,
                headers={**acme["admin"], **IMPORT},
            )
            assert (imported.status_code, imported.json()) == (200, {"imported": len(documents)}), imported.text
            again = await other.get(
                "/users/", params={"platform_key": P}, headers={**acme["admin"], **NDJSON}
            )
        for name in documents:
            assert (await target.get(P, name)).metadata_json == (await store.get(P, name)).metadata_json
        assert [json.loads(line)["metadata"] for line in again.content.splitlines()] == [
            r["metadata"] for r in lines
        ]
    finally:
        await close_store(target)


async def test_the_host_imports_and_exports_from_its_own_code(store: Store) -> None:
    """`app.import_records` / `app.export_records`: the same code without HTTP; `members`
    is the host's, `None` takes every stored record."""
    app = PlatformMetadataApp(auth=FakeAuth(), store=store)
    count = await app.import_records(
        P, ndjson({"username": "a", "metadata": {"x": 1}}, {"username": "b", "metadata": {}})
    )
    assert count == 2
    assert (await store.get(P, "a")).metadata == {"x": 1}
    chunks = [chunk async for chunk in app.export_records(P, filter={"x": 1.0})]
    assert b"".join(chunks).count(b"\n") == 1

    async def only_b(names: Any) -> set[str]:
        return {"b"} & set(names)

    with pytest.raises(ImportRefused) as refused:
        await app.import_records(P, ndjson({"username": "a", "metadata": {}}), members=only_b)
    assert refused.value.lines == {"1": ["User not found"]}
    chunks = [chunk async for chunk in app.export_records(P, members=only_b)]
    assert [json.loads(line)["username"] for line in b"".join(chunks).splitlines()] == ["b"]


async def test_a_store_without_update_many_answers_an_import_404() -> None:
    class ListOnly:
        def __init__(self) -> None:
            self.inner = MemoryStore()

        async def get(self, platform_key: str, username: str) -> Any:
            return await self.inner.get(platform_key, username)

        async def update(self, platform_key: str, username: str, change: Any) -> Any:
            return await self.inner.update(platform_key, username, change)

        async def records(self, platform_key: str, *, after: Any = None, limit: int = 100) -> Any:
            return await self.inner.records(platform_key, after=after, limit=limit)

    auth = FakeAuth()
    admin = auth.add(P, "boss", admin=True)
    app = Starlette(routes=[Mount("/m", app=PlatformMetadataApp(auth=auth, store=ListOnly()))])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        await client.put("/m/", params={"platform_key": P}, json={"metadata": {"k": 1}}, headers=admin)
        posted = await client.post(
            "/m/users/", params={"platform_key": P}, content=b"", headers={**admin, **IMPORT}
        )
        assert (posted.status_code, posted.json()) == (404, {"detail": "Import is not available on this server."})
        # Its `records` takes no filter: the listing filters each page itself.
        listed = await client.get(
            "/m/users/", params={"platform_key": P, "filter": '{"k": 1.0}'}, headers=admin
        )
        assert [r["username"] for r in listed.json()["results"]] == ["boss"]
