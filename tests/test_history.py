"""History and restore (EXTENSIONS.md section 2), over every store.

Each refusal is checked to leave neither a change nor a revision; tenant isolation is tried
from every side (another member, another platform's admin, an unknown platform).
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from starlette_platform_metadata import DatabaseStore, PlatformMetadataApp, Store, changes
from starlette_platform_metadata.feed import Committed
from starlette_platform_metadata.stores.base import Record, Write
from starlette_platform_metadata.stores.sql.schema import history_schema

from .conftest import URL, FakeAuth

pytestmark = pytest.mark.anyio

META = URL + "?platform_key=acme-corp"
JOHN = META + "&username=john_doe"
HISTORY = URL + "history/?platform_key=acme-corp"
JOHN_HISTORY = HISTORY + "&username=john_doe"
RESTORE = URL + "restore/?platform_key=acme-corp"
JOHN_RESTORE = RESTORE + "&username=john_doe"
POLICY = URL + "policy/?platform_key=acme-corp"

Headers = dict[str, dict[str, str]]


async def history(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> list[Any]:
    response = await client.get(url, headers=headers)
    assert response.status_code == 200, response.text
    results: list[Any] = response.json()["results"]
    return results


def mounted(auth: FakeAuth, store: Store, **options: Any) -> httpx.AsyncClient:
    app = PlatformMetadataApp(auth=auth, store=store, **options)
    host = Starlette(routes=[Mount(URL.rstrip("/"), app=app)])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=host), base_url="http://testserver")


# --- revisions ---------------------------------------------------------------------------


async def test_every_change_keeps_a_revision_newest_first(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    john, admin = acme["john"], acme["admin"]
    assert (await client.patch(META, json={"metadata": {"a": 1, "b": 2}}, headers=john)).status_code == 200
    assert (await client.patch(META, json={"metadata": {"b": 3}, "delete_keys": ["a"]}, headers=john)).status_code == 200
    assert (await client.put(JOHN, json={"metadata": {"c": [1]}}, headers=admin)).status_code == 200
    assert (await client.delete(META, headers=john)).status_code == 204
    # A DELETE of nothing stored changes nothing: no revision.
    assert (await client.delete(META, headers=john)).status_code == 204
    revisions = await history(client, HISTORY, john)
    assert [(r["version"], r["operation"], r["actor"]) for r in revisions] == [
        (4, "delete", "john_doe"),
        (3, "put", "acme_admin"),
        (2, "patch", "john_doe"),
        (1, "patch", "john_doe"),
    ]
    assert [r["metadata"] for r in revisions] == [{}, {"c": [1]}, {"b": 3}, {"a": 1, "b": 2}]
    assert [r["changed_keys"] for r in revisions] == [["c"], ["b", "c"], ["a", "b"], ["a", "b"]]
    for revision in revisions:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", revision["at"])
        assert set(revision) == {"version", "operation", "actor", "at", "metadata", "changed_keys"}


async def test_the_version_of_a_revision_is_the_etag_of_its_change(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    etags = []
    for n in range(3):
        response = await client.put(META, json={"metadata": {"n": n}}, headers=acme["john"])
        etags.append(response.headers["ETag"])
    revisions = await history(client, HISTORY, acme["john"])
    assert [f'"{r["version"]}"' for r in reversed(revisions)] == etags


async def test_an_unchanged_write_is_still_a_change_with_no_changed_keys(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    for _ in range(2):
        await client.put(META, json={"metadata": {"a": 1}}, headers=acme["john"])
    # 1 -> 1.0 is a different document text: a changed key.
    await client.put(META, json={"metadata": {"a": 1.0}}, headers=acme["john"])
    revisions = await history(client, HISTORY, acme["john"])
    assert [(r["version"], r["changed_keys"]) for r in revisions] == [
        (3, ["a"]), (2, []), (1, ["a"])
    ]


async def test_refused_writes_leave_no_revision(
    client: httpx.AsyncClient, acme: Headers, store: Store
) -> None:
    john = acme["john"]
    await client.put(META, json={"metadata": {"a": 1}}, headers=john)
    await client.put(
        POLICY,
        json={"protected_keys": ["plan"], "schema": {"properties": {"a": {"type": "integer"}}}},
        headers=acme["admin"],
    )
    before = await store.get("acme-corp", "john_doe")
    refusals = [
        client.put(META, json={"metadata": {"a": 2}}, headers={**john, "If-Match": '"9"'}),
        client.patch(META, json={"metadata": {"plan": "pro"}}, headers=john),
        client.patch(META, json={"metadata": {"a": "text"}}, headers=john),
        client.put(META, json={"metadata": {"b": "x" * 70_000}}, headers=john),
        client.patch(META, json={"metadata": []}, headers=john),
        client.delete(META, headers={**john, "If-Match": '"7"'}),
        client.delete(META + "&history=purg", headers=john),
    ]
    statuses = [(await request).status_code for request in refusals]
    assert statuses == [412, 403, 400, 413, 400, 412, 400]
    assert await store.get("acme-corp", "john_doe") == before
    assert [r["version"] for r in await history(client, HISTORY, john)] == [1]


async def test_ninety_concurrent_writes_leave_ninety_gapless_revisions(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    async def write(n: int) -> int:
        response = await client.patch(META, json={"metadata": {f"k{n}": n}}, headers=acme["john"])
        assert response.status_code == 200
        return int(response.headers["ETag"].strip('"'))

    versions = await asyncio.gather(*(write(n) for n in range(90)))
    assert sorted(versions) == list(range(1, 91))
    seen: list[Any] = []
    url: str | None = HISTORY + "&limit=100"
    while url:
        page = (await client.get(url, headers=acme["john"])).json()
        seen += page["results"]
        url = page["next"]
    assert [r["version"] for r in seen] == list(range(90, 0, -1))
    # Each revision holds exactly the document its version's ETag named.
    by_version = {r["version"]: r for r in seen}
    for n, version in enumerate(versions):
        assert by_version[version]["changed_keys"] == [f"k{n}"]
        assert len(by_version[version]["metadata"]) == version


# --- reading: pagination, limits, cursors --------------------------------------------------


async def test_pages_follow_next_to_the_end_each_revision_once(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    for n in range(25):
        await client.put(META, json={"metadata": {"n": n}}, headers=acme["john"])
    response = await client.get(HISTORY + "&limit=10", headers=acme["john"])
    page = response.json()
    assert response.headers["Vary"] == "Authorization"
    assert [r["version"] for r in page["results"]] == list(range(25, 15, -1))
    assert page["next"].startswith("http://testserver/api/core/users/platform-metadata/history/?")
    assert "platform_key=acme-corp" in page["next"] and "limit=10" in page["next"]
    seen = [r["version"] for r in page["results"]]
    url = page["next"]
    while url:
        page = (await client.get(url, headers=acme["john"])).json()
        seen += [r["version"] for r in page["results"]]
        url = page["next"]
    assert seen == list(range(25, 0, -1))
    default = (await client.get(HISTORY, headers=acme["john"])).json()
    assert len(default["results"]) == 20 and default["next"] is not None


async def test_exactly_one_page_has_no_next(client: httpx.AsyncClient, acme: Headers) -> None:
    for n in range(5):
        await client.put(META, json={"metadata": {"n": n}}, headers=acme["john"])
    page = (await client.get(HISTORY + "&limit=5", headers=acme["john"])).json()
    assert len(page["results"]) == 5 and page["next"] is None
    empty = (await client.get(HISTORY, headers=acme["jane"])).json()
    assert empty == {"next": None, "results": []}


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        ("0", "Ensure this value is greater than or equal to 1."),
        ("-3", "Ensure this value is greater than or equal to 1."),
        ("101", "Ensure this value is less than or equal to 100."),
        ("ten", "A valid integer is required."),
        ("", "A valid integer is required."),
        ("1.5", "A valid integer is required."),
        ("99999999999999999999999", "A valid integer is required."),
    ],
)
async def test_a_bad_limit_is_400_not_clamped(
    client: httpx.AsyncClient, acme: Headers, limit: str, message: str
) -> None:
    response = await client.get(HISTORY + f"&limit={limit}", headers=acme["john"])
    assert (response.status_code, response.json()) == (400, {"limit": [message]})


@pytest.mark.parametrize("cursor", ["abc", "", "dj0w", "dj0tMQ", "%ff%fe", "djE5OTk5OTk5OTk5OTk5OTk5OTk5OQ"])
async def test_a_bad_cursor_is_404_invalid_cursor(
    client: httpx.AsyncClient, acme: Headers, cursor: str
) -> None:
    await client.put(META, json={"metadata": {}}, headers=acme["john"])
    response = await client.get(HISTORY + f"&cursor={cursor}", headers=acme["john"])
    assert (response.status_code, response.json()) == (404, {"detail": "Invalid cursor"})


# --- who may read what ----------------------------------------------------------------------


async def test_history_follows_the_access_rules_of_get(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    await client.put(META, json={"metadata": {"secret": "john's"}}, headers=acme["john"])
    cases = [
        (JOHN_HISTORY, acme["jane"], 403, {"error": "Only tenant admins can access other users' metadata"}),
        (JOHN_HISTORY, acme["other_admin"], 403, {"error": "Only tenant admins can access other users' metadata"}),
        (HISTORY, acme["eve"], 403, {"error": "You are not a member of this platform"}),
        (URL + "history/?platform_key=nope", acme["john"], 404, {"error": "Platform not found"}),
        (HISTORY + "&username=ghost", acme["admin"], 404, {"error": "User not found"}),
        (URL + "history/", acme["john"], 400, {"error": "platform_key query parameter is required"}),
        (JOHN_HISTORY, {}, 401, {"detail": "Authentication credentials were not provided."}),
        (JOHN_HISTORY, {"Authorization": "Token nope"}, 401, {"detail": "Invalid token."}),
    ]
    for url, headers, status, body in cases:
        response = await client.get(url, headers=headers)
        assert (response.status_code, response.json()) == (status, body), url
        assert "john's" not in response.text
    # The other platform's history of the same username is its own, and empty.
    await client.put(URL + "?platform_key=other", json={"metadata": {"x": 1}}, headers=acme["eve"])
    assert await history(client, URL + "history/?platform_key=other", acme["eve"]) != []
    revisions = await history(client, JOHN_HISTORY, acme["admin"])
    assert [r["metadata"] for r in revisions] == [{"secret": "john's"}]


async def test_writes_to_history_and_restore_paths_are_405(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    response = await client.post(HISTORY, headers=acme["john"])
    assert (response.status_code, response.json()) == (405, {"detail": 'Method "POST" not allowed.'})
    assert response.headers["Allow"] == "GET, HEAD, OPTIONS"
    response = await client.get(RESTORE, headers=acme["john"])
    assert (response.status_code, response.json()) == (405, {"detail": 'Method "GET" not allowed.'})


async def test_members_do_not_see_private_keys_in_history(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    await client.put(POLICY, json={"private_keys": ["notes"]}, headers=acme["admin"])
    await client.put(JOHN, json={"metadata": {"notes": "vip", "theme": "dark"}}, headers=acme["admin"])
    await client.patch(JOHN, json={"metadata": {"notes": "churn risk"}}, headers=acme["admin"])
    mine = await history(client, HISTORY, acme["john"])
    assert [(r["metadata"], r["changed_keys"]) for r in mine] == [
        ({"theme": "dark"}, []),
        ({"theme": "dark"}, ["theme"]),
    ]
    assert "vip" not in str(mine) and "churn" not in str(mine)
    full = await history(client, JOHN_HISTORY, acme["admin"])
    assert full[0]["metadata"] == {"notes": "churn risk", "theme": "dark"}
    assert full[0]["changed_keys"] == ["notes"]


# --- restore ---------------------------------------------------------------------------------


async def test_restore_writes_an_old_document_as_a_new_change(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    john = acme["john"]
    await client.put(META, json={"metadata": {"theme": "dark", "lang": "en"}}, headers=john)
    await client.put(META, json={"metadata": {"theme": "light"}}, headers=john)
    response = await client.post(RESTORE, json={"version": 1}, headers=john)
    assert response.status_code == 200, response.text
    assert response.headers["ETag"] == '"3"'
    body = response.json()
    assert body["metadata"] == {"theme": "dark", "lang": "en"}
    assert set(body) == {"username", "platform_key", "metadata", "created_at", "updated_at"}
    assert (await client.get(META, headers=john)).json()["metadata"] == body["metadata"]
    newest = (await history(client, HISTORY, john))[0]
    assert (newest["version"], newest["operation"], newest["actor"]) == (3, "restore", "john_doe")
    assert newest["changed_keys"] == ["lang", "theme"]


async def test_an_admin_restores_a_users_deleted_document(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    await client.put(META, json={"metadata": {"a": 1}}, headers=acme["john"])
    await client.delete(META, headers=acme["john"])
    response = await client.post(JOHN_RESTORE, json={"version": 1}, headers=acme["admin"])
    assert response.status_code == 200
    assert response.json()["metadata"] == {"a": 1}
    assert (await history(client, HISTORY, acme["john"]))[0]["actor"] == "acme_admin"


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [
        ({"version": 9}, 404, {"error": "Revision not found"}),
        ({"version": 2**62}, 404, {"error": "Revision not found"}),
        ({"version": 9223372036854775807}, 404, {"error": "Revision not found"}),
        ({}, 400, {"version": ["This field is required."]}),
        ({"version": "one"}, 400, {"version": ["A valid integer is required."]}),
        ({"version": True}, 400, {"version": ["A valid integer is required."]}),
        ({"version": 1.5}, 400, {"version": ["A valid integer is required."]}),
        ({"version": None}, 400, {"version": ["A valid integer is required."]}),
        ({"version": 0}, 400, {"version": ["Ensure this value is greater than or equal to 1."]}),
        ([1], 400, {"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}),
    ],
)
async def test_restore_refusals_change_nothing(
    client: httpx.AsyncClient, acme: Headers, store: Store, body: Any, status: int, expected: Any
) -> None:
    await client.put(META, json={"metadata": {"a": 1}}, headers=acme["john"])
    await client.put(META, json={"metadata": {"a": 2}}, headers=acme["john"])
    before = await store.get("acme-corp", "john_doe")
    response = await client.post(RESTORE, json=body, headers=acme["john"])
    assert (response.status_code, response.json()) == (status, expected)
    assert await store.get("acme-corp", "john_doe") == before
    assert len(await history(client, HISTORY, acme["john"])) == 2


async def test_restore_follows_the_rules_of_a_put_by_the_same_caller(
    client: httpx.AsyncClient, acme: Headers, store: Store
) -> None:
    john, admin = acme["john"], acme["admin"]
    await client.put(JOHN, json={"metadata": {"plan": "free", "notes": "old", "n": 1}}, headers=admin)
    # v2 breaks the schema put in force below (n: 9 > 5); v1 satisfies it.
    await client.put(JOHN, json={"metadata": {"plan": "free", "notes": "old", "n": 9}}, headers=admin)
    await client.put(
        POLICY,
        json={
            "protected_keys": ["plan"],
            "private_keys": ["notes"],
            "schema": {"properties": {"n": {"type": "integer", "maximum": 5}}},
        },
        headers=admin,
    )
    await client.put(JOHN, json={"metadata": {"plan": "pro", "notes": "new", "n": 2}}, headers=admin)
    # A member's restore: protected and private keys keep their current values.
    response = await client.post(RESTORE, json={"version": 1}, headers=john)
    assert response.status_code == 200, response.text
    assert response.json()["metadata"] == {"plan": "pro", "n": 1}
    stored = (await store.get("acme-corp", "john_doe")).metadata
    assert stored == {"plan": "pro", "notes": "new", "n": 1}
    # The schema: restoring v2 (n: 9) is refused, nothing changes.
    before = await store.get("acme-corp", "john_doe")
    response = await client.post(RESTORE, json={"version": 2}, headers=john)
    assert response.status_code == 400 and "metadata" in response.json()
    assert await store.get("acme-corp", "john_doe") == before
    # If-Match: a stale ETag is 412 with the current one.
    response = await client.post(RESTORE, json={"version": 3}, headers={**john, "If-Match": '"2"'})
    assert response.status_code == 412 and response.headers["ETag"] == f'"{before.version}"'
    assert await store.get("acme-corp", "john_doe") == before
    response = await client.post(
        RESTORE, json={"version": 3}, headers={**john, "If-Match": f'"{before.version}"'}
    )
    assert response.status_code == 200
    # An admin's restore brings back every key.
    response = await client.post(JOHN_RESTORE, json={"version": 1}, headers=admin)
    assert response.json()["metadata"] == {"plan": "free", "notes": "old", "n": 1}


async def test_restore_is_refused_across_users_and_platforms(
    client: httpx.AsyncClient, acme: Headers, store: Store
) -> None:
    await client.put(META, json={"metadata": {"a": 1}}, headers=acme["john"])
    await client.put(META, json={"metadata": {"a": 2}}, headers=acme["john"])
    before = await store.get("acme-corp", "john_doe")
    for url, headers, status in [
        (JOHN_RESTORE, acme["jane"], 403),
        (JOHN_RESTORE, acme["other_admin"], 403),
        (URL + "restore/?platform_key=other&username=john_doe", acme["other_admin"], 404),
        (JOHN_RESTORE, {}, 401),
    ]:
        response = await client.post(url, json={"version": 1}, headers=headers)
        assert response.status_code == status, url
    assert await store.get("acme-corp", "john_doe") == before
    # jane's own restore of version 1 names her (empty) history, never john's.
    response = await client.post(RESTORE, json={"version": 1}, headers=acme["jane"])
    assert (response.status_code, response.json()) == (404, {"error": "Revision not found"})
    assert (await store.get("acme-corp", "jane")).version == 0


# --- retention and erasure ---------------------------------------------------------------------


async def test_retention_keeps_the_newest_revisions(
    auth: FakeAuth, store: Store, acme: Headers
) -> None:
    async with mounted(auth, store, history_per_user=3) as client:
        for n in range(1, 8):
            await client.put(META, json={"metadata": {"n": n}}, headers=acme["john"])
        assert [r["version"] for r in await history(client, HISTORY, acme["john"])] == [7, 6, 5]
        response = await client.post(RESTORE, json={"version": 4}, headers=acme["john"])
        assert (response.status_code, response.json()) == (404, {"error": "Revision not found"})
    assert [r.version for r in await store.revisions("acme-corp", "john_doe", limit=100)] == [7, 6, 5]  # type: ignore[attr-defined]


async def test_history_per_user_zero_turns_history_off(
    auth: FakeAuth, store: Store, acme: Headers
) -> None:
    async with mounted(auth, store, history_per_user=0) as client:
        for n in range(3):
            response = await client.put(META, json={"metadata": {"n": n}}, headers=acme["john"])
            assert response.status_code == 200
        assert response.headers["ETag"] == '"3"'
        assert await history(client, HISTORY, acme["john"]) == []


async def test_purge_erases_every_earlier_revision_and_keeps_the_version(
    client: httpx.AsyncClient, acme: Headers, store: Store
) -> None:
    john = acme["john"]
    # Values no timestamp or version can contain by chance (the check below reads the text).
    await client.put(META, json={"metadata": {"ssn": "ssn-first-xq"}}, headers=john)
    await client.patch(META, json={"metadata": {"ssn": "ssn-second-zw"}}, headers=john)
    response = await client.delete(META + "&history=purge", headers=john)
    assert response.status_code == 204
    revisions = await history(client, HISTORY, john)
    # What is left is the erasure itself: who, when, which keys; no value.
    assert [(r["version"], r["operation"], r["metadata"]) for r in revisions] == [(3, "delete", {})]
    assert "ssn-first" not in str(revisions) and "ssn-second" not in str(revisions)
    assert (await store.get("acme-corp", "john_doe")).version == 3
    response = await client.put(META, json={"metadata": {"b": 1}}, headers=john)
    assert response.headers["ETag"] == '"4"'
    await client.delete(META + "&history=purge", headers=john)
    assert [r["version"] for r in await history(client, HISTORY, john)] == [5]
    # A purge with nothing stored changes nothing, and still erases what history is left.
    response = await client.delete(META + "&history=purge", headers=john)
    assert response.status_code == 204
    assert await history(client, HISTORY, john) == []
    assert (await store.get("acme-corp", "john_doe")).version == 5


async def test_a_delete_without_purge_keeps_history(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    await client.put(META, json={"metadata": {"a": 1}}, headers=acme["john"])
    await client.delete(META, headers=acme["john"])
    assert [r["version"] for r in await history(client, HISTORY, acme["john"])] == [2, 1]


async def test_an_admin_purges_only_the_named_user(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    await client.put(META, json={"metadata": {"a": 1}}, headers=acme["john"])
    await client.put(META, json={"metadata": {"b": 1}}, headers=acme["jane"])
    response = await client.delete(JOHN + "&history=purge", headers=acme["admin"])
    assert response.status_code == 204
    assert [r["version"] for r in await history(client, HISTORY, acme["jane"])] == [1]
    response = await client.delete(JOHN + "&history=purge", headers=acme["jane"])
    assert response.status_code == 403


# --- the hook and Python access ----------------------------------------------------------------


async def test_on_change_hears_every_committed_change_and_nothing_else(
    auth: FakeAuth, store: Store, acme: Headers
) -> None:
    heard: list[Committed] = []

    async def on_change(change: Committed) -> None:
        await asyncio.sleep(0)
        heard.append(change)

    async with mounted(auth, store, on_change=on_change) as client:
        await client.put(META, json={"metadata": {"a": 1}}, headers=acme["john"])
        await client.patch(JOHN, json={"metadata": {"b": 2}}, headers=acme["admin"])
        await client.patch(META, json={"metadata": {"c": 3}}, headers={**acme["john"], "If-Match": '"1"'})
        await client.delete(META, headers=acme["john"])
        await client.delete(META, headers=acme["john"])  # nothing stored: no change
        await client.post(RESTORE, json={"version": 2}, headers=acme["john"])
        await client.put(POLICY, json={"private_keys": ["x"]}, headers=acme["admin"])
    assert [(c.username, c.version, c.operation, c.actor, c.metadata) for c in heard] == [
        ("john_doe", 1, "put", "john_doe", {"a": 1}),
        ("john_doe", 2, "patch", "acme_admin", {"a": 1, "b": 2}),
        ("john_doe", 3, "delete", "john_doe", {}),
        ("john_doe", 4, "restore", "john_doe", {"a": 1, "b": 2}),
    ]
    assert all(c.platform_key == "acme-corp" and c.at.tzinfo is not None for c in heard)


async def test_a_failing_hook_is_logged_and_never_fails_the_request(
    auth: FakeAuth, store: Store, acme: Headers, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(change: Committed) -> None:
        raise RuntimeError("webhook down")

    async with mounted(auth, store, on_change=broken) as client:
        with caplog.at_level(logging.ERROR, "starlette_platform_metadata"):
            response = await client.put(META, json={"metadata": {"a": 1}}, headers=acme["john"])
    assert response.status_code == 200
    assert (await store.get("acme-corp", "john_doe")).version == 1
    assert any("webhook down" in (r.exc_text or "") for r in caplog.records)
    assert any("on_change callback" in r.getMessage() for r in caplog.records)


async def test_hosts_read_history_and_restore_from_python(
    auth: FakeAuth, store: Store, acme: Headers
) -> None:
    app = PlatformMetadataApp(auth=auth, store=store)
    heard: list[int] = []
    app.feed.subscribe(lambda change: heard.append(change.version))
    host = Starlette(routes=[Mount(URL.rstrip("/"), app=app)])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=host), base_url="http://testserver"
    ) as client:
        await client.put(META, json={"metadata": {"v": 1}}, headers=acme["john"])
        await client.put(META, json={"metadata": {"v": 2}}, headers=acme["john"])
    revisions = await app.history("acme-corp", "john_doe")
    assert [(r.version, r.metadata) for r in revisions] == [(2, {"v": 2}), (1, {"v": 1})]
    assert [r.version for r in await app.history("acme-corp", "john_doe", before=2)] == [1]
    record = await app.restore("acme-corp", "john_doe", 1, actor="support-bot")
    assert (record.version, record.metadata) == (3, {"v": 1})
    newest = (await app.history("acme-corp", "john_doe", limit=1))[0]
    assert (newest.operation, newest.actor) == ("restore", "support-bot")
    assert heard == [1, 2, 3]
    with pytest.raises(LookupError):
        await app.restore("acme-corp", "john_doe", 99)


# --- upgrading a database of the previous release -----------------------------------------------


def _metadata_table(schema_version: int) -> str:
    """The metadata table as every schema version has it, and the version row."""
    return (
        "CREATE TABLE platform_metadata (platform_key TEXT NOT NULL, username TEXT NOT NULL,"
        " metadata TEXT, version INTEGER NOT NULL, created_at TEXT, updated_at TEXT,"
        " PRIMARY KEY (platform_key, username));"
        "CREATE TABLE platform_metadata_schema (version INTEGER NOT NULL);"
        f"INSERT INTO platform_metadata_schema VALUES ({schema_version});"
    )


async def test_a_schema_1_sqlite_table_is_upgraded_and_keeps_its_records(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(
            _metadata_table(1) + "INSERT INTO platform_metadata VALUES ('p', 'u', '{\"a\":1}', 4,"
            " '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z');"
        )
    db.close()
    store = DatabaseStore(f"sqlite:///{path}")
    try:
        assert (await store.get("p", "u")).metadata == {"a": 1}
        assert await store.revisions("p", "u") == []
    finally:
        await store.disconnect()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM platform_metadata_schema").fetchall() == [(3,)]
    db.close()


# Schema version 2 on SQLite, as development builds before user ids created it.
_SCHEMA_2_HISTORY = (
    "CREATE TABLE platform_metadata_history (platform_key TEXT NOT NULL, username TEXT NOT NULL,"
    " version INTEGER NOT NULL, seq INTEGER NOT NULL, operation TEXT NOT NULL, actor TEXT,"
    " at TEXT NOT NULL, created_at TEXT, metadata TEXT NOT NULL, changed_keys TEXT NOT NULL,"
    " PRIMARY KEY (platform_key, username, version));"
    "CREATE INDEX platform_metadata_history_seq ON platform_metadata_history (platform_key, seq);"
    "CREATE TABLE platform_metadata_clock (platform_key TEXT PRIMARY KEY, seq INTEGER NOT NULL,"
    " horizon INTEGER NOT NULL);"
)


async def test_a_schema_2_sqlite_history_is_converted_to_user_ids_and_keeps_every_revision(
    tmp_path: Path,
) -> None:
    """Revisions, their order, their `seq` and retention's horizon survive; the same username
    on two platforms becomes two users; new writes continue the versions and the clock."""
    path = tmp_path / "v2.db"
    at = "2026-01-01T00:00:00Z"
    with sqlite3.connect(path) as db:
        db.executescript(_metadata_table(2) + _SCHEMA_2_HISTORY)
        for platform, user, version, seq in [("p", "u", 1, 1), ("p", "u", 2, 3), ("q", "u", 1, 1),
                                             ("p", "v", 1, 2)]:
            document = f'{{"n":{version}}}'
            db.execute(
                "INSERT INTO platform_metadata_history VALUES (?, ?, ?, ?, 'patch', ?, ?, ?, ?, "
                "'[\"n\"]')",
                (platform, user, version, seq, user, at, at, document),
            )
            db.execute(
                "INSERT OR REPLACE INTO platform_metadata VALUES (?, ?, ?, ?, ?, ?)",
                (platform, user, document, version, at, at),
            )
        db.execute("INSERT INTO platform_metadata_clock VALUES ('p', 3, 0), ('q', 7, 5)")
    db.close()
    store = DatabaseStore(f"sqlite:///{path}")
    auth = FakeAuth()
    headers = auth.add("p", "u")
    try:
        assert [(r.version, r.seq, r.metadata_json) for r in await store.revisions("p", "u")] == [
            (2, 3, '{"n":2}'),
            (1, 1, '{"n":1}'),
        ]
        assert [r.version for r in await store.revisions("q", "u")] == [1]
        assert await store.position("q") == (7, 5)
        changes = await store.changes("p", after=0)
        assert [(name, r.seq) for name, r in changes] == [("u", 1), ("v", 2), ("u", 3)]
        async with mounted(auth, store) as client:
            body = {"metadata": {"n": 3}}
            response = await client.patch(f"{URL}?platform_key=p", json=body, headers=headers)
        assert response.status_code == 200
        newest = (await store.revisions("p", "u", limit=1))[0]
        assert (newest.version, newest.seq) == (3, 4)
        assert [r.version for r in await store.revisions("q", "u")] == [1]
    finally:
        await store.disconnect()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM platform_metadata_schema").fetchall() == [(3,)]
        columns = {row[1] for row in db.execute("PRAGMA table_info(platform_metadata_history)")}
        assert "username" not in columns and "user_id" in columns
        assert db.execute(
            "SELECT count(*) FROM sqlite_master WHERE name LIKE '%_v2'"
        ).fetchone() == (0,)
    db.close()


async def test_the_newest_page_is_one_primary_key_range_scan(tmp_path: Path) -> None:
    """No sort, no scan of the user's whole history: the plan SQLite chooses for a page."""
    store = DatabaseStore(f"sqlite:///{tmp_path / 'plan.db'}")
    try:
        await store.connect()
        engine = store._engine  # the SQL text the store runs, as data for EXPLAIN
        plan = await store.connection.fetch(
            "EXPLAIN QUERY PLAN " + engine._revisions_sql, "p", "u", 10, 21
        )
    finally:
        await store.disconnect()
    details = " | ".join(str(row[-1]) for row in plan)
    assert "USING INDEX" in details and "version<?" in details, details
    assert "TEMP B-TREE" not in details and "SCAN" not in details, details


