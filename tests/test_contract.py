"""The HTTP contract of ../shared/API.md, row by row, over every store."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

import httpx
import pytest

from starlette_platform_metadata import Store

from .conftest import URL, FakeAuth

pytestmark = pytest.mark.anyio

Users = dict[str, dict[str, str]]
ACME = URL + "?platform_key=acme-corp"


def q(platform: str = "acme-corp", username: str | None = None) -> str:
    return URL + f"?platform_key={platform}" + (f"&username={username}" if username else "")


def json_headers(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Content-Type": "application/json"}


async def stored(client: httpx.AsyncClient, headers: dict[str, str], url: str = ACME) -> Any:
    response = await client.get(url, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


# --- 401: authentication, exactly as DRF's TokenAuthentication ---------------------------


@pytest.mark.parametrize(
    ("authorization", "detail"),
    [
        (None, "Authentication credentials were not provided."),
        ("Bearer abc", "Authentication credentials were not provided."),
        ("Basic dXNlcjpwYXNz", "Authentication credentials were not provided."),
        ("", "Authentication credentials were not provided."),
        ("Token", "Invalid token header. No credentials provided."),
        ("Token ", "Invalid token header. No credentials provided."),
        ("Token a b", "Invalid token header. Token string should not contain spaces."),
        ("Token nope", "Invalid token."),
    ],
)
@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE", "POST"])
async def test_unauthenticated_requests_get_drf_401_bodies(
    client: httpx.AsyncClient, acme: Users, authorization: str | None, detail: str, method: str
) -> None:
    """Every 401 carries the DRF detail and `WWW-Authenticate: Token`, before any other check."""
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await client.request(method, URL, headers=headers)
    assert response.status_code == 401
    assert response.content == ('{"detail":"%s"}' % detail).encode()
    assert response.headers["www-authenticate"] == "Token"
    assert response.headers["content-type"] == "application/json"


async def test_repeated_authorization_headers_are_refused_as_drf_sees_them(
    client: httpx.AsyncClient, acme: Users, store: Store
) -> None:
    """Two Authorization headers reach DRF joined by "," ("Token a,Token b"): a 401, never the
    first or the last identity, even when both name valid tokens."""
    john, jane = acme["john"]["Authorization"], acme["jane"]["Authorization"]
    for first, second in [(john, jane), (john, "Token nope"), ("Token nope", john), (john, john)]:
        headers = [("Authorization", first), ("Authorization", second)]
        response = await client.patch(ACME, json={"metadata": {"a": 1}}, headers=headers)
        assert response.status_code == 401, (first, second)
        assert response.json() == {
            "detail": "Invalid token header. Token string should not contain spaces."
        }
    assert (await store.get("acme-corp", "john_doe")).version == 0
    assert (await store.get("acme-corp", "jane")).version == 0


async def test_token_keyword_is_case_insensitive(client: httpx.AsyncClient, acme: Users) -> None:
    """`token <key>` and `TOKEN <key>` authenticate like `Token <key>` (DRF lowercases it)."""
    key = acme["john"]["Authorization"].split()[1]
    for keyword in ("token", "TOKEN", "ToKeN"):
        response = await client.get(ACME, headers={"Authorization": f"{keyword} {key}"})
        assert response.status_code == 200


async def test_whitespace_around_the_key_is_ignored(client: httpx.AsyncClient, acme: Users) -> None:
    """DRF splits the header on whitespace runs, so extra spaces or a tab still authenticate."""
    key = acme["john"]["Authorization"].split()[1]
    response = await client.get(ACME, headers={"Authorization": f"Token   {key}\t"})
    assert response.status_code == 200


# --- the error table, in its order --------------------------------------------------------


@pytest.mark.parametrize("url", [URL, URL + "?platform_key=", URL + "?username=jane"])
async def test_missing_or_empty_platform_key_is_400(
    client: httpx.AsyncClient, acme: Users, url: str
) -> None:
    """No or empty `platform_key` answers the contract's 400 body."""
    response = await client.get(url, headers=acme["john"])
    assert response.status_code == 400
    assert response.content == b'{"error":"platform_key query parameter is required"}'


