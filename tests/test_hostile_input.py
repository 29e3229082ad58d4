"""Hostile input and resource limits: every refusal is exact, and nothing stored changes.

Each test names the input and the exact status and body; refused requests are followed by a
check, straight on the store, that no record moved (data and version).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from starlette_platform_metadata import Identity, Limits, PlatformAccess, PlatformMetadataApp, Store

from .conftest import URL, FakeAuth

pytestmark = pytest.mark.anyio

Users = dict[str, dict[str, str]]
ACME = URL + "?platform_key=acme-corp"
LIMITS = Limits()
PAIRS = [("acme-corp", "john_doe"), ("acme-corp", "jane"), ("acme-corp", "JANE"), ("other", "eve")]


def body_of(payload: dict[str, Any]) -> bytes:
    """The exact bytes the endpoint renders for `payload` (compact, UTF-8)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def json_headers(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Content-Type": "application/json"}


async def snapshot(store: Store) -> list[tuple[str, int]]:
    """Every record the tests touch, read from the store itself."""
    records = [await store.get(platform, user) for platform, user in PAIRS]
    return [(record.metadata_json, record.version) for record in records]


@pytest.fixture
async def seeded(client: httpx.AsyncClient, acme: Users, store: Store) -> list[tuple[str, int]]:
    """john_doe and jane have metadata; returns the snapshot every refusal must leave alone."""
    for user, value in (("john", "dark"), ("jane", "light")):
        response = await client.put(
            ACME, json={"metadata": {"theme": value}}, headers=acme[user]
        )
        assert response.status_code == 200, response.text
    return await snapshot(store)


def assert_refused(response: httpx.Response, status: int, payload: dict[str, Any]) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.content == body_of(payload)


def parse_error(reason: str) -> dict[str, str]:
    return {"detail": f"JSON parse error - {reason}"}


def nested(depth: int) -> bytes:
    """A metadata object nested `depth` levels (the object itself is level 1)."""
    return b'{"metadata":' + b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1) + b"}"


TOO_DEEP = parse_error("Nesting deeper than the limit of 10 levels")
OUT_OF_INT64 = parse_error("Integer out of the 64-bit signed range")

