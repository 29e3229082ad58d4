"""The policy in force on `/api/core/users/platform-metadata/`: the member view and the schema.

Every rule of EXTENSIONS.md section 1's "Effects" list, over every store; each refusal is
checked to change nothing.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
import pytest

from starlette_platform_metadata import Record, Store

from .conftest import URL

pytestmark = pytest.mark.anyio

POLICY = URL + "policy/?platform_key=acme-corp"
META = URL + "?platform_key=acme-corp"
JOHN = META + "&username=john_doe"
KEYS_FORBIDDEN = "Only tenant admins can change these keys"

Headers = dict[str, dict[str, str]]


async def setup(
    client: httpx.AsyncClient, acme: Headers, document: dict[str, Any], **policy: Any
) -> None:
    """Store john_doe's `document` as the admin, then PUT `policy`."""
    response = await client.put(JOHN, json={"metadata": document}, headers=acme["admin"])
    assert response.status_code == 200, response.text
    response = await client.put(POLICY, json=policy, headers=acme["admin"])
    assert response.status_code == 200, response.text


async def snapshot(store: Store) -> Record:
    return await store.get("acme-corp", "john_doe")


async def refused(
    client: httpx.AsyncClient,
    store: Store,
    method: str,
    body: Any,
    headers: dict[str, str],
    status: int,
    expected: Any,
) -> None:
    """`method` with `body` is answered `status` `expected` and stores nothing."""
    before = await snapshot(store)
    response = await client.request(method, META, json=body, headers=headers)
    assert (response.status_code, response.json()) == (status, expected)
    assert await snapshot(store) == before


def forbidden(*keys: str) -> dict[str, Any]:
    return {"error": KEYS_FORBIDDEN, "keys": list(keys)}


# --- GET --------------------------------------------------------------------------------