# --- SQLite's user ids --------------------------------------------------------------------------


def _put(n: int, keep: int = 10) -> Any:
    return changes.with_history(changes.replace({"n": n}), keep)


async def test_an_id_assigned_in_a_rolled_back_write_is_not_remembered(tmp_path: Path) -> None:
    """The id a refused group assigned goes back to SQLite, which may give it to another user;
    the store must not keep using it for the first one."""
    path = tmp_path / "ids.db"
    store = DatabaseStore(f"sqlite:///{path}")
    try:
        await store.update("p", "first", _put(0))  # id 1

        def refused(current: Record) -> Write | None:
            raise ValueError("refused")

        with pytest.raises(ValueError):
            await store.update_many("p", [("new", _put(1)), ("first", refused)])
        with sqlite3.connect(path) as other:  # another process takes the next id
            other.execute("INSERT INTO platform_metadata_user_ids VALUES (2, 'p', 'x')")
        other.close()
        await store.update("p", "new", _put(2))
        assert [r.metadata for r in await store.revisions("p", "new")] == [{"n": 2}]
        assert await store.revisions("p", "x") == []
    finally:
        await store.disconnect()


async def test_the_same_username_on_two_platforms_has_two_histories_past_the_id_memo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from starlette_platform_metadata.stores.sql import sqlite as engine

    monkeypatch.setattr(engine, "_USER_IDS", 2)  # the memo starts over again and again
    store = DatabaseStore(f"sqlite:///{tmp_path / 'two.db'}")
    try:
        for n in range(3):
            for platform in ("p", "q", "r"):
                await store.update(platform, "u", _put(n if platform == "p" else 10 * n, keep=2))
                await store.update(platform, f"{platform}-only", _put(n, keep=2))
        assert [r.metadata for r in await store.revisions("p", "u")] == [{"n": 2}, {"n": 1}]
        assert [r.metadata for r in await store.revisions("q", "u")] == [{"n": 20}, {"n": 10}]
        assert [r.version for r in await store.revisions("r", "p-only")] == []
        assert [name for name, _ in await store.changes("q", after=0)] == ["u", "q-only"] * 2
    finally:
        await store.disconnect()