async def test_unknown_platform_is_404(client: httpx.AsyncClient, acme: Users) -> None:
    """An unknown platform key is 404 Platform not found, even for another user's name."""
    for url in (q("nowhere"), q("nowhere", "jane")):
        response = await client.get(url, headers=acme["admin"])
        assert response.status_code == 404
        assert response.content == b'{"error":"Platform not found"}'


async def test_non_admin_naming_another_user_is_403(client: httpx.AsyncClient, acme: Users) -> None:
    """A member that names another user gets 403, whether that user exists or not."""
    for name in ("jane", "ghost"):
        response = await client.get(q(username=name), headers=acme["john"])
        assert response.status_code == 403
        assert response.content == b'{"error":"Only tenant admins can access other users\' metadata"}'


async def test_admin_naming_user_not_on_platform_is_404(client: httpx.AsyncClient, acme: Users) -> None:
    """An admin naming a user of another platform, or nobody, gets 404 User not found."""
    for name in ("eve", "ghost", "John_doe", "john_doe ", "jöhn_doe"):
        response = await client.get(q(username=name), headers=acme["admin"])
        assert response.status_code == 404, name
        assert response.content == b'{"error":"User not found"}'


async def test_non_member_own_metadata_is_403(client: httpx.AsyncClient, acme: Users) -> None:
    """A caller who does not belong to the platform cannot keep metadata there."""
    for url in (q(), q(username="eve")):
        response = await client.get(url, headers=acme["eve"])
        assert response.status_code == 403
        assert response.content == b'{"error":"You are not a member of this platform"}'


async def test_admin_of_another_platform_cannot_reach_its_users(
    client: httpx.AsyncClient, acme: Users
) -> None:
    """Being tenant admin of `other` gives no right on acme-corp's users, by any method."""
    await client.patch(ACME, json={"metadata": {"secret": 1}}, headers=acme["john"])
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        response = await client.request(
            method, q(username="john_doe"), json={"metadata": {"x": 1}}, headers=acme["other_admin"]
        )
        assert response.status_code == 403
        response = await client.request(
            method, q("other", "john_doe"), json={"metadata": {"x": 1}}, headers=acme["other_admin"]
        )
        assert response.status_code == 404
        assert response.json() == {"error": "User not found"}
    assert (await stored(client, acme["john"]))["metadata"] == {"secret": 1}


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/merge-patch+json"]
)
async def test_non_json_body_is_415(
    client: httpx.AsyncClient, acme: Users, method: str, content_type: str
) -> None:
    """A body that is not application/json is refused with DRF's 415 body, quoting the type."""
    headers = {**acme["john"], "Content-Type": content_type}
    response = await client.request(method, ACME, content=b'{"metadata":{"a":1}}', headers=headers)
    assert response.status_code == 415
    assert response.json() == {"detail": f'Unsupported media type "{content_type}" in request.'}
    assert (await stored(client, acme["john"]))["metadata"] == {}


async def test_415_quotes_the_whole_content_type(client: httpx.AsyncClient, acme: Users) -> None:
    """DRF echoes the header with its parameters."""
    headers = {**acme["john"], "Content-Type": "text/plain; charset=utf-8"}
    response = await client.patch(ACME, content=b"x", headers=headers)
    assert response.content == b'{"detail":"Unsupported media type \\"text/plain; charset=utf-8\\" in request."}'


