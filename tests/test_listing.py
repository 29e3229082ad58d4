"""`GET <mount>/users/`: a tenant admin's listing of a platform's records (EXTENSIONS.md 4),
over every store: who may list, members only, keyset pages, filters, paging under writes."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import HTTPConnection
from starlette.routing import Mount

from starlette_platform_metadata import (
    Identity,
    MemoryStore,
    PlatformAccess,
    PlatformMetadataApp,
    Store,
    changes,
)
from starlette_platform_metadata.cursors import page_cursor, read_listing_cursor
from starlette_platform_metadata.listing import MAX_READS
from starlette_platform_metadata.testing import FILTER_CASES, FILTER_DOCUMENTS

from .conftest import URL, FakeAuth

pytestmark = pytest.mark.anyio

USERS = URL + "users/"
P = "acme-corp"


async def put(client: httpx.AsyncClient, headers: dict[str, str], metadata: Any, **params: str) -> None:
    response = await client.put(
        URL, params={"platform_key": P, **params}, json={"metadata": metadata}, headers=headers
    )
    assert response.status_code == 200, response.text


async def walk(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> tuple[list[dict[str, Any]], int]:
    """Every page from the first, following `next` (absolute URLs); the results and pages."""
    results: list[dict[str, Any]] = []
    pages = 0
    response = await client.get(USERS, params={"platform_key": P, **params}, headers=headers)
    while True:
        assert response.status_code == 200, response.text
        pages += 1
        body = response.json()
        assert set(body) == {"next", "results"}
        results += body["results"]
        if body["next"] is None:
            return results, pages
        assert body["next"].startswith("http://testserver" + USERS)
        response = await client.get(body["next"], headers=headers)


async def test_an_admin_lists_the_stored_records_of_members_by_username(
    client: httpx.AsyncClient, acme: dict[str, dict[str, str]]
) -> None:
    """Each result is the success body GET gives, byte for byte; users with nothing stored
    are not listed."""
    await put(client, acme["john"], {"plan": "pro", "n": 1.0})
    await put(client, acme["admin"], {"role": "owner"})
    response = await client.get(USERS, params={"platform_key": P}, headers=acme["admin"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert "Accept" in response.headers["vary"]
    body = response.json()
    assert body["next"] is None
    assert [r["username"] for r in body["results"]] == ["acme_admin", "john_doe"]
    john = await client.get(URL, params={"platform_key": P}, headers=acme["john"])
    assert john.content in response.content
    assert body["results"][1] == john.json()


async def test_who_may_list_follows_the_contract_order(
    client: httpx.AsyncClient, acme: dict[str, dict[str, str]]
) -> None:
    """401, 405, 400 platform_key, 404 platform, then 403 for members and other platforms'
    admins alike; `username` changes nothing."""
    assert (await client.get(USERS, params={"platform_key": P})).status_code == 401
    refused = await client.put(USERS, params={"platform_key": P}, headers=acme["admin"])
    assert (refused.status_code, refused.headers["allow"]) == (405, "GET, POST, HEAD, OPTIONS")
    missing = await client.get(USERS, headers=acme["admin"])
    assert missing.json() == {"error": "platform_key query parameter is required"}
    unknown = await client.get(USERS, params={"platform_key": "nope"}, headers=acme["admin"])
    assert (unknown.status_code, unknown.json()) == (404, {"error": "Platform not found"})
    admin_only = {"error": "Only tenant admins can access other users' metadata"}
    for who in ("john", "other_admin", "eve"):
        for method in ("GET", "POST"):
            answer = await client.request(
                method, USERS, params={"platform_key": P}, headers=acme[who]
            )
            assert (answer.status_code, answer.json()) == (403, admin_only), who
    named = await client.get(
        USERS, params={"platform_key": P, "username": "john_doe"}, headers=acme["john"]
    )
    assert named.status_code == 403
    options = await client.options(USERS, params={"platform_key": P}, headers=acme["john"])
    assert options.status_code == 200 and options.json()["parses"] == ["application/x-ndjson"]


async def test_former_members_and_other_platforms_users_are_never_listed(
    client: httpx.AsyncClient, store: Store, auth: FakeAuth, acme: dict[str, dict[str, str]]
) -> None:
    """A record stays stored when its user leaves the platform, but is no longer listed; the
    same username on another platform is another record."""
    await put(client, acme["john"], {"a": 1})
    await put(client, acme["jane"], {"b": 2})
    await store.update("other", "john_doe", changes.replace({"elsewhere": True}))
    other = {"platform_key": "other"}
    await client.put(URL, params=other, json={"metadata": {"e": 1}}, headers=acme["eve"])
    del auth.members[(P, "jane")]
    listed, _ = await walk(client, acme["admin"])
    assert [(r["username"], r["metadata"]) for r in listed] == [("john_doe", {"a": 1})]
    assert (await store.get(P, "jane")).metadata == {"b": 2}
    response = await client.get(USERS, params=other, headers=acme["other_admin"])
    assert [r["username"] for r in response.json()["results"]] == ["eve"]


async def test_pages_follow_next_to_the_end_keeping_every_parameter(
    client: httpx.AsyncClient, store: Store, auth: FakeAuth, acme: dict[str, dict[str, str]]
) -> None:
    names = [f"user{i:02d}" for i in range(25)]
    for name in names:
        auth.add(P, name)
        await store.update(P, name, changes.replace({"i": int(name[4:]), "plan": "pro"}))
    first = await client.get(
        USERS, params={"platform_key": P, "limit": "10", "filter": '{"plan":"pro"}'},
        headers=acme["admin"],
    )
    query = parse_qs(urlsplit(first.json()["next"]).query)
    assert query["limit"] == ["10"] and query["filter"] == ['{"plan":"pro"}']
    assert read_listing_cursor(query["cursor"][0]) == "user09"
    listed, pages = await walk(client, acme["admin"], limit=10, filter='{"plan":"pro"}')
    assert [r["username"] for r in listed] == names
    assert pages == 3
    exact, pages = await walk(client, acme["admin"], limit=25)
    assert (len(exact), pages) == (25, 1)


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        ("0", "Ensure this value is greater than or equal to 1."),
        ("1001", "Ensure this value is less than or equal to 1000."),
        ("ten", "A valid integer is required."),
        ("", "A valid integer is required."),
    ],
)
async def test_a_limit_outside_1_to_1000_is_refused_not_clamped(
    client: httpx.AsyncClient, acme: dict[str, dict[str, str]], limit: str, message: str
) -> None:
    response = await client.get(
        USERS, params={"platform_key": P, "limit": limit}, headers=acme["admin"]
    )
    assert (response.status_code, response.json()) == (400, {"limit": [message]})


async def test_limits_at_the_edges_and_a_bad_cursor(
    client: httpx.AsyncClient, acme: dict[str, dict[str, str]]
) -> None:
    for limit in ("1", "1000"):
        ok = await client.get(
            USERS, params={"platform_key": P, "limit": limit}, headers=acme["admin"]
        )
        assert ok.status_code == 200
    for cursor in ("garbage!", page_cursor("u", "x")[:-1] + "*", "dT0BcG9saWN5"):
        bad = await client.get(
            USERS, params={"platform_key": P, "cursor": cursor}, headers=acme["admin"]
        )
        assert (bad.status_code, bad.json()) == (404, {"detail": "Invalid cursor"}), cursor


async def test_filters_give_the_same_answer_on_every_store(
    client: httpx.AsyncClient, store: Store, auth: FakeAuth, acme: dict[str, dict[str, str]]
) -> None:
    """The contract kit's cases (numbers by value, booleans never numbers, objects and arrays
    as JSON, awkward keys) through HTTP: the filter travels as JSON in the query."""
    for username, document in FILTER_DOCUMENTS.items():
        auth.add(P, username)
        await store.update(P, username, changes.replace(document))
    for filter, expected in FILTER_CASES:
        response = await client.get(
            USERS, params={"platform_key": P, "filter": json.dumps(filter)}, headers=acme["admin"]
        )
        assert response.status_code == 200, response.text
        assert [r["username"] for r in response.json()["results"]] == expected, filter


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("plan=pro", "Not valid JSON: Expecting value: line 1 column 1 (char 0)"),
        ('{"a": NaN}', "Not valid JSON: Out of range float values are not JSON compliant: 'NaN'"),
        ('{"a": 1, "a": 2}', "Not valid JSON: Duplicate key 'a' in object"),
        ('["plan"]', "Must be a JSON object of top-level keys to values."),
        ('"pro"', "Must be a JSON object of top-level keys to values."),
        ("null", "Must be a JSON object of top-level keys to values."),
    ],
)
async def test_a_filter_that_is_not_a_json_object_is_refused(
    client: httpx.AsyncClient, acme: dict[str, dict[str, str]], raw: str, message: str
) -> None:
    response = await client.get(
        USERS, params={"platform_key": P, "filter": raw}, headers=acme["admin"]
    )
    assert (response.status_code, response.json()) == (400, {"filter": [message]})


async def test_pages_stay_full_when_former_members_records_fall_out(
    client: httpx.AsyncClient, store: Store, auth: FakeAuth, acme: dict[str, dict[str, str]]
) -> None:
    """Membership is asked once per store read (the batch question); reading goes on until
    the page is full, and, past the bound, a short page names where to go on: the walk still
    lists every member once."""
    members = [f"m{i:03d}" for i in range(0, 120, 3)]
    for i in range(120):
        name = f"m{i:03d}"
        if name in members:
            auth.add(P, name)
        await store.update(P, name, changes.replace({"i": i}))
    auth.member_questions = 0
    page = await client.get(USERS, params={"platform_key": P, "limit": "5"}, headers=acme["admin"])
    assert [r["username"] for r in page.json()["results"]] == members[:5]
    assert auth.member_questions == 3  # 6 read each time, 2 members in each
    listed, _ = await walk(client, acme["admin"], limit=4)
    assert [r["username"] for r in listed] == members
    # Far apart: one member, then more non-members than MAX_READS reads of 2 can pass.
    for name in members[1:]:
        del auth.members[(P, name)]
    auth.member_questions = 0
    listed, pages = await walk(client, acme["admin"], limit=1)
    assert [r["username"] for r in listed] == ["m000"]
    assert pages > 1 and auth.member_questions <= pages * MAX_READS


async def test_a_backend_without_the_batch_question_is_asked_user_by_user(
    store: Store,
) -> None:
    """An `AuthBackend` with only `authenticate` and `access` lists the same records."""
    inner = FakeAuth()
    admin = inner.add(P, "boss", admin=True)
    for name in ("amy", "bob", "cid"):
        inner.add(P, name)
        await store.update(P, name, changes.replace({"n": name}))
    await store.update(P, "zed", changes.replace({"n": "zed"}))  # not a member

    class AccessOnly:
        async def authenticate(self, conn: HTTPConnection) -> Identity | None:
            return await inner.authenticate(conn)

        async def access(
            self, identity: Identity, platform_key: str, target: str | None
        ) -> PlatformAccess:
            return await inner.access(identity, platform_key, target)

    app = Starlette(
        routes=[Mount(URL.rstrip("/"), app=PlatformMetadataApp(auth=AccessOnly(), store=store))]
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        listed, _ = await walk(client, admin, limit=2)
    assert [r["username"] for r in listed] == ["amy", "bob", "cid"]
    assert inner.member_questions == 0


async def test_paging_under_concurrent_writes_lists_every_lasting_record_exactly_once(
    client: httpx.AsyncClient, store: Store, auth: FakeAuth, acme: dict[str, dict[str, str]]
) -> None:
    """Records created, changed and deleted while an admin pages through: every record that
    existed for the whole walk is listed exactly once, and no username twice."""
    rng = random.Random(13)
    names = [f"u{i:03d}" for i in range(0, 300, 2)]
    for name in names:
        auth.add(P, name)
        await store.update(P, name, changes.replace({"v": 0}))
    doomed = set(rng.sample(names, 30))
    lasting = [name for name in names if name not in doomed]
    stop = asyncio.Event()

    async def churn() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            new = f"u{rng.randrange(1, 300, 2):03d}"
            auth.add(P, new)
            await store.update(P, new, changes.replace({"v": n}))
            await store.update(P, rng.choice(lasting), changes.patch({"v": n}))
            if doomed:
                await store.update(P, doomed.pop(), changes.delete())
            await asyncio.sleep(0)

    writer = asyncio.create_task(churn())
    try:
        listed, pages = await walk(client, acme["admin"], limit=7)
    finally:
        stop.set()
        await writer
    seen = [r["username"] for r in listed]
    assert len(seen) == len(set(seen))
    assert seen == sorted(seen)
    assert set(lasting) <= set(seen)
    assert pages > 20


async def test_a_store_without_records_answers_404() -> None:
    class Bare:
        def __init__(self) -> None:
            self.inner = MemoryStore()

        async def get(self, platform_key: str, username: str) -> Any:
            return await self.inner.get(platform_key, username)

        async def update(self, platform_key: str, username: str, change: Any) -> Any:
            return await self.inner.update(platform_key, username, change)

    auth = FakeAuth()
    admin = auth.add(P, "boss", admin=True)
    app = PlatformMetadataApp(auth=auth, store=Bare())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/users/", params={"platform_key": P}, headers=admin)
        imported = await client.post(
            "/users/", params={"platform_key": P}, headers={**admin, "Content-Type": "application/x-ndjson"},
            content=b'{"username": "boss", "metadata": {}}\n',
        )
    listing = {"detail": "Listing users' metadata is not available on this server."}
    assert (response.status_code, response.json()) == (404, listing)
    assert (imported.status_code, imported.json()) == (404, listing)


async def test_head_answers_the_headers_of_a_page_and_of_an_export(
    client: httpx.AsyncClient, acme: dict[str, dict[str, str]]
) -> None:
    await put(client, acme["john"], {"a": 1})
    for accept, media in (("application/json", "application/json"),
                          ("application/x-ndjson", "application/x-ndjson")):  # fmt: skip
        response = await client.head(
            USERS, params={"platform_key": P}, headers={**acme["admin"], "Accept": accept}
        )
        assert (response.status_code, response.content) == (200, b"")
        assert response.headers["content-type"] == media
