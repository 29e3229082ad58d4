"""The contract suite (test_contract.py) over the example host with JWT auth on: every caller
authenticates with `Authorization: Bearer <JWT>` whose `sub` is a host user, memberships and
admin rights come from the host's tables, and every test passes unchanged apart from the
scheme.

Changed, for the scheme only: the 401 table (a Bearer token is now read, so `Bearer abc` is
"malformed" with RFC 6750's challenge, while every `Token` row is byte for byte as before),
and the keyword and whitespace tests (said of `Bearer` instead of `Token`).  Left out: the
two tests of a Starlette `Mount` (its 307 redirect, its `%2F` check), since the example host
serves the endpoint with the middleware (test_example_host.py covers its paths).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from example_host import HostDB, create_app
from example_host.jwt_auth import JWTSettings
from starlette_platform_metadata import Store

from .conftest import URL
from .issuer import AUDIENCE, ISSUER, JWKSServer, SigningKey, token
from .test_contract import *

pytestmark = pytest.mark.anyio

# The two tests of a `Mount`, which the example host does not use (see above).
globals().pop("test_path_without_trailing_slash_is_served")
globals().pop("test_a_mounted_endpoint_refuses_a_path_with_an_encoded_slash")

Users = dict[str, dict[str, str]]
ACME = URL + "?platform_key=acme-corp"


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return SigningKey("contract-key")


@pytest.fixture(scope="module")
def issuer(signing_key: SigningKey) -> Iterator[JWKSServer]:
    with JWKSServer(signing_key).running() as server:
        yield server


def bearer(key: SigningKey, username: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(key, username)}"}


class HostUsers:
    """What the suite's `auth` fixture offers (`add`), on the host's tables: the user and
    its membership are created there (on a connection of their own, in a thread, since the
    suite calls `add` synchronously), and a JWT for it returned."""

    def __init__(self, database_url: str, key: SigningKey) -> None:
        self.database_url = database_url
        self.key = key

    def add(self, platform: str, username: str, *, admin: bool = False) -> dict[str, str]:
        async def create() -> None:
            async with HostDB(self.database_url) as db:
                await db.add_platform(platform)
                await db.add_user(username, platform, admin=admin)

        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, create()).result()
        return bearer(self.key, username)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'host.db'}"


@pytest.fixture
def auth(database_url: str, signing_key: SigningKey) -> HostUsers:
    return HostUsers(database_url, signing_key)


@pytest.fixture
def app(database_url: str, issuer: JWKSServer) -> Starlette:
    settings = JWTSettings(issuer.url, ISSUER, AUDIENCE, ("RS256",))
    return create_app(database_url, jwt=settings)


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as c:
            yield c


@pytest.fixture
def store(app: Starlette, client: httpx.AsyncClient) -> Store:
    stored: Store = app.state.store
    return stored


@pytest.fixture
async def acme(
    app: Starlette, client: httpx.AsyncClient, signing_key: SigningKey
) -> AsyncIterator[Users]:
    """As the suite's: acme-corp {john_doe, jane, acme_admin*}, other {eve, other_admin*}."""
    db: HostDB = app.state.db
    names = {"john": "john_doe", "jane": "jane", "admin": "acme_admin", "eve": "eve",
             "other_admin": "other_admin"}  # fmt: skip
    for platform, username, admin in [
        ("acme-corp", "john_doe", False), ("acme-corp", "jane", False),
        ("acme-corp", "acme_admin", True), ("other", "eve", False), ("other", "other_admin", True),
    ]:  # fmt: skip
        await db.add_platform(platform)
        await db.add_user(username, platform, admin=admin)
    yield {short: bearer(signing_key, name) for short, name in names.items()}


# --- the scheme: the suite's three authentication tests, said of Bearer ---------------------


MALFORMED = "Token is malformed."


@pytest.mark.parametrize(
    ("authorization", "detail", "challenge"),
    [
        (None, "Authentication credentials were not provided.", "Token"),
        ("Basic dXNlcjpwYXNz", "Authentication credentials were not provided.", "Token"),
        ("", "Authentication credentials were not provided.", "Token"),
        ("Token", "Invalid token header. No credentials provided.", "Token"),
        ("Token ", "Invalid token header. No credentials provided.", "Token"),
        ("Token a b", "Invalid token header. Token string should not contain spaces.", "Token"),
        ("Token nope", "Invalid token.", "Token"),
        ("Bearer abc", MALFORMED,
         f'Bearer error="invalid_token", error_description="{MALFORMED}"'),
        ("Bearer", "Invalid token header. No credentials provided.",
         'Bearer error="invalid_request", '
         'error_description="Invalid token header. No credentials provided."'),
    ],
)  # fmt: skip
@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE", "POST"])
async def test_unauthenticated_requests_get_drf_401_bodies(  # type: ignore[no-redef]
    client: httpx.AsyncClient,
    acme: Users,
    authorization: str | None,
    detail: str,
    challenge: str,
    method: str,
) -> None:
    """Every 401 carries the contract's body; `Token` keys and a request without credentials
    are answered byte for byte as without JWT, a bad Bearer token with RFC 6750's challenge."""
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await client.request(method, URL, headers=headers)
    assert response.status_code == 401
    assert response.content == ('{"detail":"%s"}' % detail).encode()
    assert response.headers["www-authenticate"] == challenge
    assert response.headers["content-type"] == "application/json"


async def test_token_keyword_is_case_insensitive(  # type: ignore[no-redef]
    client: httpx.AsyncClient, acme: Users
) -> None:
    """`bearer <jwt>` and `BEARER <jwt>` authenticate like `Bearer <jwt>` (RFC 6750)."""
    key = acme["john"]["Authorization"].split()[1]
    for keyword in ("bearer", "BEARER", "BeArEr"):
        response = await client.get(ACME, headers={"Authorization": f"{keyword} {key}"})
        assert response.status_code == 200


async def test_whitespace_around_the_key_is_ignored(  # type: ignore[no-redef]
    client: httpx.AsyncClient, acme: Users
) -> None:
    """As for `Token`: extra spaces or a tab around the JWT still authenticate."""
    key = acme["john"]["Authorization"].split()[1]
    response = await client.get(ACME, headers={"Authorization": f"Bearer   {key}\t"})
    assert response.status_code == 200