async def test_json_with_charset_is_accepted(client: httpx.AsyncClient, acme: Users) -> None:
    """`application/json; charset=utf-8` is JSON."""
    headers = {**acme["john"], "Content-Type": "Application/JSON; charset=utf-8"}
    response = await client.patch(ACME, content=b'{"metadata":{"a":1}}', headers=headers)
    assert response.status_code == 200
    assert response.json()["metadata"] == {"a": 1}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{", "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        (b"not json", "Expecting value: line 1 column 1 (char 0)"),
        (b'{"metadata": {"a": 1}} x', "Extra data: line 1 column 24 (char 23)"),
    ],
)
@pytest.mark.parametrize("method", ["PATCH", "PUT"])
async def test_invalid_json_is_400_parse_error(
    client: httpx.AsyncClient, acme: Users, body: bytes, reason: str, method: str
) -> None:
    """Malformed JSON answers `JSON parse error - <Python's reason>`, as DRF does."""
    headers = {**acme["john"], "Content-Type": "application/json"}
    response = await client.request(method, ACME, content=body, headers=headers)
    assert response.status_code == 400
    assert response.json() == {"detail": f"JSON parse error - {reason}"}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ([], {"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}),
        ("x", {"non_field_errors": ["Invalid data. Expected a dictionary, but got str."]}),
        (1, {"non_field_errors": ["Invalid data. Expected a dictionary, but got int."]}),
        (True, {"non_field_errors": ["Invalid data. Expected a dictionary, but got bool."]}),
        (None, {"non_field_errors": ["No data provided"]}),
        ({"metadata": []}, {"metadata": ['Expected a dictionary of items but got type "list".']}),
        ({"metadata": "x"}, {"metadata": ['Expected a dictionary of items but got type "str".']}),
        ({"metadata": 1.5}, {"metadata": ['Expected a dictionary of items but got type "float".']}),
        ({"metadata": None}, {"metadata": ["This field may not be null."]}),
        ({"delete_keys": "a"}, {"delete_keys": ['Expected a list of items but got type "str".']}),
        ({"delete_keys": {"a": 1}}, {"delete_keys": ['Expected a list of items but got type "dict".']}),
        ({"delete_keys": None}, {"delete_keys": ["This field may not be null."]}),
        ({"delete_keys": [1]}, {"delete_keys": {"0": ["Not a valid string."]}}),
        (
            {"delete_keys": ["ok", True, {}, "ok"]},
            {"delete_keys": {"1": ["Not a valid string."], "2": ["Not a valid string."]}},
        ),
        (
            {"metadata": [], "delete_keys": "a"},
            {
                "metadata": ['Expected a dictionary of items but got type "list".'],
                "delete_keys": ['Expected a list of items but got type "str".'],
            },
        ),
        ({}, {"non_field_errors": ["Provide 'metadata' to update or 'delete_keys' to remove keys."]}),
        (
            {"metadata": {}, "delete_keys": []},
            {"non_field_errors": ["Provide 'metadata' to update or 'delete_keys' to remove keys."]},
        ),
        (
            {"other": 1},
            {"non_field_errors": ["Provide 'metadata' to update or 'delete_keys' to remove keys."]},
        ),
    ],
)
async def test_patch_validation_errors(
    client: httpx.AsyncClient, acme: Users, body: Any, expected: Any
) -> None:
    """PATCH bodies are validated like the original DRF serializer, and nothing is stored."""
    await client.patch(ACME, json={"metadata": {"keep": 1}}, headers=acme["john"])
    response = await client.patch(ACME, content=json.dumps(body), headers=json_headers(acme["john"]))
    assert response.status_code == 400
    assert response.json() == expected
    assert list(response.json()) == list(expected)  # field order as DRF renders it
    assert (await stored(client, acme["john"]))["metadata"] == {"keep": 1}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, {"metadata": ["This field is required."]}),
        ({"delete_keys": ["a"]}, {"metadata": ["This field is required."]}),
        ({"metadata": []}, {"metadata": ['Expected a dictionary of items but got type "list".']}),
        ({"metadata": None}, {"metadata": ["This field may not be null."]}),
        ([1], {"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}),
    ],
)
async def test_put_validation_errors(
    client: httpx.AsyncClient, acme: Users, body: Any, expected: Any
) -> None:
    """PUT requires an object `metadata`; refused bodies change nothing."""
    await client.patch(ACME, json={"metadata": {"keep": 1}}, headers=acme["john"])
    response = await client.put(ACME, content=json.dumps(body), headers=json_headers(acme["john"]))
    assert response.status_code == 400
    assert response.json() == expected
    assert (await stored(client, acme["john"]))["metadata"] == {"keep": 1}