async def test_an_id_not_remembered_comes_with_the_record_read_and_history_off_never_reads_it(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'read.db'}"
    first = DatabaseStore(url)
    try:
        for name in ("u0", "u1"):
            await first.update("p", name, _put(0))
    finally:
        await first.disconnect()
    store = DatabaseStore(url)  # a new process: it remembers no id
    try:
        await store.connect()
        assert store.connection._writer is not None
        statements: list[str] = []
        store.connection._writer.set_trace_callback(statements.append)
        await store.update("p", "u0", changes.replace({"off": True}))  # history off
        assert statements and not any("user_ids" in s for s in statements), statements
        await store.update("p", "u0", _put(1))  # the first revision this engine writes
        statements.clear()
        await store.update("p", "u1", _put(1))
        reads = [s for s in statements if s.startswith("SELECT")]
        assert len(reads) == 2, reads  # the record with its id, and the platform's clock
        assert "user_ids" in reads[0] and "FROM platform_metadata WHERE" in reads[0]
        assert [r.metadata for r in await store.revisions("p", "u1")] == [{"n": 1}, {"n": 0}]
    finally:
        await store.disconnect()


async def test_a_store_that_connects_again_to_a_new_file_forgets_the_old_ids(
    tmp_path: Path,
) -> None:
    path = tmp_path / "again.db"
    store = DatabaseStore(f"sqlite:///{path}")
    try:
        await store.update("p", "old", _put(0))  # id 1, remembered
        await store.disconnect()
        for leftover in tmp_path.glob("again.db*"):
            leftover.unlink()
        with sqlite3.connect(path) as other:  # the new file gives id 1 to someone else
            tables = history_schema("platform_metadata", "sqlite")
            other.executescript(_metadata_table(3) + "".join(f"{t};" for t in tables))
            other.execute("INSERT INTO platform_metadata_user_ids VALUES (1, 'p', 'new')")
        other.close()
        await store.update("p", "old", _put(1))
        assert [r.metadata for r in await store.revisions("p", "old")] == [{"n": 1}]
        assert await store.revisions("p", "new") == []
    finally:
        await store.disconnect()
