"""The pure-ASGI middleware serves the endpoint in front of any ASGI app, and nothing else."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

from starlette_platform_metadata import MemoryStore, PlatformMetadataMiddleware

from .conftest import URL, FakeAuth

pytestmark = pytest.mark.anyio


class BareApp:
    """A plain ASGI callable that records every scope it is given."""

    def __init__(self) -> None:
        self.scopes: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scopes.append(scope)
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": "inner"})
            await send({"type": "websocket.close"})
        else:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"inner:" + scope["path"].encode()})


def wrap(inner: Any, auth: FakeAuth, **kwargs: Any) -> PlatformMetadataMiddleware:
    return PlatformMetadataMiddleware(inner, auth=auth, store=MemoryStore(), **kwargs)


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def test_serves_the_endpoint_in_front_of_a_bare_asgi_app() -> None:
    """Requests to the path (and its OpenAPI document) reach the endpoint; the rest the inner app."""
    auth = FakeAuth()
    john = auth.add("acme-corp", "john_doe")
    inner = BareApp()
    async with client_for(wrap(inner, auth)) as client:
        response = await client.patch(
            URL + "?platform_key=acme-corp", json={"metadata": {"a": 1}}, headers=john
        )
        assert response.status_code == 200 and response.json()["metadata"] == {"a": 1}
        response = await client.get(URL.rstrip("/") + "?platform_key=acme-corp", headers=john)
        assert response.json()["metadata"] == {"a": 1}
        assert inner.scopes == []
        response = await client.get(URL + "openapi.json")
        assert response.status_code == 200
        assert "/api/core/users/platform-metadata" in response.json()["servers"][0]["url"]
        for path in ("/", "/api/core/users/", URL + "more", "/api/core/users/platform-metadataX"):
            response = await client.get(path, headers=john)
            assert response.text == "inner:" + path
    assert len(inner.scopes) == 4


async def test_custom_path() -> None:
    """The path is configurable; the default one then belongs to the inner app."""
    auth = FakeAuth()
    john = auth.add("p", "john")
    async with client_for(wrap(BareApp(), auth, path="/prefs")) as client:
        assert (await client.get("/prefs?platform_key=p", headers=john)).status_code == 200
        assert (await client.get(URL + "?platform_key=p", headers=john)).text.startswith("inner:")


async def test_lifespan_and_websocket_pass_through_untouched() -> None:
    """Non-http scopes are the inner app's: its lifespan runs, its websockets answer."""
    inner = BareApp()
    app = wrap(inner, FakeAuth())
    for scope, incoming in (
        ({"type": "lifespan"}, [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]),
        ({"type": "websocket", "path": URL, "query_string": b"", "headers": []},
         [{"type": "websocket.connect"}]),
    ):
        queue = list(incoming)
        sent: list[Message] = []

        async def receive() -> Message:
            return queue.pop(0)

        async def send(message: Message) -> None:
            sent.append(message)

        await app(scope, receive, send)
        if scope["type"] == "lifespan":
            assert [m["type"] for m in sent] == [
                "lifespan.startup.complete",
                "lifespan.shutdown.complete",
            ]
        else:
            assert sent[1] == {"type": "websocket.send", "text": "inner"}
    assert [s["type"] for s in inner.scopes] == ["lifespan", "websocket"]


async def test_in_front_of_a_fastapi_app() -> None:
    """A FastAPI app keeps its own routes while the middleware serves the metadata path."""
    api = FastAPI()

    @api.get("/items/{item_id}")
    async def read_item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    auth = FakeAuth()
    john = auth.add("acme-corp", "john_doe")
    api.add_middleware(PlatformMetadataMiddleware, auth=auth, store=MemoryStore())
    async with client_for(api) as client:
        assert (await client.get("/items/3")).json() == {"item_id": 3}
        response = await client.put(
            URL + "?platform_key=acme-corp", json={"metadata": {"b": [1]}}, headers=john
        )
        assert response.status_code == 200
        response = await client.get(URL + "?platform_key=acme-corp")
        assert response.status_code == 401
        assert response.json() == {"detail": "Authentication credentials were not provided."}