@pytest.mark.parametrize("method", ["POST", "TRACE", "CONNECT", "FOO"])
async def test_other_methods_are_405_with_allow(
    client: httpx.AsyncClient, acme: Users, method: str
) -> None:
    """Methods outside the contract get DRF's 405 body and an `Allow` header."""
    response = await client.request(method, ACME, headers=acme["john"])
    assert response.status_code == 405
    assert response.json() == {"detail": f'Method "{method}" not allowed.'}
    assert response.headers["allow"] == "GET, PUT, PATCH, DELETE, HEAD, OPTIONS"


async def test_405_comes_after_authentication_and_before_query_checks(
    client: httpx.AsyncClient, acme: Users
) -> None:
    """As in DRF, authentication runs before the method check, which runs before the view."""
    assert (await client.post(URL)).status_code == 401
    assert (await client.post(URL, headers=acme["john"])).status_code == 405


async def test_check_order_permissions_before_body(client: httpx.AsyncClient, acme: Users) -> None:
    """Authorization is decided before the body is even looked at."""
    bad = {"Content-Type": "text/plain"}
    response = await client.patch(q(username="jane"), content=b"x", headers={**acme["john"], **bad})
    assert response.status_code == 403
    response = await client.patch(q("nowhere"), content=b"x", headers={**acme["john"], **bad})
    assert response.status_code == 404
    response = await client.patch(URL, content=b"x", headers={**acme["john"], **bad})
    assert response.status_code == 400


# --- the four methods on one's own metadata ------------------------------------------------


async def test_get_of_nothing_stored_is_empty_with_null_timestamps(
    client: httpx.AsyncClient, acme: Users
) -> None:
    """A user with nothing stored gets `{}` and null timestamps, and GET creates nothing."""
    for _ in range(2):
        response = await client.get(ACME, headers=acme["john"])
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {
            "username": "john_doe",
            "platform_key": "acme-corp",
            "metadata": {},
            "created_at": None,
            "updated_at": None,
        }


async def test_patch_creates_then_merges_top_level_keys(client: httpx.AsyncClient, acme: Users) -> None:
    """PATCH creates the record, then sets whole top-level values without deep merging."""
    response = await client.patch(
        ACME, json={"metadata": {"theme": "dark", "ui": {"a": 1, "b": 2}}}, headers=acme["john"]
    )
    assert response.status_code == 200
    body = response.json()
    assert body["username"] == "john_doe" and body["platform_key"] == "acme-corp"
    assert body["created_at"] is not None and body["created_at"] == body["updated_at"]
    response = await client.patch(ACME, json={"metadata": {"ui": {"c": 3}}}, headers=acme["john"])
    assert response.json()["metadata"] == {"theme": "dark", "ui": {"c": 3}}
    assert (await stored(client, acme["john"]))["metadata"] == {"theme": "dark", "ui": {"c": 3}}


async def test_patch_deletes_first_then_sets(client: httpx.AsyncClient, acme: Users) -> None:
    """Keys named in both `delete_keys` and `metadata` end up set; missing keys are ignored."""
    await client.patch(ACME, json={"metadata": {"a": 1, "b": 2, "c": 3}}, headers=acme["john"])
    response = await client.patch(
        ACME,
        json={"metadata": {"a": "new"}, "delete_keys": ["a", "b", "never-there"]},
        headers=acme["john"],
    )
    assert response.status_code == 200
    assert response.json()["metadata"] == {"a": "new", "c": 3}


async def test_patch_with_only_delete_keys_and_null_values(client: httpx.AsyncClient, acme: Users) -> None:
    """`delete_keys` alone removes keys; a null value is stored as null, not deleted."""
    await client.patch(ACME, json={"metadata": {"a": 1, "b": 2}}, headers=acme["john"])
    response = await client.patch(ACME, json={"delete_keys": ["a"]}, headers=acme["john"])
    assert response.json()["metadata"] == {"b": 2}
    response = await client.patch(ACME, json={"metadata": {"b": None}}, headers=acme["john"])
    assert response.json()["metadata"] == {"b": None}


