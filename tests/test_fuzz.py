"""Fuzzing: the served OpenAPI document checked against the running endpoint, and random
bodies and headers that must never yield a 5xx nor change anything when refused.

Bounded for CI (about 50 examples per test). A long run is one command:

    FUZZ_EXAMPLES=5000 pytest tests/test_fuzz.py
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.specs.openapi.checks import negative_data_rejection
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import Mount

from starlette_platform_metadata import Limits, MemoryStore, PlatformMetadataApp, Store

from .conftest import URL, FakeAuth

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "50"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=EXAMPLES <= 50,  # the bounded CI run is reproducible; long runs explore
    database=None,
)

# --- schemathesis: responses conform to the document the app serves --------------------------

_auth = FakeAuth()
JOHN = _auth.add("acme-corp", "john_doe")
ADMIN = _auth.add("acme-corp", "acme_admin", admin=True)
_auth.add("acme-corp", "jane")
_auth.add("other", "eve")
_app = Starlette(
    routes=[Mount(URL.rstrip("/"), app=PlatformMetadataApp(auth=_auth, store=MemoryStore()))]
)
# A schema-valid request may still be refused for what JSON Schema cannot say: nesting depth,
# 64-bit integers (400), an `If-Match` that does not match (412), the stored size (413).
_CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "3xx", 400, 401, 403, 404, 412, 413]
            }
        }
    }
)
# The import's body (`POST /users/`): the generated string as the NDJSON text.
@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: Any, value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()


# A live-changes stream never ends on its own, and the ASGI transport waits for the whole
# response: its refusals are checked over real HTTP in tests/test_events.py instead.
schema = schemathesis.openapi.from_asgi(URL + "openapi.json", _app, config=_CONFIG).exclude(
    path="/events/"
)


@schema.parametrize()
@schema.given(
    caller=st.sampled_from([JOHN, ADMIN, {}]),
    known_platform=st.booleans(),
)
@FUZZ
def test_every_response_conforms_to_the_openapi_document(
    case: Any, caller: dict[str, str], known_platform: bool
) -> None:
    """No 5xx, and every status, header and body is the one the document describes."""
    excluded = []
    if known_platform and isinstance(case.query, dict):
        case.query["platform_key"] = "acme-corp"
    if caller or known_platform:
        # Both make a schema-violating case valid again, and unknown query parameters are
        # ignored (as DRF does), so "invalid data must be rejected" no longer applies.
        excluded.append(negative_data_rejection)
    # Real credentials go in as explicit headers; without them the generated (invalid) token
    # must be refused, which schemathesis checks too.
    case.call_and_validate(headers=caller or None, excluded_checks=excluded)


def test_openapi_document_names_the_mounted_path() -> None:
    """The server URL is where the app is mounted, so server + path is the contract's URL."""
    raw = schema.raw_schema
    assert raw["openapi"] == "3.1.0"
    assert raw["servers"] == [{"url": URL.rstrip("/")}]
    assert list(raw["paths"])[:6] == [
        "/", "/policy/", "/history/", "/restore/", "/events/", "/users/"
    ]
    assert set(raw["paths"]["/users/"]) >= {"get", "post"}
    assert set(raw["paths"]["/history/"]) >= {"get"} and set(raw["paths"]["/restore/"]) >= {"post"}
    assert set(raw["paths"]["/policy/"]) >= {"get", "put", "delete", "options"}
    assert set(raw["paths"]["/"]) >= {"get", "put", "patch", "delete", "options"}


# --- hypothesis: hostile bodies and headers over every store ----------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
HOSTILE_FRAGMENTS = [
    b"NaN", b"Infinity", b"-Infinity", b"1e400", b"9" * 30, b'"\\ud800"', b'"\\u0000"',
    b"\xff", b"\xed\xa0\x80", b"[" * 50, b"{" * 50, b'"a":1,"a":2', b"\x00", b"\\", b"}", b"]",
]


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """Well-formed PATCH/PUT bodies, the same with hostile bytes spliced in, or raw bytes."""
    kind = draw(st.sampled_from(["valid", "spliced", "raw"]))
    if kind == "raw":
        return draw(st.binary(max_size=200))
    body: dict[str, Any] = {}
    if draw(st.booleans()):
        body["metadata"] = draw(st.dictionaries(st.text(max_size=10), json_values, max_size=5))
    if draw(st.booleans()):
        body["delete_keys"] = draw(st.lists(st.text(max_size=10) | json_values, max_size=4))
    text = json.dumps(body, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    if kind == "spliced":
        at = draw(st.integers(min_value=0, max_value=len(text)))
        text = text[:at] + draw(st.sampled_from(HOSTILE_FRAGMENTS)) + text[at:]
    return text


header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=40,
)


@pytest.fixture
def limits() -> Limits:
    """Small caps, so random bodies reach the size limits too."""
    return Limits(max_body_bytes=400, max_document_bytes=300, max_depth=4, max_keys=8)


async def snapshot(store: Store) -> list[tuple[str, int]]:
    records = [await store.get("acme-corp", user) for user in ("john_doe", "jane")]
    return [(record.metadata_json, record.version) for record in records]


@pytest.mark.anyio
@FUZZ
@given(
    method=st.sampled_from(["PATCH", "PATCH", "PUT", "PUT", "DELETE", "GET", "POST"]),
    body=bodies(),
    content_type=st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain"])
    | header_text,
    if_match=st.none() | st.just("*") | st.just('"1"') | header_text,
    target=st.sampled_from([None, None, None, "jane", "JANE", "jane ", "john_doe"]),
    as_admin=st.booleans(),
)
async def test_random_bodies_and_headers_never_5xx_and_refusals_change_nothing(
    client: httpx.AsyncClient,
    acme: dict[str, dict[str, str]],
    store: Store,
    method: str,
    body: bytes,
    content_type: str,
    if_match: str | None,
    target: str | None,
    as_admin: bool,
) -> None:
    """Whatever arrives: a JSON answer below 500, and a refused request leaves the store as it was."""
    headers = {**acme["admin" if as_admin else "john"], "Content-Type": content_type}
    if if_match is not None:
        headers["If-Match"] = if_match
    url = URL + "?platform_key=acme-corp" + (f"&username={target}" if target else "")
    before = await snapshot(store)
    raw_headers = {name: value.encode("latin-1") for name, value in headers.items()}
    response = await client.request(method, url, content=body, headers=raw_headers)
    event(f"status {response.status_code}")  # shown with --hypothesis-show-statistics
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/json"
        json.loads(response.content)
        assert await snapshot(store) == before
