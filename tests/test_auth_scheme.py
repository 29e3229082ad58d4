"""The auth scheme belongs to the backend: its 401 challenge and its OpenAPI security scheme."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationError, SimpleUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection
from starlette.routing import Mount
from starlette.types import ASGIApp

from starlette_platform_metadata import (
    Identity,
    MemoryStore,
    PlatformAccess,
    PlatformMetadataApp,
    PlatformMetadataMiddleware,
    StarletteUserBackend,
)
from starlette_platform_metadata.auth import TOKEN_SECURITY_SCHEMES

from .conftest import URL, FakeAuth
from .test_readme import README, readme_example

pytestmark = pytest.mark.anyio

NOT_PROVIDED = {"detail": "Authentication credentials were not provided."}
MARKER = "<!-- tested: tests/test_auth_scheme.py runs this block after the one above -->"
JOHN_KEY = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"


def readme_bearer_example() -> str:
    text = README.read_text()
    match = re.search(r"```python\n(.*?)```", text[text.index(MARKER) :], re.S)
    assert match is not None
    return match.group(1)


def client_for(app: ASGIApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


def mounted(auth: Any) -> Starlette:
    return Starlette(
        routes=[Mount(URL.rstrip("/"), app=PlatformMetadataApp(auth=auth, store=MemoryStore()))]
    )


async def openapi_document(app: ASGIApp, url: str = URL + "openapi.json") -> Any:
    async with client_for(app) as client:
        response = await client.get(url)
    assert response.status_code == 200
    return response.json()


def declared_challenges(document: Any) -> list[str]:
    header = document["components"]["responses"]["Unauthorized"]["headers"]["WWW-Authenticate"]
    enum: list[str] = header["schema"]["enum"]
    return enum


@pytest.fixture
async def readme_bearer_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Starlette]:
    monkeypatch.chdir(tmp_path)  # the example's SQLite file lands in a temporary folder
    namespace: dict[str, Any] = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)
    exec(compile(readme_bearer_example(), "README.md", "exec"), namespace)
    app: Starlette = namespace["app"]
    async with app.router.lifespan_context(app):
        yield app


async def test_readme_bearer_backend_challenges_with_bearer(readme_bearer_app: Starlette) -> None:
    """Without credentials, with a `Token` header, or with a bad Bearer token: the contract's
    401 bodies, each with `WWW-Authenticate: Bearer`."""
    url = URL + "?platform_key=acme-corp"
    async with client_for(readme_bearer_app) as client:
        for headers, body in [
            ({}, NOT_PROVIDED),
            ({"Authorization": f"Token {JOHN_KEY}"}, NOT_PROVIDED),
            ({"Authorization": "Bearer wrong"}, {"detail": "Invalid token."}),
            (
                {"Authorization": "Bearer"},
                {"detail": "Invalid token header. No credentials provided."},
            ),
        ]:
            response = await client.get(url, headers=headers)
            assert response.status_code == 401, headers
            assert response.json() == body
            assert response.headers["www-authenticate"] == "Bearer"


async def test_readme_bearer_backend_reads_and_writes_metadata(
    readme_bearer_app: Starlette,
) -> None:
    """A good Bearer token reaches the caller's own metadata."""
    url = URL + "?platform_key=acme-corp"
    john = {"Authorization": f"Bearer {JOHN_KEY}"}
    async with client_for(readme_bearer_app) as client:
        response = await client.patch(url, json={"metadata": {"theme": "dark"}}, headers=john)
        assert response.status_code == 200
        response = await client.get(url, headers=john)
        assert response.status_code == 200
        assert response.json()["metadata"] == {"theme": "dark"}
        assert response.json()["username"] == "john_doe"


async def test_readme_bearer_backend_documents_the_bearer_scheme(
    readme_bearer_app: Starlette,
) -> None:
    """The served document declares HTTP bearer authentication, and no `Token` apiKey."""
    document = await openapi_document(readme_bearer_app)
    assert document["components"]["securitySchemes"] == {
        "BearerAuth": {"type": "http", "scheme": "bearer"}
    }
    assert document["security"] == [{"BearerAuth": []}]
    assert declared_challenges(document) == ["Bearer"]


async def test_a_backend_naming_no_scheme_is_drf_token_auth() -> None:
    """A backend without the optional attributes answers `WWW-Authenticate: Token` and
    documents `TokenAuth`, as the contract requires."""
    auth = FakeAuth()
    app = mounted(auth)
    async with client_for(app) as client:
        for headers in ({}, {"Authorization": "Token nope"}):
            response = await client.get(URL + "?platform_key=acme-corp", headers=headers)
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Token"
    document = await openapi_document(app)
    assert document["components"]["securitySchemes"] == TOKEN_SECURITY_SCHEMES
    assert document["security"] == [{"TokenAuth": []}]
    assert declared_challenges(document) == ["Token"]