async def test_patch_ignores_unknown_fields(client: httpx.AsyncClient, acme: Users) -> None:
    """Unknown body fields are ignored, as DRF serializers do."""
    response = await client.patch(
        ACME, json={"metadata": {"a": 1}, "username": "jane", "extra": [1]}, headers=acme["john"]
    )
    assert response.status_code == 200
    assert response.json()["username"] == "john_doe"
    assert response.json()["metadata"] == {"a": 1}


async def test_empty_patch_on_a_new_user_creates_nothing(client: httpx.AsyncClient, acme: Users) -> None:
    """A refused first PATCH leaves the user with nothing stored."""
    response = await client.patch(ACME, json={"metadata": {}}, headers=acme["john"])
    assert response.status_code == 400
    assert (await stored(client, acme["john"]))["created_at"] is None


async def test_body_without_content_type_is_empty_data(client: httpx.AsyncClient, acme: Users) -> None:
    """As DRF: no Content-Type (or an empty body) means no data, whatever the bytes."""
    headers = {**acme["john"]}
    response = await client.patch(ACME, content=b'{"metadata":{"a":1}}', headers=headers)
    assert response.status_code == 400
    assert "non_field_errors" in response.json()
    response = await client.put(ACME, content=b"", headers={**headers, "Content-Type": "text/plain"})
    assert response.json() == {"metadata": ["This field is required."]}


async def test_put_replaces_everything(client: httpx.AsyncClient, acme: Users) -> None:
    """PUT removes every key not in the new document; `{}` is a valid replacement."""
    await client.patch(ACME, json={"metadata": {"a": 1, "b": 2}}, headers=acme["john"])
    response = await client.put(ACME, json={"metadata": {"c": 3}}, headers=acme["john"])
    assert response.status_code == 200
    assert response.json()["metadata"] == {"c": 3}
    response = await client.put(ACME, json={"metadata": {}}, headers=acme["john"])
    assert response.json()["metadata"] == {}
    assert (await stored(client, acme["john"]))["metadata"] == {}


async def test_put_creates_a_record(client: httpx.AsyncClient, acme: Users) -> None:
    """PUT on a user with nothing stored creates the record with timestamps."""
    response = await client.put(ACME, json={"metadata": {"x": 1}}, headers=acme["john"])
    assert response.status_code == 200
    assert response.json()["created_at"] is not None


async def test_delete_is_204_idempotent_and_clears(client: httpx.AsyncClient, acme: Users) -> None:
    """DELETE answers 204 with no body, also when nothing is stored; GET then shows nothing."""
    await client.patch(ACME, json={"metadata": {"a": 1}}, headers=acme["john"])
    for _ in range(2):
        response = await client.delete(ACME, headers=acme["john"])
        assert response.status_code == 204
        assert response.content == b""
    body = await stored(client, acme["john"])
    assert body["metadata"] == {} and body["created_at"] is None and body["updated_at"] is None
    response = await client.delete(q(), headers=acme["jane"])
    assert response.status_code == 204


async def test_recreated_record_gets_new_created_at(client: httpx.AsyncClient, acme: Users) -> None:
    """After DELETE, the next write starts a new record."""
    first = (await client.patch(ACME, json={"metadata": {"a": 1}}, headers=acme["john"])).json()
    await client.delete(ACME, headers=acme["john"])
    await asyncio.sleep(0.002)
    second = (await client.patch(ACME, json={"metadata": {"b": 1}}, headers=acme["john"])).json()
    assert second["metadata"] == {"b": 1}
    assert second["created_at"] > first["created_at"]


