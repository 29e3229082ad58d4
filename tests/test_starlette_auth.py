"""`StarletteUserBackend`: the endpoint behind a host's own Starlette `AuthenticationMiddleware`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.authentication import (
    AuthCredentials,
    AuthenticationError,
    BaseUser,
    SimpleUser,
)
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection
from starlette.routing import Mount

from starlette_platform_metadata import (
    Identity,
    MemoryStore,
    PlatformAccess,
    PlatformMetadataApp,
    StarletteUserBackend,
    changes,
    on_auth_error,
)

from .conftest import URL

pytestmark = pytest.mark.anyio

ACME = {"platform_key": "acme-corp"}
# (platform, username) -> is_admin
MEMBERS = {
    ("acme-corp", "john_doe"): False,
    ("acme-corp", "jane"): False,
    ("acme-corp", "acme_admin"): True,
    ("other", "other_admin"): True,
}


class SessionUser(SimpleUser):
    """A host's user class: the contract's username is its `handle`, not its display name."""

    def __init__(self, handle: str) -> None:
        super().__init__(f"{handle.title()} (display)")
        self.handle = handle


class HeaderBackend:
    """The host's own Starlette backend: `Authorization: Bearer <username>`; `Bearer bad`
    is a wrong credential."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        scheme, _, name = conn.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer":
            return None
        if name == "bad":
            raise AuthenticationError("Session expired.")
        return AuthCredentials(["authenticated"]), SessionUser(name)


seen_ids: list[object] = []


async def access(identity: Identity, platform_key: str, target: str | None) -> PlatformAccess:
    seen_ids.append(identity.id)
    if platform_key not in {p for p, _ in MEMBERS}:
        return PlatformAccess(platform_exists=False)
    role = MEMBERS.get((platform_key, identity.username))
    return PlatformAccess(
        platform_exists=True,
        is_member=role is not None,
        is_admin=bool(role),
        target_is_member=target is not None and (platform_key, target) in MEMBERS,
    )


def host_app(store: MemoryStore, *, with_middleware: bool = True) -> Starlette:
    backend = StarletteUserBackend(access, username=lambda user: user.handle)  # type: ignore[attr-defined]
    middleware = [
        Middleware(AuthenticationMiddleware, backend=HeaderBackend(), on_error=on_auth_error)
    ]
    return Starlette(
        routes=[Mount(URL.rstrip("/"), app=PlatformMetadataApp(auth=backend, store=store))],
        middleware=middleware if with_middleware else [],
    )


@pytest.fixture
async def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def client(store: MemoryStore) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=host_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {name}"}


async def test_an_anonymous_user_gets_the_contracts_not_provided_401(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get(URL, params=ACME)
    assert r.status_code == 401
    assert r.content == b'{"detail":"Authentication credentials were not provided."}'
    assert r.headers["www-authenticate"] == "Token"


async def test_bad_credentials_get_the_contracts_401_json_not_starlettes_plain_400(
    client: httpx.AsyncClient, store: MemoryStore
) -> None:
    r = await client.patch(URL, params=ACME, headers=bearer("bad"), json={"metadata": {"a": 1}})
    assert (r.status_code, r.content) == (401, b'{"detail":"Session expired."}')
    assert r.headers["content-type"] == "application/json"
    assert (await store.get("acme-corp", "bad")).version == 0


async def test_the_caller_is_request_user_named_by_the_hosts_username_function(
    client: httpx.AsyncClient,
) -> None:
    """The contract's username comes from the `username` callable; `access` gets the very
    `BaseUser` the host's middleware made."""
    seen_ids.clear()
    r = await client.patch(
        URL, params=ACME, headers=bearer("john_doe"), json={"metadata": {"a": 1}}
    )
    assert r.status_code == 200 and r.json()["username"] == "john_doe"
    assert isinstance(seen_ids[-1], SessionUser) and seen_ids[-1].handle == "john_doe"
    r = await client.get(URL, params=ACME | {"username": "john_doe"}, headers=bearer("acme_admin"))
    assert r.status_code == 200 and r.json()["metadata"] == {"a": 1}


async def test_tenant_isolation_holds_behind_starlette_auth(
    client: httpx.AsyncClient, store: MemoryStore
) -> None:
    """A member cannot reach another member; another platform's admin cannot either; an
    authenticated stranger is not a member.  Nothing refused is stored."""
    await store.update("acme-corp", "jane", changes.patch({"secret": 1}))
    admin_only = {"error": "Only tenant admins can access other users' metadata"}
    cases = [
        ("john_doe", ACME | {"username": "jane"}, 403, admin_only),
        ("other_admin", ACME | {"username": "jane"}, 403, admin_only),
        ("stranger", ACME, 403, {"error": "You are not a member of this platform"}),
    ]
    for caller, params, status, body in cases:
        for method in ("GET", "PATCH", "PUT", "DELETE"):
            r = await client.request(
                method, URL, params=params, headers=bearer(caller), json={"metadata": {"x": 1}}
            )
            assert (r.status_code, r.json()) == (status, body), (caller, method)
    assert (await store.get("acme-corp", "jane")).metadata == {"secret": 1}
    assert (await store.get("acme-corp", "stranger")).version == 0


async def test_without_authentication_middleware_the_endpoint_fails_loudly(
    store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A misconfiguration, not an anonymous caller: a generic 500 and a log line saying what
    is missing, never a silent 401 or someone else's data."""
    transport = httpx.ASGITransport(app=host_app(store, with_middleware=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        with caplog.at_level(logging.ERROR, logger="starlette_platform_metadata"):
            r = await c.get(URL, params=ACME, headers=bearer("john_doe"))
    assert r.status_code == 500
    assert r.json() == {
        "detail": "A server error occurred.",
        "request_id": r.headers["x-request-id"],
    }
    assert "AuthenticationMiddleware" in caplog.text
