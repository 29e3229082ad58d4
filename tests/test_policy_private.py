"""What a member can learn about the private keys of its own metadata (issue 22), over every
store: schema errors, the size limit, and every other surface that answers a member.

The method throughout: two members whose stored documents hold the same visible keys but
different private contents (other values, sizes, counts, names) send the same requests; their
answers must be the same, byte for byte (timestamps aside).  Each refusal is also checked to
name no private key.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from starlette_platform_metadata import PlatformMetadataApp, Store
from starlette_platform_metadata.events import EventSettings
from starlette_platform_metadata.jsontext import dump

from .conftest import URL, FakeAuth, close_store, make_store
from .sse import serving

pytestmark = pytest.mark.anyio

POLICY = URL + "policy/?platform_key=acme-corp"
META = URL + "?platform_key=acme-corp"
HISTORY = URL + "history/?platform_key=acme-corp"
RESTORE = URL + "restore/?platform_key=acme-corp"
PRIVATE = ["secret", "internal_*"]
# The one message a member gets for every schema error it may not read (errors.py).
HIDDEN = (
    "/: the document does not satisfy a rule of the schema that may depend on keys only"
    " tenant admins can read"
)
# Words of the private contents below: none may appear in a member's answer.
PRIVATE_WORDS = ("secret", "internal", "s3cr3t", "hush")

Headers = dict[str, dict[str, str]]


def user_url(username: str) -> str:
    return f"{META}&username={username}"


async def two_members(
    client: httpx.AsyncClient,
    acme: Headers,
    first: dict[str, Any],
    second: dict[str, Any],
    visible: dict[str, Any] | None = None,
    **policy: Any,
) -> None:
    """john_doe holds `visible` and `first`, jane `visible` and `second` (both stored by the
    admin, at version 1); then the policy makes `PRIVATE` private, with `policy`'s fields."""
    visible = {"theme": "dark"} if visible is None else visible
    for username, private in (("john_doe", first), ("jane", second)):
        response = await client.put(
            user_url(username), json={"metadata": {**visible, **private}}, headers=acme["admin"]
        )
        assert response.status_code == 200, response.text
    response = await client.put(
        POLICY, json={"private_keys": PRIVATE, **policy}, headers=acme["admin"]
    )
    assert response.status_code == 200, response.text


async def both(
    client: httpx.AsyncClient, acme: Headers, method: str, url: str = META, **kwargs: Any
) -> tuple[httpx.Response, httpx.Response]:
    """The same request by john_doe and by jane, each on its own metadata."""
    john = await client.request(method, url, headers=acme["john"], **kwargs)
    jane = await client.request(method, url, headers=acme["jane"], **kwargs)
    return john, jane


def same_refusal(john: httpx.Response, jane: httpx.Response, status: int = 400) -> Any:
    """Both refused alike, naming nothing private; the body."""
    assert (john.status_code, jane.status_code) == (status, status), (john.text, jane.text)
    assert john.content == jane.content, (john.text, jane.text)
    for word in PRIVATE_WORDS:
        assert word not in john.text
    return john.json()


# --- 1. schema errors ------------------------------------------------------------------------