async def test_timestamps_created_stays_updated_advances(client: httpx.AsyncClient, acme: Users) -> None:
    """created_at is fixed at the first write; updated_at moves forward with every write."""
    first = (await client.patch(ACME, json={"metadata": {"a": 1}}, headers=acme["john"])).json()
    await asyncio.sleep(0.002)
    second = (await client.put(ACME, json={"metadata": {"a": 2}}, headers=acme["john"])).json()
    await asyncio.sleep(0.002)
    third = (await client.patch(ACME, json={"delete_keys": ["a"]}, headers=acme["john"])).json()
    assert first["created_at"] == second["created_at"] == third["created_at"]
    parsed = [datetime.fromisoformat(b["updated_at"]) for b in (first, second, third)]
    assert parsed[0] < parsed[1] < parsed[2]
    for body in (first, second, third):
        assert body["created_at"].endswith("Z") and body["updated_at"].endswith("Z")
        assert datetime.fromisoformat(body["created_at"]).utcoffset() is not None


@pytest.mark.parametrize(
    "value",
    [
        "text",
        "",
        "ünïcødé ✓ 🎉 \u2028",
        0,
        -17,
        2**63 - 1,
        -(2**63),
        1.5,
        1.0,
        -0.25,
        1e300,
        True,
        False,
        None,
        [],
        [1, "two", None, [3], {"four": 4}],
        {},
        {"nested": {"deep": [1, {"x": None}]}},
    ],
)
async def test_values_of_every_json_type_round_trip(
    client: httpx.AsyncClient, acme: Users, value: Any
) -> None:
    """Whatever JSON value is stored comes back equal, with the same type (1.0 stays a float)."""
    response = await client.patch(ACME, json={"metadata": {"k": value}}, headers=acme["john"])
    assert response.status_code == 200
    for body in (response.json(), await stored(client, acme["john"])):
        got = body["metadata"]["k"]
        assert got == value and type(got) is type(value)


# --- admins and isolation ---------------------------------------------------------------


async def test_admin_uses_every_method_on_a_user_of_its_platform(
    client: httpx.AsyncClient, acme: Users
) -> None:
    """A tenant admin reads and writes another user's metadata; the user sees the result."""
    url = q(username="john_doe")
    response = await client.patch(url, json={"metadata": {"tier": "premium"}}, headers=acme["admin"])
    assert response.status_code == 200 and response.json()["username"] == "john_doe"
    assert (await stored(client, acme["john"]))["metadata"] == {"tier": "premium"}
    response = await client.put(url, json={"metadata": {"region": "US"}}, headers=acme["admin"])
    assert response.json()["metadata"] == {"region": "US"}
    assert (await client.get(url, headers=acme["admin"])).json()["metadata"] == {"region": "US"}
    assert (await client.delete(url, headers=acme["admin"])).status_code == 204
    assert (await stored(client, acme["john"]))["metadata"] == {}
    assert (await stored(client, acme["admin"]))["metadata"] == {}


async def test_admin_may_name_a_fellow_admin_and_itself(client: httpx.AsyncClient, acme: Users, auth: FakeAuth) -> None:
    """Naming oneself is one's own metadata; an admin may manage another admin of its platform."""
    other = auth.add("acme-corp", "second_admin", admin=True)
    await client.patch(q(), json={"metadata": {"mine": 1}}, headers=acme["admin"])
    assert (await client.get(q(username="acme_admin"), headers=acme["admin"])).json()["metadata"] == {"mine": 1}
    response = await client.get(q(username="acme_admin"), headers=other)
    assert response.status_code == 200 and response.json()["metadata"] == {"mine": 1}


async def test_member_may_name_itself(client: httpx.AsyncClient, acme: Users) -> None:
    """`username` equal to the caller is the caller's own metadata, no admin needed."""
    await client.patch(ACME, json={"metadata": {"a": 1}}, headers=acme["john"])
    response = await client.get(q(username="john_doe"), headers=acme["john"])
    assert response.status_code == 200 and response.json()["metadata"] == {"a": 1}