STRICT_JSON_REFUSALS = [
    pytest.param(b"[" * 100_000, TOO_DEEP, id="100000-open-brackets"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, TOO_DEEP, id="100000-nested-arrays"),
    pytest.param(nested(11), TOO_DEEP, id="metadata-depth-11"),
    pytest.param(b'{"x":' + b"[" * 11 + b"]" * 11 + b',"metadata":{"a":1}}', TOO_DEEP, id="deep-unknown-field"),
    pytest.param(b'{"metadata":{"n":' + b"1" * 5000 + b"}}", OUT_OF_INT64, id="5000-digit-integer"),
    pytest.param(b'{"metadata":{"n":9223372036854775808}}', OUT_OF_INT64, id="int64-max-plus-1"),
    pytest.param(b'{"metadata":{"n":-9223372036854775809}}', OUT_OF_INT64, id="int64-min-minus-1"),
    pytest.param(
        b'{"metadata":{"x":NaN}}',
        parse_error("Out of range float values are not JSON compliant: 'NaN'"),
        id="NaN",
    ),
    pytest.param(
        b'{"metadata":{"x":-Infinity}}',
        parse_error("Out of range float values are not JSON compliant: '-Infinity'"),
        id="-Infinity",
    ),
    pytest.param(
        b'{"metadata":{"x":1e400}}',
        parse_error("Out of range float values are not JSON compliant: '1e400'"),
        id="float-overflow",
    ),
    pytest.param(
        b'{"metadata":{"x":"\\ud800"}}',
        parse_error("Lone surrogate characters are not allowed"),
        id="lone-surrogate-value",
    ),
    pytest.param(
        b'{"metadata":{"\\udfff":1}}',
        parse_error("Lone surrogate characters are not allowed"),
        id="lone-surrogate-key",
    ),
    pytest.param(
        b'{"metadata":{"x":"\xff"}}',
        parse_error("'utf-8' codec can't decode byte 0xff in position 18: invalid start byte"),
        id="raw-0xff-byte",
    ),
    pytest.param(
        b'{"metadata":{"x":"\xed\xa0\x80"}}',
        parse_error("'utf-8' codec can't decode byte 0xed in position 18: invalid continuation byte"),
        id="utf8-encoded-surrogate",
    ),
    pytest.param(
        b'{"metadata":{"x":"a\\u0000b"}}',
        parse_error("The NUL character (\\u0000) is not allowed"),
        id="escaped-NUL",
    ),
    pytest.param(
        b'{"metadata":{"x":"a\x00b"}}',
        parse_error("Invalid control character at: line 1 column 20 (char 19)"),
        id="raw-NUL",
    ),
    pytest.param(
        b'{"metadata":{"a":1,"a":2}}',
        parse_error("Duplicate key 'a' in object"),
        id="duplicate-metadata-key",
    ),
    pytest.param(
        b'{"metadata":{"a":1},"metadata":{"b":2}}',
        parse_error("Duplicate key 'metadata' in object"),
        id="duplicate-top-level-key",
    ),
    pytest.param(
        b'{"metadata":{"a":{"b":1,"b":1}}}',
        parse_error("Duplicate key 'b' in object"),
        id="duplicate-nested-key",
    ),
    pytest.param(
        b'{"metadata":{"a":1}',
        parse_error("Expecting ',' delimiter: line 1 column 20 (char 19)"),
        id="truncated",
    ),
    pytest.param(
        b'\xef\xbb\xbf{"metadata":{"a":1}}',
        parse_error("Unexpected UTF-8 BOM (decode using utf-8-sig): line 1 column 1 (char 0)"),
        id="utf8-bom",
    ),
]


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
@pytest.mark.parametrize(("body", "expected"), STRICT_JSON_REFUSALS)
async def test_strict_json_refuses_with_parse_error_and_changes_nothing(
    client: httpx.AsyncClient,
    acme: Users,
    store: Store,
    seeded: list[tuple[str, int]],
    method: str,
    body: bytes,
    expected: dict[str, str],
) -> None:
    """What Python's json would accept or choke on is a 400 `JSON parse error - ...`."""
    response = await client.request(method, ACME, content=body, headers=json_headers(acme["john"]))
    assert_refused(response, 400, expected)
    assert await snapshot(store) == seeded


@pytest.mark.parametrize(
    ("body", "metadata"),
    [
        pytest.param(nested(10), json.loads(nested(10))["metadata"], id="metadata-depth-10"),
        pytest.param(
            b'{"metadata":{"max":9223372036854775807,"min":-9223372036854775808}}',
            {"max": 2**63 - 1, "min": -(2**63)},
            id="int64-bounds",
        ),
        pytest.param(b'{"metadata":{"x":"\\ud83d\\ude00"}}', {"x": "\U0001f600"}, id="surrogate-pair"),
        pytest.param(b'{"metadata":{"x":"\\\\u0000"}}', {"x": "\\u0000"}, id="escaped-backslash-u0000"),
        pytest.param(
            b'{"metadata":{"tab\\tkey\\u001f":1,"\\u007f":2}}',
            {"tab\tkey\x1f": 1, "\x7f": 2},
            id="control-characters-in-keys",
        ),
        pytest.param(b'{"metadata":{"k":1e308}}', {"k": 1e308}, id="largest-finite-float"),
    ],
)
async def test_strict_json_accepts_the_edges_and_round_trips_them(
    client: httpx.AsyncClient, acme: Users, body: bytes, metadata: dict[str, Any]
) -> None:
    """The limits are exact: what sits on the allowed side is stored and read back unchanged."""
    response = await client.put(ACME, content=body, headers=json_headers(acme["john"]))
    assert response.status_code == 200, response.text
    assert response.json()["metadata"] == metadata
    assert (await client.get(ACME, headers=acme["john"])).json()["metadata"] == metadata


# --- field limits: keys, key length, delete_keys ---------------------------------------------