async def test_respects_root_path() -> None:
    """Behind a proxy prefix (root_path), the path is matched below the prefix."""
    auth = FakeAuth()
    john = auth.add("p", "john")
    app = wrap(BareApp(), auth)
    messages: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        messages.append(message)

    scope: Scope = {
        "type": "http",
        "method": "GET",
        "path": "/prefix" + URL,
        "root_path": "/prefix",
        "query_string": b"platform_key=p",
        "headers": [(b"authorization", john["Authorization"].encode())],
    }
    await app(scope, receive, send)
    assert messages[0]["status"] == 200
    assert b'"username":"john"' in messages[1]["body"]


async def test_openapi_false_hands_the_document_path_to_the_inner_app() -> None:
    """With `openapi=False` the middleware serves no schema; the path is the inner app's."""
    auth = FakeAuth()
    john = auth.add("acme-corp", "john_doe")
    inner = BareApp()
    async with client_for(wrap(inner, auth, openapi=False)) as client:
        response = await client.get(URL + "openapi.json")
        assert response.text == "inner:" + URL + "openapi.json"
        response = await client.get(URL + "?platform_key=acme-corp", headers=john)
        assert response.status_code == 200


async def test_a_mounted_app_without_openapi_answers_its_path_404() -> None:
    """`PlatformMetadataApp(openapi=False)`: the document's path is a JSON 404."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from starlette_platform_metadata import PlatformMetadataApp

    auth = FakeAuth()
    app = Starlette(
        routes=[
            Mount(
                URL.rstrip("/"),
                app=PlatformMetadataApp(auth=auth, store=MemoryStore(), openapi=False),
            )
        ]
    )
    async with client_for(app) as client:
        response = await client.get(URL + "openapi.json")
        assert (response.status_code, response.json()) == (404, {"detail": "Not found."})


@pytest.mark.parametrize(
    "path",
    [
        "/api/core/users%2Fplatform-metadata/",
        "/api%2fcore/users/platform-metadata/",
        "/api/core/users/platform-metadata%2F",
    ],
)
async def test_a_path_with_an_encoded_slash_is_not_the_endpoint(path: str) -> None:
    """`%2F` is decoded by the server before routing; the middleware matches what the client
    sent, so such a request goes to the inner app, never to the endpoint."""
    auth = FakeAuth()
    john = auth.add("acme-corp", "john_doe")
    inner = BareApp()
    async with client_for(wrap(inner, auth)) as client:
        response = await client.patch(
            path + "?platform_key=acme-corp", json={"metadata": {"a": 1}}, headers=john
        )
        assert response.text.startswith("inner:")
        stored = await client.get(URL + "?platform_key=acme-corp", headers=john)
    assert stored.json()["metadata"] == {}


async def test_an_encoded_slash_in_the_query_is_just_a_value() -> None:
    """Only the path is checked: `platform_key=a%2Fb` names the platform `a/b`."""
    auth = FakeAuth()
    john = auth.add("a/b", "john_doe")
    async with client_for(wrap(BareApp(), auth)) as client:
        response = await client.get(URL + "?platform_key=a%2Fb", headers=john)
    assert (response.status_code, response.json()["platform_key"]) == (200, "a/b")


ORIGIN = "https://app.example.com"
PREFLIGHT = {
    "Origin": ORIGIN,
    "Access-Control-Request-Method": "PUT",
    "Access-Control-Request-Headers": "authorization, content-type, if-match",
}


async def test_cors_option_answers_preflights_before_authentication() -> None:
    """With `cors=`, a browser preflight (no credentials) to any of the endpoint's paths is
    200 with the CORS headers, and the real cross-origin request carries them; other paths,
    and the app behind, are untouched by it."""
    auth = FakeAuth()
    john = auth.add("acme-corp", "john_doe")
    inner = BareApp()
    app = wrap(inner, auth, cors={"allow_origins": [ORIGIN]})
    async with client_for(app) as client:
        for path in (URL, URL.rstrip("/"), URL + "policy/"):
            response = await client.options(path + "?platform_key=acme-corp", headers=PREFLIGHT)
            assert response.status_code == 200, path
            assert response.headers["access-control-allow-origin"] == ORIGIN
            assert "PUT" in response.headers["access-control-allow-methods"]
        response = await client.put(
            URL + "?platform_key=acme-corp",
            json={"metadata": {"a": 1}},
            headers={"Origin": ORIGIN, **john},
        )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == ORIGIN
        assert "ETag" in response.headers["access-control-expose-headers"]
        evil = {**PREFLIGHT, "Origin": "https://evil.example"}
        refused = await client.options(URL, headers=evil)
        assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
        response = await client.options("/elsewhere", headers=PREFLIGHT)
        assert response.text == "inner:/elsewhere"
    assert len(inner.scopes) == 1


async def test_cors_option_leaves_other_options_requests_to_the_endpoint() -> None:
    """An OPTIONS that is not a preflight (no `Origin`) is still the contract's: 401 without
    credentials, the description with them."""
    auth = FakeAuth()
    john = auth.add("acme-corp", "john_doe")
    async with client_for(wrap(BareApp(), auth, cors={"allow_origins": ["*"]})) as client:
        assert (await client.options(URL)).status_code == 401
        response = await client.options(URL, headers=john)
        assert response.status_code == 200
        assert response.headers["allow"] == "GET, PUT, PATCH, DELETE, HEAD, OPTIONS"


async def test_cors_middleware_added_before_the_metadata_middleware_never_sees_its_requests(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The wrong order: FastAPI runs the last added middleware first, so a `CORSMiddleware`
    added before ours sits behind it; the preflight reaches the endpoint and is a 401 with no
    CORS headers, which one warning in the log explains.  Added after ours, it answers."""
    from starlette.middleware.cors import CORSMiddleware

    auth = FakeAuth()
    john = auth.add("acme-corp", "john_doe")
    cors = {"allow_origins": [ORIGIN], "allow_methods": ["*"], "allow_headers": ["*"]}

    wrong = FastAPI()
    wrong.add_middleware(CORSMiddleware, **cors)
    wrong.add_middleware(PlatformMetadataMiddleware, auth=auth, store=MemoryStore())
    async with client_for(wrong) as client:
        for _ in range(2):
            response = await client.options(URL + "?platform_key=acme-corp", headers=PREFLIGHT)
            assert response.status_code == 401
            assert "access-control-allow-origin" not in response.headers
        response = await client.get(
            URL + "?platform_key=acme-corp", headers={"Origin": ORIGIN, **john}
        )
        assert "access-control-allow-origin" not in response.headers
    warnings = [r for r in caplog.records if r.name == "starlette_platform_metadata"]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"
    assert "cors=" in warnings[0].getMessage() and ORIGIN in warnings[0].getMessage()

    right = FastAPI()
    right.add_middleware(PlatformMetadataMiddleware, auth=auth, store=MemoryStore())
    right.add_middleware(CORSMiddleware, **cors)
    async with client_for(right) as client:
        response = await client.options(URL + "?platform_key=acme-corp", headers=PREFLIGHT)
        assert (response.status_code, response.headers["access-control-allow-origin"]) == (
            200,
            ORIGIN,
        )
        response = await client.get(
            URL + "?platform_key=acme-corp", headers={"Origin": ORIGIN, **john}
        )
        assert response.headers["access-control-allow-origin"] == ORIGIN


async def test_a_mounted_app_is_covered_by_the_hosts_cors_middleware() -> None:
    """A mounted `PlatformMetadataApp` needs no option: the host's `CORSMiddleware` runs
    before every route, so it answers the preflight and marks the real response."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.cors import CORSMiddleware
    from starlette.routing import Mount

    from starlette_platform_metadata import PlatformMetadataApp
    from starlette_platform_metadata.middleware import CORS_DEFAULTS

    auth = FakeAuth()
    john = auth.add("acme-corp", "john_doe")
    app = Starlette(
        routes=[Mount(URL.rstrip("/"), app=PlatformMetadataApp(auth=auth, store=MemoryStore()))],
        middleware=[Middleware(CORSMiddleware, allow_origins=[ORIGIN], **CORS_DEFAULTS)],
    )
    async with client_for(app) as client:
        response = await client.options(URL + "?platform_key=acme-corp", headers=PREFLIGHT)
        assert (response.status_code, response.headers["access-control-allow-origin"]) == (
            200,
            ORIGIN,
        )
        response = await client.get(
            URL + "?platform_key=acme-corp", headers={"Origin": ORIGIN, **john}
        )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == ORIGIN