async def test_non_admin_cannot_write_another_user(client: httpx.AsyncClient, acme: Users) -> None:
    """A member's PATCH/PUT/DELETE naming another user is 403 and changes nothing."""
    await client.patch(q(), json={"metadata": {"jane": 1}}, headers=acme["jane"])
    for method in ("PATCH", "PUT", "DELETE"):
        response = await client.request(
            method, q(username="jane"), json={"metadata": {"x": 1}}, headers=acme["john"]
        )
        assert response.status_code == 403
    assert (await stored(client, acme["jane"]))["metadata"] == {"jane": 1}
    assert (await stored(client, acme["john"]))["metadata"] == {}


async def test_metadata_is_per_user_and_per_platform(
    client: httpx.AsyncClient, acme: Users, auth: FakeAuth
) -> None:
    """One user on two platforms keeps two documents; users never see each other's."""
    auth.add("personal", "john_doe")
    await client.patch(q(), json={"metadata": {"theme": "light"}}, headers=acme["john"])
    await client.patch(q("personal"), json={"metadata": {"theme": "dark"}}, headers=acme["john"])
    await client.patch(q(), json={"metadata": {"theme": "jane's"}}, headers=acme["jane"])
    assert (await stored(client, acme["john"], q()))["metadata"] == {"theme": "light"}
    assert (await stored(client, acme["john"], q("personal")))["metadata"] == {"theme": "dark"}
    assert (await stored(client, acme["jane"], q()))["metadata"] == {"theme": "jane's"}
    await client.delete(q("personal"), headers=acme["john"])
    assert (await stored(client, acme["john"], q()))["metadata"] == {"theme": "light"}


async def test_platform_key_is_matched_exactly(client: httpx.AsyncClient, acme: Users) -> None:
    """Case, whitespace and look-alike platform keys are other (unknown) platforms."""
    for key in ("ACME-CORP", "acme-corp%20", "%20acme-corp", "acme%E2%80%90corp"):
        response = await client.get(URL + f"?platform_key={key}", headers=acme["john"])
        assert response.status_code == 404, key


# --- the rest of HTTP -------------------------------------------------------------------


async def test_head_is_get_without_body(client: httpx.AsyncClient, acme: Users) -> None:
    """HEAD answers GET's status and headers with no body."""
    await client.patch(ACME, json={"metadata": {"a": 1}}, headers=acme["john"])
    get = await client.get(ACME, headers=acme["john"])
    head = await client.head(ACME, headers=acme["john"])
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"]
    assert head.headers["etag"] == get.headers["etag"]
    assert (await client.head(ACME)).status_code == 401


async def test_options_describes_the_endpoint(client: httpx.AsyncClient, acme: Users) -> None:
    """OPTIONS answers like DRF's metadata view, after authentication."""
    response = await client.options(ACME, headers=acme["john"])
    assert response.status_code == 200
    assert response.headers["allow"] == "GET, PUT, PATCH, DELETE, HEAD, OPTIONS"
    assert response.json()["parses"] == ["application/json"]
    assert (await client.options(ACME)).status_code == 401


async def test_path_without_trailing_slash_is_served(client: httpx.AsyncClient, acme: Users) -> None:
    """Without the trailing slash Starlette redirects (keeping the method); subpaths are 404."""
    response = await client.get(URL.rstrip("/") + "?platform_key=acme-corp", headers=acme["john"])
    assert response.status_code == 307
    assert response.headers["location"].endswith(URL + "?platform_key=acme-corp")
    response = await client.get(URL + "elsewhere?platform_key=acme-corp", headers=acme["john"])
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


async def test_a_mounted_endpoint_refuses_a_path_with_an_encoded_slash(
    client: httpx.AsyncClient, acme: Users
) -> None:
    """The host's router decodes `%2F` and matches the mount; the endpoint does not serve a
    path the client did not spell as its own, and nothing is written."""
    john = acme["john"]
    path = URL.replace("users/", "users%2F") + "?platform_key=acme-corp"
    response = await client.put(path, json={"metadata": {"a": 1}}, headers=john)
    assert (response.status_code, response.json()) == (404, {"detail": "Not found."})
    stored = await client.get(URL + "?platform_key=acme-corp", headers=john)
    assert stored.json()["metadata"] == {}