async def test_members_do_not_read_private_keys(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    await setup(client, acme, {"theme": "dark", "notes": "vip", "secret_a": 1},
                private_keys=["notes", "secret_*"])  # fmt: skip
    mine = await client.get(META, headers=acme["john"])
    assert mine.json()["metadata"] == {"theme": "dark"}
    admin = await client.get(JOHN, headers=acme["admin"])
    assert admin.json()["metadata"] == {"theme": "dark", "notes": "vip", "secret_a": 1}
    assert mine.headers["etag"] == admin.headers["etag"]


async def test_an_admin_reads_own_private_keys(client: httpx.AsyncClient, acme: Headers) -> None:
    await client.put(META, json={"metadata": {"notes": 1}}, headers=acme["admin"])
    await client.put(POLICY, json={"private_keys": ["notes"]}, headers=acme["admin"])
    assert (await client.get(META, headers=acme["admin"])).json()["metadata"] == {"notes": 1}


# --- PATCH ------------------------------------------------------------------------------


async def test_member_patch_rules(
    client: httpx.AsyncClient, acme: Headers, store: Store
) -> None:
    await setup(client, acme, {"plan": "pro", "score": 7.0, "notes": "x", "theme": "dark"},
                protected_keys=["plan", "score", "tier", "billing_*"],
                private_keys=["notes", "hidden"])  # fmt: skip
    john = acme["john"]
    for body, keys in [
        ({"metadata": {"notes": "y"}}, ["notes"]),
        ({"delete_keys": ["hidden"]}, ["hidden"]),  # private, even when not stored
        ({"metadata": {"plan": "free"}}, ["plan"]),
        ({"metadata": {"tier": "gold"}}, ["tier"]),  # protected, not stored: setting it
        ({"metadata": {"billing_id": 1}}, ["billing_id"]),
        ({"delete_keys": ["plan"]}, ["plan"]),
        ({"metadata": {"plan": "pro"}, "delete_keys": ["plan"]}, ["plan"]),
        ({"metadata": {"plan": "free", "notes": 1, "theme": "x"}, "delete_keys": ["score"]},
         ["notes", "plan", "score"]),
    ]:  # fmt: skip
        await refused(client, store, "PATCH", body, john, 403, forbidden(*keys))
    ok = await client.patch(
        META,
        json={"metadata": {"plan": "pro", "score": 7, "theme": "light"}, "delete_keys": ["tier"]},
        headers=john,
    )
    assert ok.status_code == 200
    assert ok.json()["metadata"] == {"plan": "pro", "score": 7.0, "theme": "light"}
    stored = await snapshot(store)
    # The protected value keeps its stored form: 7.0 is not rewritten as 7.
    assert '"score":7.0' in stored.metadata_json
    assert stored.metadata["notes"] == "x"


async def test_admins_are_not_restricted_by_keys(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    await setup(client, acme, {"plan": "pro", "notes": "x"},
                protected_keys=["plan"], private_keys=["notes"])  # fmt: skip
    admin = acme["admin"]
    response = await client.patch(
        JOHN, json={"metadata": {"plan": "free"}, "delete_keys": ["notes"]}, headers=admin
    )
    assert response.json()["metadata"] == {"plan": "free"}
    await client.patch(META, json={"metadata": {"plan": "own", "notes": 1}}, headers=admin)
    response = await client.put(META, json={"metadata": {"notes": 2}}, headers=admin)
    assert response.json()["metadata"] == {"notes": 2}


# --- PUT --------------------------------------------------------------------------------


async def test_member_put_replaces_only_the_keys_a_member_may_change(
    client: httpx.AsyncClient, acme: Headers, store: Store
) -> None:
    await setup(client, acme, {"plan": "pro", "notes": "x", "theme": "dark", "lang": "en"},
                protected_keys=["plan"], private_keys=["notes"])  # fmt: skip
    john = acme["john"]
    response = await client.put(META, json={"metadata": {"theme": "light"}}, headers=john)
    assert response.status_code == 200
    assert response.json()["metadata"] == {"theme": "light", "plan": "pro"}
    assert (await snapshot(store)).metadata == {"theme": "light", "plan": "pro", "notes": "x"}
    # GET, edit, PUT: the protected key comes back unchanged.
    current = (await client.get(META, headers=john)).json()["metadata"]
    response = await client.put(META, json={"metadata": {**current, "lang": "de"}}, headers=john)
    assert response.status_code == 200
    for body, key in (({"plan": "free"}, "plan"), ({"notes": "x"}, "notes")):
        await refused(client, store, "PUT", {"metadata": body}, john, 403, forbidden(key))


# --- DELETE -----------------------------------------------------------------------------


async def test_member_delete_keeps_protected_and_private_keys(
    client: httpx.AsyncClient, acme: Headers, store: Store
) -> None:
    await setup(client, acme, {"plan": "pro", "notes": "x", "theme": "dark"},
                protected_keys=["plan"], private_keys=["notes"])  # fmt: skip
    before = await snapshot(store)
    response = await client.delete(META, headers=acme["john"])
    assert response.status_code == 204
    after = await snapshot(store)
    assert after.exists and after.metadata == {"plan": "pro", "notes": "x"}
    assert after.version == before.version + 1
    assert (await client.get(META, headers=acme["john"])).json()["metadata"] == {"plan": "pro"}


async def test_member_delete_without_restricted_keys_stored_is_a_tombstone(
    client: httpx.AsyncClient, acme: Headers, store: Store
) -> None:
    await setup(client, acme, {"theme": "dark"}, protected_keys=["plan"])
    assert (await client.delete(META, headers=acme["john"])).status_code == 204
    assert not (await snapshot(store)).exists


# --- the schema -------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {
        "age": {"type": "integer", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["age"],
}


async def test_the_schema_binds_everyone_with_pointers(
    client: httpx.AsyncClient, acme: Headers, store: Store
) -> None:
    await setup(client, acme, {"age": 3}, schema=SCHEMA)
    for headers in (acme["john"], acme["admin"]):
        before = await snapshot(store)
        url = META if headers is acme["john"] else JOHN
        response = await client.patch(
            url, json={"metadata": {"age": -1, "tags": ["a", 2]}}, headers=headers
        )
        assert response.status_code == 400
        messages = response.json()["metadata"]
        assert sorted(m.split(":")[0] for m in messages) == ["/age", "/tags/1"]
        assert await snapshot(store) == before
        response = await client.put(url, json={"metadata": {"tags": []}}, headers=headers)
        assert response.status_code == 400
        assert response.json()["metadata"][0].startswith("/: ")
    ok = await client.patch(META, json={"metadata": {"age": 4}}, headers=acme["john"])
    assert ok.status_code == 200


async def test_check_order_body_then_keys_then_schema(
    client: httpx.AsyncClient, acme: Headers, store: Store
) -> None:
    await setup(client, acme, {"age": 3, "plan": "pro"}, schema=SCHEMA, protected_keys=["plan"])
    john = acme["john"]
    await refused(client, store, "PATCH", {"metadata": {"plan": 1}, "delete_keys": [1]}, john,
                  400, {"delete_keys": {"0": ["Not a valid string."]}})  # fmt: skip
    await refused(client, store, "PATCH", {"metadata": {"plan": 1, "age": "x"}}, john,
                  403, forbidden("plan"))  # fmt: skip


async def test_a_member_delete_leaving_an_invalid_document_is_refused(
    client: httpx.AsyncClient, acme: Headers, store: Store
) -> None:
    schema = {"type": "object", "required": ["theme"]}
    document = {"plan": "pro", "theme": "x"}
    await setup(client, acme, document, schema=schema, protected_keys=["plan"])
    before = await snapshot(store)
    response = await client.delete(META, headers=acme["john"])
    assert response.status_code == 400 and response.json()["metadata"][0].startswith("/: ")
    assert await snapshot(store) == before
    # An admin's delete stores no document at all: nothing for the schema to refuse.
    assert (await client.delete(JOHN, headers=acme["admin"])).status_code == 204


async def test_stored_documents_are_not_rewritten_by_a_new_schema(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    await setup(client, acme, {"theme": "x"}, schema=SCHEMA)
    assert (await client.get(META, headers=acme["john"])).json()["metadata"] == {"theme": "x"}
    response = await client.patch(META, json={"metadata": {"lang": "en"}}, headers=acme["john"])
    assert response.status_code == 400


async def test_if_match_still_applies_with_a_policy(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    await setup(client, acme, {"plan": "pro"}, protected_keys=["plan"])
    response = await client.patch(
        META, json={"metadata": {"a": 1}}, headers={**acme["john"], "If-Match": '"0"'}
    )
    assert response.status_code == 412 and response.headers["etag"] == '"1"'


# --- races ------------------------------------------------------------------------------


async def test_a_member_racing_admins_on_a_protected_key_never_wins(
    client: httpx.AsyncClient, acme: Headers, store: Store
) -> None:
    """Members PATCH the protected key (to a value of theirs, or to the value they last
    read) while admins change it: the stored value is always an admin's."""
    await setup(client, acme, {"plan": "admin-0"}, protected_keys=["plan"])
    admin_values = {"admin-0"}
    rng = random.Random(7)

    async def member(i: int) -> None:
        seen = (await client.get(META, headers=acme["john"])).json()["metadata"]["plan"]
        value = seen if i % 2 else f"member-{i}"
        response = await client.patch(META, json={"metadata": {"plan": value}},
                                      headers=acme["john"])  # fmt: skip
        assert response.status_code in (200, 403)
        if i % 2 == 0:
            assert response.status_code == 403

    async def admin(i: int) -> None:
        admin_values.add(f"admin-{i}")
        response = await client.patch(JOHN, json={"metadata": {"plan": f"admin-{i}"}},
                                       headers=acme["admin"])  # fmt: skip
        assert response.status_code == 200

    tasks = [member(i) for i in range(40)] + [admin(i) for i in range(1, 21)]
    rng.shuffle(tasks)
    await asyncio.gather(*tasks)
    assert (await snapshot(store)).metadata["plan"] in admin_values
