"""The example host speaking JWT: `sub` is a host user (deleted users refused), Token keys
keep working beside Bearer JWTs, and `serve --jwks-url ...` does it in its workers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from example_host import HostDB, create_app
from example_host.jwt_auth import JWTSettings

from .conftest import URL
from .hosts import served, tokens
from .issuer import AUDIENCE, ISSUER, JWKSServer, SigningKey, token
from .test_example_host import database_url, run_cli  # noqa: F401  (the fixture, on every database)

pytestmark = pytest.mark.anyio

ACME = URL + "?platform_key=acme-corp"


@pytest.fixture(scope="module")
def keys() -> tuple[SigningKey, SigningKey]:
    return SigningKey("host-rsa"), SigningKey("host-ec", "ES256")


@pytest.fixture(scope="module")
def issuer(keys: tuple[SigningKey, SigningKey]) -> Iterator[JWKSServer]:
    with JWKSServer(*keys).running() as server:
        yield server


def bearer(key: SigningKey, username: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(key, username)}"}


@pytest.fixture
async def host(
    database_url: str, issuer: JWKSServer  # noqa: F811
) -> AsyncIterator[tuple[HostDB, httpx.AsyncClient, str]]:
    """The host with JWT auth on, on SQLite and PostgreSQL; john_doe a member of acme-corp."""
    app = create_app(database_url, jwt=JWTSettings(issuer.url, ISSUER, AUDIENCE))
    async with app.router.lifespan_context(app):
        db: HostDB = app.state.db
        await db.add_platform("acme-corp")
        key = await db.add_user("john_doe", "acme-corp")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as client:
            yield db, client, key


async def test_token_and_bearer_name_the_same_host_user(
    host: tuple[HostDB, httpx.AsyncClient, str], keys: tuple[SigningKey, SigningKey]
) -> None:
    """A write with the user's Token key is read back with a JWT for its `sub`."""
    _, client, key = host
    written = await client.patch(
        ACME, json={"metadata": {"a": 1}}, headers={"Authorization": f"Token {key}"}
    )
    assert written.status_code == 200, written.text
    read = await client.get(ACME, headers=bearer(keys[0], "john_doe"))
    assert read.status_code == 200 and read.json()["metadata"] == {"a": 1}


async def test_a_token_for_a_user_the_host_deleted_or_never_had_is_401(
    host: tuple[HostDB, httpx.AsyncClient, str], keys: tuple[SigningKey, SigningKey]
) -> None:
    """The issuer's signature is not enough: `sub` must be a user of the host now (a user
    deleted by hand, as another process would: on PostgreSQL the host hears of it by NOTIFY,
    milliseconds later, generation.py)."""
    db, client, _ = host
    good = bearer(keys[0], "john_doe")
    assert (await client.get(ACME, headers=good)).status_code == 200
    await (await db.connection()).fetch("DELETE FROM users WHERE username = $1", "john_doe")
    for _ in range(100):
        if (await client.get(ACME, headers=good)).status_code != 200:
            break
        await anyio.sleep(0.02)
    for headers in (good, bearer(keys[0], "nobody")):
        response = await client.get(ACME, headers=headers)
        assert response.status_code == 401
        assert response.json() == {"detail": "User inactive or deleted."}
        assert response.headers["www-authenticate"] == (
            'Bearer error="invalid_token", error_description="User inactive or deleted."'
        )


def test_serve_checks_the_jwt_flags_before_serving(tmp_path: Path) -> None:
    """Flags that go together, and an allow-list without `none` or HMAC, or `serve` exits 2."""
    url = f"sqlite:///{tmp_path / 'host.db'}"
    for flags, message in [
        (["--jwks-url", "http://127.0.0.1:9/j"], "go together"),
        (["--jwks-url", "http://127.0.0.1:9/j", "--jwt-issuer", "i", "--jwt-audience", "a",
          "--jwt-algorithms", "none"], "--jwt-algorithms"),
        (["--jwks-url", "http://127.0.0.1:9/j", "--jwt-issuer", "i", "--jwt-audience", "a",
          "--jwt-algorithms", "RS256,HS256"], "HS"),
    ]:  # fmt: skip
        result = run_cli("serve", "--database", url, *flags, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr
    assert not (tmp_path / "host.db").exists()


@pytest.mark.slow
def test_served_with_jwt_flags_accepts_bearer_and_token_keys(
    tmp_path: Path, issuer: JWKSServer, keys: tuple[SigningKey, SigningKey]
) -> None:
    """`serve --jwks-url --jwt-issuer --jwt-audience --jwt-algorithms RS256,ES256 --workers 2`
    (the workers build the app from the variables `serve` exported): demo users read with
    JWTs of either algorithm and with their printed Token keys, over fresh connections; a
    request without credentials keeps the contract's answer; a bad JWT is a Bearer 401."""
    rsa, ec = keys
    flags = ["--jwks-url", issuer.url, "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE,
             "--jwt-algorithms", "RS256,ES256", "--workers", "2"]  # fmt: skip
    with served(f"sqlite:///{tmp_path / 'host.db'}", tmp_path, *flags) as (base, _, printed):
        demo = tokens(printed)
        for headers in [bearer(rsa, "john_doe"), bearer(ec, "john_doe"),
                        {"Authorization": f"Token {demo['john_doe']}"}] * 2:  # fmt: skip
            response = httpx.get(base + ACME, headers=headers, timeout=10)
            assert response.status_code == 200, response.text
            assert response.json()["username"] == "john_doe"
        with httpx.Client(base_url=base, timeout=10) as http:
            admin = http.get(ACME + "&username=john_doe", headers=bearer(ec, "acme_admin"))
            assert admin.status_code == 200
            member = http.get(ACME + "&username=acme_admin", headers=bearer(rsa, "john_doe"))
            assert member.status_code == 403
            anonymous = http.get(ACME)
            assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Token"
            assert anonymous.content == b'{"detail":"Authentication credentials were not provided."}'
            forged = http.get(ACME, headers=bearer(rsa.variant(alg="RS384"), "john_doe"))
            assert forged.status_code == 401
            assert forged.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