async def test_additional_properties_false_does_not_name_private_keys(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    schema = {"properties": {"theme": {}, "lang": {}}, "additionalProperties": False}
    await two_members(client, acme, {"secret": 1, "internal_score": 2}, {"secret": 1},
                      schema=schema)  # fmt: skip
    john, jane = await both(client, acme, "PATCH", json={"metadata": {"lang": "en"}})
    assert same_refusal(john, jane) == {"metadata": [HIDDEN]}


async def test_property_names_do_not_name_private_keys(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    schema = {"propertyNames": {"maxLength": 6}}
    await two_members(client, acme, {"internal_score": 1}, {"internal_rank": 1, "internal_x": 2},
                      schema=schema)  # fmt: skip
    john, jane = await both(client, acme, "PATCH", json={"metadata": {"lang": "en"}})
    assert same_refusal(john, jane) == {"metadata": [HIDDEN]}
    # The member's own key too long: that much it may read, once, before the hidden part.
    john, jane = await both(client, acme, "PATCH", json={"metadata": {"language": "en"}})
    assert same_refusal(john, jane) == {
        "metadata": ['/: "language" is longer than 6 characters', HIDDEN]
    }


async def test_a_type_on_a_private_key_does_not_leak_its_name_or_value(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    schema = {"properties": {"secret": {"type": "string", "maxLength": 3}}}
    await two_members(client, acme, {"secret": 1}, {"secret": "longer"}, schema=schema)
    john, jane = await both(client, acme, "PATCH", json={"metadata": {"lang": "en"}})
    assert same_refusal(john, jane) == {"metadata": [HIDDEN]}


async def test_if_then_on_a_private_value_does_not_leak_the_value(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    schema = {
        "if": {"properties": {"secret": {"const": 1}}, "required": ["secret"]},
        "then": {"properties": {"theme": {"const": "gold"}}},
        "else": {"properties": {"theme": {"const": "silver"}}},
    }
    await two_members(client, acme, {"secret": 1}, {"secret": 2}, schema=schema)
    john, jane = await both(client, acme, "PATCH", json={"metadata": {"theme": "bronze"}})
    assert same_refusal(john, jane) == {"metadata": [HIDDEN]}


async def test_property_counts_do_not_leak_how_many_private_keys_there_are(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    schema = {"minProperties": 3, "maxProperties": 4}
    await two_members(client, acme, {}, {"secret": 1, "internal_a": 2, "internal_b": 3},
                      schema=schema)  # fmt: skip
    john, jane = await both(client, acme, "PATCH", json={"metadata": {"lang": "en"}})
    assert same_refusal(john, jane) == {"metadata": [HIDDEN]}


async def test_conditional_and_composite_rules_at_the_root_are_hidden(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    schemas: list[dict[str, Any]] = [
        {"anyOf": [{"required": ["vip"]}, {"properties": {"secret": {"type": "string"}}}]},
        {"oneOf": [{"required": ["secret"]}, {"required": ["theme"]}]},
        {"not": {"required": ["secret"]}},
        {"dependentSchemas": {"secret": {"required": ["vip"]}}},
        {"dependentRequired": {"secret": ["vip"]}},
        {"properties": {"theme": True}, "unevaluatedProperties": False},
        {"required": ["secret", "internal_x"]},
        {"enum": [{"theme": "dark"}]},
    ]
    await two_members(client, acme, {"secret": 1}, {"secret": [1, 2], "internal_y": 0})
    for schema in schemas:
        response = await client.put(
            POLICY, json={"private_keys": PRIVATE, "schema": schema}, headers=acme["admin"]
        )
        assert response.status_code == 200
        john, jane = await both(client, acme, "PATCH", json={"metadata": {"theme": "dark"}})
        assert same_refusal(john, jane) == {"metadata": [HIDDEN]}, schema


async def test_a_members_own_errors_stay_precise(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    schema = {
        "$defs": {"age": {"properties": {"age": {"type": "integer", "minimum": 0}}}},
        "allOf": [{"$ref": "#/$defs/age"}],
        "properties": {"theme": {"type": "string"}, "secret": {"type": "string"},
                       "tags": {"items": {"anyOf": [{"type": "string"}, {"type": "null"}]}}},
        "patternProperties": {"^n_": {"type": "number"}},
        "required": ["theme", "lang"],
    }  # fmt: skip
    # john's private value breaks the schema too, jane's does not.
    await two_members(client, acme, {"secret": 1}, {"secret": "ok"}, schema=schema)
    body = {"metadata": {"theme": 5, "age": -1, "tags": ["a", 2], "n_x": "y"}}
    john, jane = await both(client, acme, "PATCH", json=body)
    precise = [
        '/: "lang" is a required property',
        "/age: value is less than the minimum of 0",
        "/n_x: value is not of type \"number\"",
        '/tags/1: value is not valid under any of the schemas listed in the \'anyOf\' keyword',
        '/theme: value is not of type "string"',
    ]
    assert (john.status_code, jane.status_code) == (400, 400)
    assert sorted(jane.json()["metadata"]) == precise
    assert john.json()["metadata"][-1] == HIDDEN
    assert sorted(john.json()["metadata"][:-1]) == precise
    assert "secret" not in john.text


async def test_an_admin_still_gets_every_precise_error(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    schema = {"properties": {"theme": {}, "secret": {"type": "string"}},
              "additionalProperties": False, "maxProperties": 2}  # fmt: skip
    await two_members(client, acme, {"secret": 1, "internal_score": 2}, {}, schema=schema)
    response = await client.patch(
        user_url("john_doe"), json={"metadata": {"lang": "en"}}, headers=acme["admin"]
    )
    assert response.status_code == 400
    assert sorted(response.json()["metadata"]) == [
        "/: Additional properties are not allowed ('internal_score', 'lang' were unexpected)",
        "/: value has more than 2 properties",
        '/secret: value is not of type "string"',
    ]


async def test_a_members_restore_and_delete_get_the_member_errors(
    client: httpx.AsyncClient, acme: Headers, store: Store
) -> None:
    schema = {"properties": {"secret": {"type": "string"}}, "required": ["theme"]}
    await two_members(client, acme, {"secret": 1}, {"secret": [2]})
    # A second version of each, then the schema that their private values break.
    john, jane = await both(client, acme, "PATCH", json={"metadata": {"theme": "light"}})
    assert (john.status_code, jane.status_code) == (200, 200)
    response = await client.put(
        POLICY, json={"private_keys": PRIVATE, "schema": schema}, headers=acme["admin"]
    )
    assert response.status_code == 200
    before = await store.get("acme-corp", "john_doe")
    john, jane = await both(client, acme, "POST", RESTORE, json={"version": 1})
    assert same_refusal(john, jane) == {"metadata": [HIDDEN]}
    # A member's delete keeps the private keys: what is left has no theme, and a bad secret.
    john, jane = await both(client, acme, "DELETE")
    assert same_refusal(john, jane) == {
        "metadata": ['/: "theme" is a required property', HIDDEN]
    }
    assert await store.get("acme-corp", "john_doe") == before


async def test_how_many_errors_a_member_reads_does_not_depend_on_the_private_size(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    """Past `PolicyLimits.max_error_work` fewer messages are built; for a member that bound
    is measured on what it sees, or the number of messages would tell the private size."""
    schema = {"properties": {f"k{i}": {"type": "string"} for i in range(40)}}
    await two_members(client, acme, {"secret": [1]}, {"secret": list(range(5000))},
                      schema=schema)  # fmt: skip
    john, jane = await both(client, acme, "PATCH", json={"metadata": {"k1": 1, "k2": 2}})
    assert same_refusal(john, jane) == {
        "metadata": ['/k1: value is not of type "string"', '/k2: value is not of type "string"']
    }


# --- 2. the size limit ----------------------------------------------------------------------

MAX = 64 * 1024  # Limits().max_document_bytes, and max_private_bytes


def too_large(name: str, limit: int = MAX) -> dict[str, Any]:
    what = "Stored" if name == "max_document_bytes" else "Private"
    detail = f"{what} metadata would be larger than the limit of {limit} bytes."
    return {"detail": detail, "limit": name, "value": limit}


async def test_a_members_largest_write_does_not_depend_on_the_private_size(
    client: httpx.AsyncClient, acme: Headers, store: Store
) -> None:
    """Binary-searching the 413 told a member the size of its private keys: now the limit
    measures what the member sees, the same for every private content."""
    await two_members(client, acme, {"secret": "s3cr3t"}, {"secret": "hush" * 8000})
    # What the member sees: {"theme":"dark","pad":"xx..."}.
    largest = MAX - len('{"theme":"dark","pad":""}')
    for method, shape in (("PATCH", {"pad": "x" * largest}),
                          ("PUT", {"theme": "dark", "pad": "y" * largest})):  # fmt: skip
        john, jane = await both(client, acme, method, json={"metadata": shape})
        assert (john.status_code, jane.status_code) == (200, 200), (method, john.text, jane.text)
        over = {**shape, "pad": shape["pad"] + "z"}
        john, jane = await both(client, acme, method, json={"metadata": over})
        assert same_refusal(john, jane, 413) == too_large("max_document_bytes")
    # The private values stayed as they were.
    stored = await store.get("acme-corp", "jane")
    assert stored.metadata["secret"] == "hush" * 8000


async def test_an_admin_cannot_exceed_either_budget(
    client: httpx.AsyncClient, acme: Headers, store: Store
) -> None:
    await two_members(client, acme, {}, {})
    admin, john = acme["admin"], user_url("john_doe")
    # Each part may hold nearly a whole budget: together more than one.
    secret = "s" * (MAX - len('{"secret":""}'))
    pad = "p" * (MAX - len('{"theme":"dark","pad":""}'))
    response = await client.patch(john, json={"metadata": {"secret": secret, "pad": pad}},
                                  headers=admin)  # fmt: skip
    assert response.status_code == 200, response.text
    before = await store.get("acme-corp", "john_doe")
    for body, name in (({"secret": secret + "s"}, "max_private_bytes"),
                       ({"pad": pad + "p"}, "max_document_bytes"),
                       ({"internal_x": 1}, "max_private_bytes")):  # fmt: skip
        response = await client.patch(john, json={"metadata": body}, headers=admin)
        assert (response.status_code, response.json()) == (413, too_large(name)), body
        response = await client.put(
            john, json={"metadata": {**before.metadata, **body}}, headers=admin
        )
        assert (response.status_code, response.json()) == (413, too_large(name)), body
    assert await store.get("acme-corp", "john_doe") == before


async def test_without_private_keys_the_whole_document_is_measured(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    """A platform whose policy has no private key (protected keys only, or no policy at all)
    keeps the one whole-document check: `secret` is an ordinary key there."""
    for policy in ({"protected_keys": ["plan"]}, None):
        if policy is not None:
            await client.put(POLICY, json=policy, headers=acme["admin"])
        else:
            await client.delete(POLICY, headers=acme["admin"])
        half = "h" * (MAX // 2)
        body = {"metadata": {"secret": half, "theme": half}}
        for headers, url in ((acme["john"], META), (acme["admin"], user_url("john_doe"))):
            response = await client.put(url, json=body, headers=headers)
            assert (response.status_code, response.json()) == (
                413, too_large("max_document_bytes")
            )


async def test_the_admin_import_measures_the_same_budgets(
    client: httpx.AsyncClient, acme: Headers, store: Store
) -> None:
    """An import is an admin's PUT per line: what a PUT may store, an import may (so an
    export imports back), and the private part has its own budget there too."""
    await two_members(client, acme, {}, {})
    secret = "s" * (MAX - len('{"secret":""}'))
    pad = "p" * (MAX - len('{"pad":""}'))
    url = URL + "users/?platform_key=acme-corp"
    headers = {**acme["admin"], "Content-Type": "application/x-ndjson"}

    def line(username: str, metadata: dict[str, Any]) -> str:
        return httpx.Response(200, json={"username": username, "metadata": metadata}).text

    body = line("john_doe", {"secret": secret, "pad": pad})
    body += "\n" + line("jane", {"secret": secret + "s"})
    response = await client.post(url, content=body, headers=headers)
    message = "metadata: " + too_large("max_private_bytes")["detail"]
    assert (response.status_code, response.json()) == (400, {"lines": {"2": [message]}})
    response = await client.post(url, content=body.split("\n")[0], headers=headers)
    assert (response.status_code, response.json()) == (200, {"imported": 1})
    assert (await store.get("acme-corp", "john_doe")).metadata == {"secret": secret, "pad": pad}


# --- 3. every surface, one rule ---------------------------------------------------------------

FAST = EventSettings(heartbeat=0.3, recheck=0.2, poll_interval=0.05)

_TIMESTAMP = re.compile(r'"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z"')


def _untimed(text: str) -> str:
    return _TIMESTAMP.sub('"<time>"', text)


async def _member_walk(
    client: httpx.AsyncClient, acme: Headers, first: dict[str, Any], then: dict[str, Any]
) -> list[tuple[str, int, dict[str, str], str]]:
    """Store john_doe's document with private part `first`, change the private part to
    `then` (both as the admin), then walk every surface as john_doe; the transcript, with
    timestamps blanked."""
    admin, john = acme["admin"], acme["john"]
    stored = {"theme": "dark", "plan": "pro", **first}
    response = await client.put(user_url("john_doe"), json={"metadata": stored}, headers=admin)
    assert response.status_code == 200
    plain = {"protected_keys": ["plan"], "private_keys": PRIVATE}
    assert (await client.put(POLICY, json=plain, headers=admin)).status_code == 200
    response = await client.patch(user_url("john_doe"), json={"metadata": then}, headers=admin)
    assert response.status_code == 200
    transcript: list[tuple[str, int, dict[str, str], str]] = []

    async def see(label: str, method: str, url: str = META, **kwargs: Any) -> httpx.Response:
        headers = {**john, **kwargs.pop("headers", {})}
        response = await client.request(method, url, headers=headers, **kwargs)
        shown = {name: response.headers[name] for name in ("etag", "content-type")
                 if name in response.headers}  # fmt: skip
        if method == "HEAD":
            # The length of the GET's body, whose timestamps are blanked below.
            get = await client.get(url, headers=headers)
            assert response.headers["content-length"] == str(len(get.content))
            assert response.content == b""
        transcript.append((label, response.status_code, shown, _untimed(response.text)))
        return response

    await see("get", "GET")
    await see("head", "HEAD")
    await see("not modified", "GET", headers={"If-None-Match": '"2"'})
    await see("not modified *", "GET", headers={"If-None-Match": "*"})
    await see("412 *", "PATCH", json={"metadata": {"a": 1}}, headers={"If-None-Match": "*"})
    await see("412 stale", "PATCH", json={"metadata": {"a": 1}}, headers={"If-Match": '"1"'})
    await see("patch", "PATCH", json={"metadata": {"lang": "en"}})
    await see("403 set", "PATCH", json={"metadata": {"secret": 1, "plan": "free"}})
    await see("403 delete", "PATCH", json={"delete_keys": ["internal_x", "lang"]})
    await see("403 put", "PUT", json={"metadata": {"theme": "x", "internal_a": 1}})
    await see("put", "PUT", json={"metadata": {"theme": "light", "plan": "pro", "lang": "de"}})
    # A schema that each private part breaks: the member's errors, on every kind of write.
    strict = {**plain, "schema": {
        "properties": {"theme": {"type": "string"}, "secret": {"type": "string", "maxLength": 3}},
        "additionalProperties": {"type": ["string", "number"]},
        "maxProperties": 3,
    }}  # fmt: skip
    assert (await client.put(POLICY, json=strict, headers=admin)).status_code == 200
    await see("400 patch", "PATCH", json={"metadata": {"theme": 5}})
    await see("400 put", "PUT", json={"metadata": {"theme": "x", "plan": "pro"}})
    await see("400 restore", "POST", RESTORE, json={"version": 1})
    await see("400 delete", "DELETE")
    assert (await client.put(POLICY, json=plain, headers=admin)).status_code == 200
    # The largest write the member may make, and one byte more.
    visible = (await client.get(META, headers=john)).json()["metadata"]
    pad = "x" * (MAX - len(dump({**visible, "pad": ""}).encode()))
    await see("largest", "PATCH", json={"metadata": {"pad": pad}})
    await see("413", "PATCH", json={"metadata": {"pad": pad + "x"}})
    await see("unpad", "PATCH", json={"delete_keys": ["pad"]})
    await see("restore", "POST", RESTORE, json={"version": 1})
    await see("history", "GET", HISTORY + "&limit=100")
    await see("delete", "DELETE")
    await see("get after delete", "GET")
    await see("history after delete", "GET", HISTORY + "&limit=2")
    await see("policy", "GET", POLICY)
    return transcript


async def _member_events(app: Any, acme: Headers, changes: int) -> list[str]:
    """john_doe's event streams: the snapshot of a stream without a cursor, then a stream
    replaying every change from the first (`changes` of them); their `id:`, `event:` and
    `data:` lines, timestamps blanked."""
    lines: list[str] = []
    async with serving(Starlette(routes=[Mount(URL.rstrip("/"), app=app)])) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            for cursor, events in ((None, 1), ("v.0", changes)):
                headers = {**acme["john"], **({"Last-Event-ID": cursor} if cursor else {})}
                async with client.stream("GET", URL + "events/?platform_key=acme-corp",
                                         headers=headers) as response:  # fmt: skip
                    assert response.status_code == 200
                    async for line in response.aiter_lines():
                        if line.startswith(("id:", "event:", "data:")):
                            lines.append(_untimed(line))
                            events -= line.startswith("data:")
                        if not events:
                            break
    # The hub's task reads the store while a stream is open: let it end before the store
    # closes, or it would open a new connection to a closed store.
    app.hub.close_all()
    for _ in range(100):
        if app.hub.open_streams == 0:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(3 * FAST.poll_interval)
    return lines


async def test_a_member_learns_nothing_of_private_contents_on_any_surface(
    auth: FakeAuth, acme: Headers, store_kind: str, tmp_path: Path
) -> None:
    """Two worlds, the same requests of the member, private parts that differ in values,
    sizes, counts and key names: every answer the member gets is the same, byte for byte,
    timestamps aside (GET, HEAD, 304, 412, PATCH/PUT/DELETE, 403, 400, 413, history,
    restore, the event stream and the policy)."""
    worlds: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({"secret": "s3cr3t"}, {"secret": "s3cr3t, changed"}),
        ({"secret": ["hush"] * 400, "internal_a": {"x": 1}, "internal_zzz": "hush"},
         {"internal_a": None, "internal_b": 7.5}),
    ]  # fmt: skip
    seen = []
    for number, (first, then) in enumerate(worlds):
        folder = tmp_path / str(number)
        folder.mkdir()
        store = make_store(store_kind, folder)
        try:
            app = PlatformMetadataApp(auth=auth, store=store, events=FAST)
            mounted = Starlette(routes=[Mount(URL.rstrip("/"), app=app)])
            transport = httpx.ASGITransport(app=mounted)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                transcript = await _member_walk(client, acme, first, then)
            versions = (await store.get("acme-corp", "john_doe")).version
            seen.append((transcript, await _member_events(app, acme, versions)))
        finally:
            await close_store(store)
    (first_transcript, first_events), (second_transcript, second_events) = seen
    assert [status for _, status, _, _ in first_transcript] == [
        200, 200, 304, 304, 412, 412, 200, 403, 403, 403, 200, 400, 400, 400, 400,
        200, 413, 200, 200, 200, 204, 200, 200, 200,
    ]  # fmt: skip
    for mine, other in zip(first_transcript, second_transcript, strict=True):
        assert mine == other
    assert first_events == second_events
    for label, _, _, text in first_transcript:
        if label.startswith("403"):
            continue  # they list the keys the member named itself, and only those
        for word in PRIVATE_WORDS:
            assert word not in text, label
    forbidden = {label: text for label, _, _, text in first_transcript if label.startswith("403")}
    assert forbidden == {
        "403 set": '{"error":"Only tenant admins can change these keys","keys":["plan","secret"]}',
        "403 delete": '{"error":"Only tenant admins can change these keys","keys":["internal_x"]}',
        "403 put": '{"error":"Only tenant admins can change these keys","keys":["internal_a"]}',
    }