class CookieAuth(FakeAuth):
    """A session-cookie backend: its own challenge and its own OpenAPI scheme."""

    www_authenticate = 'Session realm="acme"'
    openapi_security_schemes = {
        "SessionCookie": {"type": "apiKey", "in": "cookie", "name": "session"}
    }

    async def authenticate(self, conn: HTTPConnection) -> Identity | None:
        session = conn.cookies.get("session")
        return None if session is None else Identity(session)


async def test_a_backend_may_name_its_openapi_schemes_and_challenge_parameters() -> None:
    """`openapi_security_schemes` is taken as given; the challenge is sent verbatim."""
    app = mounted(CookieAuth())
    async with client_for(app) as client:
        response = await client.get(URL + "?platform_key=acme-corp")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Session realm="acme"'
    document = await openapi_document(app)
    assert document["components"]["securitySchemes"] == CookieAuth.openapi_security_schemes
    assert document["security"] == [{"SessionCookie": []}]
    assert declared_challenges(document) == ['Session realm="acme"']


async def test_the_middleware_documents_the_backends_scheme() -> None:
    """`PlatformMetadataMiddleware` serves the backend's scheme too."""

    async def inner(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
        raise AssertionError("the endpoint's paths never reach the inner app")

    class Bearer(FakeAuth):
        www_authenticate = "Bearer"

    app = PlatformMetadataMiddleware(inner, auth=Bearer(), store=MemoryStore())
    async with client_for(app) as client:
        response = await client.get(URL + "?platform_key=acme-corp")
    assert response.headers["www-authenticate"] == "Bearer"
    document = await openapi_document(app)
    assert set(document["components"]["securitySchemes"]) == {"BearerAuth"}


@pytest.mark.parametrize("challenge", ["", " Bearer", "Bearer\r\nX-Injected: 1", "Bearer\x00", 7])
def test_an_invalid_challenge_is_refused_when_the_app_is_built(challenge: object) -> None:
    """A challenge that is not a valid header value fails at construction, not per request."""

    class Broken(FakeAuth):
        www_authenticate = challenge

    with pytest.raises(ValueError, match="www_authenticate"):
        PlatformMetadataApp(auth=Broken(), store=MemoryStore())


# --- StarletteUserBackend ---------------------------------------------------------------------


class BearerUsers:
    """A host's Starlette backend: `Authorization: Bearer <username>`; `Bearer bad` is wrong."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        scheme, _, name = conn.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer":
            return None
        if name == "bad":
            raise AuthenticationError("Session expired.")
        return AuthCredentials(["authenticated"]), SimpleUser(name)


async def member(identity: Identity, platform_key: str, target: str | None) -> PlatformAccess:
    return PlatformAccess(platform_exists=True, is_member=True)


def starlette_host(on_error: Callable[[StarletteUserBackend], Any]) -> Starlette:
    backend = StarletteUserBackend(member, www_authenticate="Bearer")
    return Starlette(
        routes=[
            Mount(URL.rstrip("/"), app=PlatformMetadataApp(auth=backend, store=MemoryStore()))
        ],
        middleware=[
            Middleware(AuthenticationMiddleware, backend=BearerUsers(), on_error=on_error(backend))
        ],
    )


async def test_starlette_user_backend_takes_a_scheme() -> None:
    """`StarletteUserBackend(www_authenticate=...)`: its 401s, those its `on_auth_error`
    answers for the middleware included, carry that challenge, and the document says it."""
    app = starlette_host(lambda backend: backend.on_auth_error)
    url = URL + "?platform_key=acme-corp"
    async with client_for(app) as client:
        response = await client.get(url)
        assert (response.status_code, response.json()) == (401, NOT_PROVIDED)
        assert response.headers["www-authenticate"] == "Bearer"
        response = await client.get(url, headers={"Authorization": "Bearer bad"})
        assert (response.status_code, response.json()) == (401, {"detail": "Session expired."})
        assert response.headers["www-authenticate"] == "Bearer"
        response = await client.get(url, headers={"Authorization": "Bearer john_doe"})
        assert response.status_code == 200
    document = await openapi_document(app)
    assert document["components"]["securitySchemes"] == {
        "BearerAuth": {"type": "http", "scheme": "bearer"}
    }