KEYS_OVER = {f"k{i}": i for i in range(LIMITS.max_keys + 1)}
LONG_KEY = "k" * (LIMITS.max_key_length + 1)


@pytest.mark.parametrize(
    ("method", "payload", "expected"),
    [
        pytest.param(
            "PATCH",
            {"metadata": KEYS_OVER},
            {"metadata": ["Ensure this field has no more than 512 keys."]},
            id="patch-513-keys",
        ),
        pytest.param(
            "PUT",
            {"metadata": KEYS_OVER},
            {"metadata": ["Ensure this field has no more than 512 keys."]},
            id="put-513-keys",
        ),
        pytest.param(
            "PATCH",
            {"metadata": {LONG_KEY: 1}},
            {"metadata": ["Keys must be non-empty strings of at most 256 characters."]},
            id="key-257-characters",
        ),
        pytest.param(
            "PUT",
            {"metadata": {"": 1}},
            {"metadata": ["Keys must be non-empty strings of at most 256 characters."]},
            id="empty-key",
        ),
        pytest.param(
            "PATCH",
            {"delete_keys": [f"k{i}" for i in range(LIMITS.max_delete_keys + 1)]},
            {"delete_keys": ["Ensure this field has no more than 512 elements."]},
            id="513-delete-keys",
        ),
        pytest.param(
            "PATCH",
            {"delete_keys": ["theme", LONG_KEY]},
            {"delete_keys": {"1": ["Ensure this field has no more than 256 characters."]}},
            id="delete-key-257-characters",
        ),
        pytest.param(
            "PATCH",
            {"delete_keys": ["theme", ""]},
            {"delete_keys": {"1": ["This field may not be blank."]}},
            id="blank-delete-key",
        ),
    ],
)
async def test_field_limits_answer_400_naming_the_limit(
    client: httpx.AsyncClient,
    acme: Users,
    store: Store,
    seeded: list[tuple[str, int]],
    method: str,
    payload: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    """Over-limit keys, key lengths and delete lists are refused whole, DRF-shaped."""
    response = await client.request(method, ACME, json=payload, headers=acme["john"])
    assert_refused(response, 400, expected)
    assert await snapshot(store) == seeded


async def test_field_limits_admit_exactly_the_limit(client: httpx.AsyncClient, acme: Users) -> None:
    """512 keys, a 256-character key, and 512 delete_keys are accepted."""
    keys: dict[str, Any] = {f"k{i}": i for i in range(LIMITS.max_keys - 1)}
    keys["k" * LIMITS.max_key_length] = True
    response = await client.put(ACME, json={"metadata": keys}, headers=acme["john"])
    assert response.status_code == 200, response.text
    assert len(response.json()["metadata"]) == LIMITS.max_keys
    response = await client.patch(ACME, json={"delete_keys": list(keys)}, headers=acme["john"])
    assert response.status_code == 200, response.text
    assert response.json()["metadata"] == {}


# --- body size: 413 before the body is read whole ------------------------------------------

BODY_TOO_LARGE = {
    "detail": "Request body is larger than the limit of 262144 bytes.",
    "limit": "max_body_bytes",
    "value": 262144,
}


def padded(size: int) -> bytes:
    """A valid PATCH body of exactly `size` bytes (JSON whitespace as padding)."""
    core = b'{"metadata":{"a":1}}'
    return core + b" " * (size - len(core))


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
async def test_body_over_the_limit_with_content_length_is_413(
    client: httpx.AsyncClient, acme: Users, store: Store, seeded: list[tuple[str, int]], method: str
) -> None:
    """One byte over max_body_bytes, declared in Content-Length: 413 naming the limit."""
    response = await client.request(
        method, ACME, content=padded(LIMITS.max_body_bytes + 1), headers=json_headers(acme["john"])
    )
    assert_refused(response, 413, BODY_TOO_LARGE)
    assert await snapshot(store) == seeded


async def test_body_of_exactly_the_limit_is_accepted(client: httpx.AsyncClient, acme: Users) -> None:
    response = await client.patch(
        ACME, content=padded(LIMITS.max_body_bytes), headers=json_headers(acme["john"])
    )
    assert response.status_code == 200, response.text


async def test_chunked_body_over_the_limit_is_413(
    client: httpx.AsyncClient, acme: Users, store: Store, seeded: list[tuple[str, int]]
) -> None:
    """Without Content-Length (chunked), the count of received bytes decides."""

    async def chunks() -> Any:
        for _ in range(40):
            yield b" " * 8192

    response = await client.patch(ACME, content=chunks(), headers=json_headers(acme["john"]))
    assert "content-length" not in response.request.headers
    assert_refused(response, 413, BODY_TOO_LARGE)
    assert await snapshot(store) == seeded


async def test_ten_mebibyte_chunked_body_is_refused_after_reading_little_more_than_the_limit(
    app: Starlette, acme: Users, store: Store, seeded: list[tuple[str, int]]
) -> None:
    """Driving the ASGI app directly: receive() is called only until the limit is passed."""
    chunk = b"[" * 65536
    total = 10 * 1024 * 1024
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": pulled < total}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(b"authorization", acme["john"]["Authorization"].encode())]
    headers.append((b"content-type", b"application/json"))  # and no content-length
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PATCH",
        "scheme": "http",
        "path": URL,
        "raw_path": URL.encode(),
        "root_path": "",
        "query_string": b"platform_key=acme-corp",
        "headers": headers,
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == 413
    assert b"".join(m.get("body", b"") for m in sent[1:]) == body_of(BODY_TOO_LARGE)
    # The limit plus the one chunk that crossed it; never the 10 MiB.
    assert pulled <= LIMITS.max_body_bytes + len(chunk)
    assert await snapshot(store) == seeded


async def test_a_stricter_starlette_body_limit_in_front_gives_the_same_json_413(
    auth: FakeAuth, store: Store, acme: Users
) -> None:
    """A host's `Mount(..., max_body_size=)` is honoured, and answered in our JSON shape."""
    app = Starlette(
        routes=[
            Mount(
                URL.rstrip("/"),
                app=PlatformMetadataApp(auth=auth, store=store),
                max_body_size=1024,
            )
        ]
    )

    async def chunks() -> Any:
        for _ in range(4):
            yield b" " * 512

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        response = await client.patch(ACME, content=chunks(), headers=json_headers(acme["john"]))
    assert_refused(
        response,
        413,
        {
            "detail": "Request body is larger than the limit of 1024 bytes.",
            "limit": "max_body_bytes",
            "value": 1024,
        },
    )
    assert (await store.get("acme-corp", "john_doe")).version == 0


# --- stored document size -------------------------------------------------------------------

DOCUMENT_TOO_LARGE = {
    "detail": "Stored metadata would be larger than the limit of 65536 bytes.",
    "limit": "max_document_bytes",
    "value": 65536,
}


def pad_to(existing: dict[str, Any], size: int) -> dict[str, Any]:
    """A PATCH `metadata` that makes `existing` exactly `size` bytes of compact JSON."""
    merged = {**existing, "pad": ""}
    room = size - len(body_of(merged))
    return {"pad": "é" * (room // 2) + "x" * (room % 2)}  # two-byte characters count as bytes


async def test_patch_just_over_the_document_cap_is_413_and_just_under_is_200(
    client: httpx.AsyncClient, acme: Users, store: Store, seeded: list[tuple[str, int]]
) -> None:
    """max_document_bytes is measured on the merged document as stored, in UTF-8 bytes."""
    existing = {"theme": "dark"}
    over = pad_to(existing, LIMITS.max_document_bytes + 1)
    response = await client.patch(ACME, json={"metadata": over}, headers=acme["john"])
    assert_refused(response, 413, DOCUMENT_TOO_LARGE)
    assert await snapshot(store) == seeded

    exact = pad_to(existing, LIMITS.max_document_bytes)
    response = await client.patch(ACME, json={"metadata": exact}, headers=acme["john"])
    assert response.status_code == 200, response.text
    stored = await store.get("acme-corp", "john_doe")
    assert len(stored.metadata_json.encode()) == LIMITS.max_document_bytes
    assert stored.metadata == {**existing, **exact}


async def test_put_over_the_document_cap_is_413_and_unchanged(
    client: httpx.AsyncClient, acme: Users, store: Store, seeded: list[tuple[str, int]]
) -> None:
    metadata = pad_to({}, LIMITS.max_document_bytes + 1)
    response = await client.put(ACME, json={"metadata": metadata}, headers=acme["john"])
    assert_refused(response, 413, DOCUMENT_TOO_LARGE)
    assert await snapshot(store) == seeded


# --- query parameters ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("platform_key=acme-corp&username=a&username=b", "username query parameter must be given only once"),
        ("platform_key=acme-corp&platform_key=other", "platform_key query parameter must be given only once"),
        ("platform_key=&platform_key=acme-corp", "platform_key query parameter must be given only once"),
        ("platform_key=", "platform_key query parameter is required"),
        ("platform_key", "platform_key query parameter is required"),
        ("PLATFORM_KEY=acme-corp", "platform_key query parameter is required"),
        ("platform_key=acme-corp&username=", "username query parameter may not be empty"),
        ("platform_key=" + "a" * 257, "platform_key query parameter is longer than 256 characters"),
        (
            "platform_key=acme-corp&username=" + "%C3%A9" * 257,
            "username query parameter is longer than 256 characters",
        ),
        ("platform_key=acme-corp%00", "platform_key query parameter may not contain control characters"),
        ("platform_key=acme-corp&username=jane%00", "username query parameter may not contain control characters"),
        ("platform_key=acme-corp&username=jane%0A", "username query parameter may not contain control characters"),
        ("platform_key=acme-corp&username=jane%FF", "username query parameter must be valid UTF-8"),
        ("platform_key=acme%C0%AFcorp", "platform_key query parameter must be valid UTF-8"),
    ],
)
@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_bad_query_parameters_are_400_with_a_clear_error(
    client: httpx.AsyncClient,
    acme: Users,
    store: Store,
    seeded: list[tuple[str, int]],
    query: str,
    expected: str,
    method: str,
) -> None:
    """Repeated, empty, over-long, control-character and non-UTF-8 values never reach a record."""
    response = await client.request(
        method, URL + "?" + query, json={"metadata": {"x": 1}}, headers=acme["admin"]
    )
    assert_refused(response, 400, {"error": expected})
    assert await snapshot(store) == seeded


async def test_query_values_at_the_length_limit_are_looked_up(
    client: httpx.AsyncClient, acme: Users
) -> None:
    response = await client.get(URL + "?platform_key=" + "a" * 256, headers=acme["john"])
    assert_refused(response, 404, {"error": "Platform not found"})


LOOKALIKES = [
    "JANE",
    "Jane",
    " jane",
    "jane ",
    "jane%20",
    "jan%C3%A9",  # é
    "%D1%98ane",  # Cyrillic je
    "%EF%BD%8Aane",  # fullwidth j
    "jane%E2%80%8B",  # zero-width space
    "jane%C2%A0",  # no-break space
    "jane%EF%BB%BF",  # BOM
]


@pytest.mark.parametrize("username", LOOKALIKES)
async def test_lookalike_usernames_never_reach_another_users_record(
    client: httpx.AsyncClient,
    acme: Users,
    store: Store,
    seeded: list[tuple[str, int]],
    username: str,
) -> None:
    """Comparison is exact: case, Unicode look-alikes and whitespace name nobody on the platform."""
    url = ACME + "&username=" + username.replace(" ", "%20")
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        as_admin = await client.request(
            method, url, json={"metadata": {"x": 1}}, headers=acme["admin"]
        )
        assert_refused(as_admin, 404, {"error": "User not found"})
        as_john = await client.request(method, url, json={"metadata": {"x": 1}}, headers=acme["john"])
        assert_refused(as_john, 403, {"error": "Only tenant admins can access other users' metadata"})
    assert await snapshot(store) == seeded


@pytest.mark.parametrize("platform_key", ["ACME-CORP", "acme-corp%20", "acme%E2%80%90corp", "acme-corp/"])
async def test_lookalike_platform_keys_are_unknown_platforms(
    client: httpx.AsyncClient,
    acme: Users,
    store: Store,
    seeded: list[tuple[str, int]],
    platform_key: str,
) -> None:
    response = await client.patch(
        URL + "?platform_key=" + platform_key, json={"metadata": {"x": 1}}, headers=acme["john"]
    )
    assert_refused(response, 404, {"error": "Platform not found"})
    assert await snapshot(store) == seeded


async def test_a_host_matching_users_loosely_still_gets_exact_records_from_the_store(
    client: httpx.AsyncClient,
    auth: FakeAuth,
    acme: Users,
    store: Store,
    seeded: list[tuple[str, int]],
) -> None:
    """Even if a host's backend calls `JANE` a member, the store keys on the exact string."""

    async def loose_access(identity: Identity, platform_key: str, target: str | None) -> PlatformAccess:
        return PlatformAccess(platform_exists=True, is_member=True, is_admin=True, target_is_member=True)

    auth.access = loose_access  # type: ignore[method-assign]
    response = await client.put(
        ACME + "&username=JANE", json={"metadata": {"owned": True}}, headers=acme["admin"]
    )
    assert response.status_code == 200
    assert response.json()["username"] == "JANE"
    jane = await store.get("acme-corp", "jane")
    assert (jane.metadata_json, jane.version) == seeded[1]
    response = await client.get(ACME + "&username=jane", headers=acme["admin"])
    assert response.json()["metadata"] == {"theme": "light"}


# --- unexpected failures: generic 500, request id, nothing leaked ----------------------------

SECRET = "tok-john_doe"


class ExplodingStore:
    """A store whose every call fails the way a broken driver might: with secrets in the message."""

    async def _fail(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(
            f"SELECT metadata FROM platform_metadata WHERE token = '{SECRET}' -- password=hunter2"
        )

    get = update = _fail


@pytest.mark.parametrize("method", ["GET", "HEAD", "PATCH", "PUT", "DELETE"])
async def test_unexpected_exception_is_a_generic_500_with_request_id_and_no_token_in_logs(
    auth: FakeAuth, acme: Users, caplog: pytest.LogCaptureFixture, method: str
) -> None:
    """No traceback, SQL or token in the body; the log has the request id, and no token."""
    app = Starlette(
        routes=[Mount(URL.rstrip("/"), app=PlatformMetadataApp(auth=auth, store=ExplodingStore()))]
    )
    caplog.set_level(logging.DEBUG)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        response = await client.request(
            method, ACME, json={"metadata": {"a": 1}}, headers=acme["john"]
        )
    assert response.status_code == 500
    request_id = response.headers["x-request-id"]
    assert len(request_id) == 32 and int(request_id, 16) >= 0
    if method != "HEAD":
        assert_refused(response, 500, {"detail": "A server error occurred.", "request_id": request_id})
    errors = [r for r in caplog.records if r.name == "starlette_platform_metadata"]
    assert len(errors) == 1 and errors[0].levelno == logging.ERROR
    logged = caplog.text
    assert request_id in logged
    assert "RuntimeError" in logged and "Traceback" in logged
    assert SECRET not in logged
    assert "[redacted]" in logged


async def test_auth_backend_crash_is_a_generic_500_without_the_token_in_logs(
    auth: FakeAuth, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, store: Store
) -> None:
    """A backend that blows up quoting the credentials: 500, and the token is cut from the log."""

    async def crash(conn: Any) -> Identity | None:
        raise KeyError(conn.headers["authorization"])

    auth.authenticate = crash  # type: ignore[method-assign]
    response = await client.get(ACME, headers={"Authorization": "Token s3cr3t-value"})
    assert response.status_code == 500
    request_id = response.headers["x-request-id"]
    assert_refused(response, 500, {"detail": "A server error occurred.", "request_id": request_id})
    assert request_id in caplog.text
    assert "s3cr3t-value" not in caplog.text
