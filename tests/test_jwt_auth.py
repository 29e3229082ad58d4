"""`JWTAuthBackend` in front of the endpoint, with its keys from a real JWKS server: good
tokens pass, every attack is a 401 in the contract's shape with RFC 6750's challenge, and
the key cache refetches, rotates and survives an issuer outage as jwks.py says."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from starlette_platform_metadata import MemoryStore, PlatformMetadataApp
from starlette_platform_metadata.jwks import RemoteKeySet
from starlette_platform_metadata.jwt_auth import JWTAuthBackend, claim_access

from .conftest import URL
from .issuer import AUDIENCE, ISSUER, JWKSServer, SigningKey, claims, token, unsigned

pytestmark = pytest.mark.anyio

ACME = URL + "?platform_key=acme"
PLATFORMS = {"platforms": {"acme": "member"}}


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    return SigningKey("rsa-1")


@pytest.fixture(scope="module")
def ec_key() -> SigningKey:
    return SigningKey("ec-1", "ES256")


@pytest.fixture(scope="module")
def rotated_key() -> SigningKey:
    return SigningKey("rsa-2")


@pytest.fixture(scope="module")
def attacker_key() -> SigningKey:
    """The attacker's own key pair, published nowhere the backend reads."""
    return SigningKey("rsa-1")


@pytest.fixture
def jwks(rsa_key: SigningKey, ec_key: SigningKey) -> Iterator[JWKSServer]:
    with JWKSServer(rsa_key, ec_key).running() as server:
        yield server


def make_backend(url: str, **options: Any) -> JWTAuthBackend:
    given: dict[str, Any] = {
        "algorithms": ["RS256", "ES256"], "issuer": ISSUER, "audience": AUDIENCE, "leeway": 5,
        "min_refetch_interval": 0.3, "retry_interval": 0.3, **options,
    }  # fmt: skip
    return JWTAuthBackend(claim_access(), jwks_url=url, **given)


@pytest.fixture
def backend(jwks: JWKSServer) -> JWTAuthBackend:
    return make_backend(jwks.url)


@pytest.fixture
async def client(backend: JWTAuthBackend) -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(
        routes=[Mount(URL.rstrip("/"), app=PlatformMetadataApp(auth=backend, store=MemoryStore()))]
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as c:
        yield c
    await backend.aclose()


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def refused(response: httpx.Response, detail: str, error: str = "invalid_token") -> None:
    """A 401 in the contract's shape, with RFC 6750's challenge naming the same reason."""
    assert response.status_code == 401, response.text
    assert response.content == ('{"detail":"%s"}' % detail.replace('"', '\\"')).encode()
    assert response.headers["www-authenticate"] == (
        f'Bearer error="{error}", error_description="{detail.replace(chr(34), chr(39))}"'
    )


async def test_a_good_token_reads_with_the_claims_platforms(
    client: httpx.AsyncClient, rsa_key: SigningKey, ec_key: SigningKey
) -> None:
    """A token of the issuer, for the audience, signed by a published key: its `sub` is the
    caller and its `platforms` claim the access (RS256 and ES256 both allowed)."""
    for key in (rsa_key, ec_key):
        response = await client.get(ACME, headers=bearer(token(key, **PLATFORMS)))
        assert response.status_code == 200, response.text
        assert response.json()["username"] == "john_doe"
    other = await client.get(URL + "?platform_key=beta", headers=bearer(token(rsa_key, **PLATFORMS)))
    assert (other.status_code, other.json()) == (404, {"error": "Platform not found"})


async def test_no_credentials_or_another_scheme_is_not_provided_with_a_plain_bearer_challenge(
    client: httpx.AsyncClient,
) -> None:
    """RFC 6750 3.1: a request without a token gets no error attribute."""
    for headers in ({}, {"Authorization": "Token abc"}, {"Authorization": "Basic eDp5"}):
        response = await client.get(ACME, headers=headers)
        assert response.status_code == 401
        assert response.json() == {"detail": "Authentication credentials were not provided."}
        assert response.headers["www-authenticate"] == "Bearer"


async def test_a_malformed_bearer_header_is_invalid_request(client: httpx.AsyncClient) -> None:
    response = await client.get(ACME, headers={"Authorization": "Bearer a b"})
    refused(response, "Invalid token header. Token string should not contain spaces.",
            "invalid_request")  # fmt: skip
    response = await client.get(ACME, headers={"Authorization": "Bearer"})
    refused(response, "Invalid token header. No credentials provided.", "invalid_request")


def attacks(rsa: SigningKey, ec: SigningKey, attacker: SigningKey) -> dict[str, tuple[str, str]]:
    """Each forged or unfit token, and the detail it is refused with."""
    good = claims(**PLATFORMS)
    rs384 = rsa.variant(alg="RS384")
    return {
        "alg none": (unsigned({"alg": "none", "kid": rsa.kid}, good),
                     "Token is signed with an algorithm that is not allowed."),
        "alg None spelled otherwise": (unsigned({"alg": "None", "kid": rsa.kid}, good),
                                       "Token is signed with an algorithm that is not allowed."),
        "no alg": (unsigned({"kid": rsa.kid}, good),
                   "Token is signed with an algorithm that is not allowed."),
        "HS256 signed with the RSA public key": (
            jwt_hs256(rsa.public_pem(), good, rsa.kid),
            "Token is signed with an algorithm that is not allowed."),
        "RS384, outside the allow-list": (token(rs384, **PLATFORMS),
                                          "Token is signed with an algorithm that is not allowed."),
        "ES256 header on the RSA key": (
            token(ec, headers={"kid": rsa.kid}, **PLATFORMS), "Token is signed with an unknown key."),
        "expired": (token(rsa, exp=int(claims()["iat"]) - 60, **PLATFORMS), "Token has expired."),
        "not yet valid": (token(rsa, nbf=int(claims()["iat"]) + 600, **PLATFORMS),
                          "Token is not yet valid."),
        "issued in the future": (token(rsa, iat=int(claims()["iat"]) + 600, **PLATFORMS),
                                 "Token is not yet valid."),
        "wrong issuer": (token(rsa, iss="https://evil.test/", **PLATFORMS),
                         "Token has the wrong issuer."),
        "wrong audience": (token(rsa, aud="another-api", **PLATFORMS),
                           "Token has the wrong audience."),
        "no exp": (token(rsa, exp=None, **PLATFORMS), 'Token has no "exp" claim.'),
        "no aud": (token(rsa, aud=None, **PLATFORMS), 'Token has no "aud" claim.'),
        "empty sub": (token(rsa, sub="", **PLATFORMS), 'Token has an invalid "sub" claim.'),
        "signed by another key with the published kid": (
            token(attacker, **PLATFORMS), "Token signature is invalid."),
        "its own key in the jwk header": (
            token(attacker, headers={"jwk": attacker.jwk}, **PLATFORMS),
            "Token signature is invalid."),
        "tampered payload": (tampered(token(rsa, **PLATFORMS)), "Token signature is invalid."),
        "not a JWT": ("abc.def", "Token is malformed."),
        "garbage base64": ("!!!.???.***", "Token is malformed."),
    }  # fmt: skip


def jwt_hs256(secret: bytes, payload: dict[str, Any], kid: str) -> str:
    """HS256 over the public key's PEM, as the classic algorithm-confusion attack signs."""
    import hashlib
    import hmac
    import json

    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    b64 = jwt.utils.base64url_encode
    signing_input = b64(json.dumps(header).encode()) + b"." + b64(json.dumps(payload).encode())
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + b64(signature)).decode()


def tampered(value: str) -> str:
    header, payload, signature = value.split(".")
    decoded = jwt.utils.base64url_decode(payload)
    forged = decoded.replace(b'"member"', b'"admin"')
    assert forged != decoded
    return ".".join([header, jwt.utils.base64url_encode(forged).decode(), signature])


ATTACKS = [
    "alg none", "alg None spelled otherwise", "no alg", "HS256 signed with the RSA public key",
    "RS384, outside the allow-list", "ES256 header on the RSA key", "expired", "not yet valid",
    "issued in the future", "wrong issuer", "wrong audience", "no exp", "no aud", "empty sub",
    "signed by another key with the published kid", "its own key in the jwk header",
    "tampered payload", "not a JWT", "garbage base64",
]  # fmt: skip


@pytest.mark.parametrize("attack", ATTACKS)
async def test_every_attack_is_a_401_with_its_reason_and_no_stack_trace(
    client: httpx.AsyncClient,
    rsa_key: SigningKey,
    ec_key: SigningKey,
    attacker_key: SigningKey,
    attack: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    forged, detail = attacks(rsa_key, ec_key, attacker_key)[attack]
    with caplog.at_level(logging.WARNING):
        for method in ("GET", "PUT"):
            response = await client.request(
                method, ACME, headers=bearer(forged), json={"metadata": {"a": 1}}
            )
            refused(response, detail)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert (await client.get(ACME, headers=bearer(token(rsa_key, **PLATFORMS)))).json()[
        "metadata"
    ] == {}


async def test_a_jku_header_is_never_fetched(
    client: httpx.AsyncClient, attacker_key: SigningKey, jwks: JWKSServer
) -> None:
    """A token naming its own key set (`jku`, `x5u`) is checked against the configured keys
    only: the URL it names is never asked."""
    with JWKSServer(attacker_key).running() as evil:
        headers = {"jku": evil.url, "x5u": evil.url, "kid": "evil"}
        response = await client.get(ACME, headers=bearer(token(attacker_key, headers=headers)))
        refused(response, "Token is signed with an unknown key.")
        assert evil.hits == 0


async def test_leeway_forgives_small_clock_skew(client: httpx.AsyncClient, rsa_key: SigningKey) -> None:
    """Within the configured leeway (5 s here), `exp` just past and `nbf` just ahead pass."""
    now = int(claims()["iat"])
    for skewed in ({"exp": now - 2}, {"nbf": now + 2, "iat": now + 2}):
        response = await client.get(ACME, headers=bearer(token(rsa_key, **skewed, **PLATFORMS)))
        assert response.status_code == 200, (skewed, response.text)


async def test_an_unknown_kid_refetches_once_then_is_refused(
    client: httpx.AsyncClient, rsa_key: SigningKey, attacker_key: SigningKey, jwks: JWKSServer
) -> None:
    """The first unknown kid costs one fetch; a flood right after costs none."""
    await client.get(ACME, headers=bearer(token(rsa_key, **PLATFORMS)))
    assert jwks.hits == 1
    await _after(0.35)  # past min_refetch_interval since that fetch
    stranger = attacker_key.variant(kid="unknown")
    refused(await client.get(ACME, headers=bearer(token(stranger))), "Token is signed with an unknown key.")
    assert jwks.hits == 2
    for n in range(20):
        response = await client.get(ACME, headers=bearer(token(stranger.variant(kid=f"u{n}"))))
        refused(response, "Token is signed with an unknown key.")
    assert jwks.hits == 2


async def test_a_rotated_key_is_picked_up_and_the_removed_one_refused(
    client: httpx.AsyncClient, rsa_key: SigningKey, rotated_key: SigningKey, jwks: JWKSServer
) -> None:
    """Without a restart: the issuer publishes a new key and drops the old one; the first
    token of the new key brings the new set, after which the old key's tokens are refused."""
    old = token(rsa_key, **PLATFORMS)
    assert (await client.get(ACME, headers=bearer(old))).status_code == 200
    jwks.keys = [rotated_key]
    await _after(0.35)  # past min_refetch_interval since the first fetch
    new = await client.get(ACME, headers=bearer(token(rotated_key, **PLATFORMS)))
    assert new.status_code == 200, new.text
    refused(await client.get(ACME, headers=bearer(old)), "Token is signed with an unknown key.")


async def test_keys_held_keep_working_while_the_jwks_is_down(
    client: httpx.AsyncClient, backend: JWTAuthBackend, rsa_key: SigningKey, jwks: JWKSServer
) -> None:
    """With keys cached, an unreachable JWKS changes nothing for tokens signed by them, even
    once the set is due for its refresh."""
    assert (await client.get(ACME, headers=bearer(token(rsa_key, **PLATFORMS)))).status_code == 200
    jwks.stop()
    assert isinstance(backend.key_source, RemoteKeySet)
    backend.key_source.refresh_interval = 0.0
    for _ in range(3):
        response = await client.get(ACME, headers=bearer(token(rsa_key, **PLATFORMS)))
        assert response.status_code == 200, response.text
        await _after(0.35)
    assert backend.key_source.fetches >= 2  # it did try


async def test_jwks_down_with_no_key_is_503_then_serves_once_it_is_back(
    client: httpx.AsyncClient, rsa_key: SigningKey, jwks: JWKSServer, caplog: pytest.LogCaptureFixture
) -> None:
    """No key was ever fetched and the issuer is unreachable: 503 with a JSON reason and
    Retry-After, not 401; once the issuer is back, requests succeed within the retry interval."""
    jwks.stop()
    good = bearer(token(rsa_key, **PLATFORMS))
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            response = await client.get(ACME, headers=good)
            assert response.status_code == 503
            assert response.json() == {
                "detail": "The token signing keys cannot be fetched and none are cached. "
                "Try again shortly."
            }
            assert response.headers["retry-after"] == "5"
    assert len([r for r in caplog.records if "cannot be fetched" in r.getMessage()]) == 1
    jwks.start()
    await _after(0.35)
    assert (await client.get(ACME, headers=good)).status_code == 200


async def _after(seconds: float) -> None:
    import anyio

    await anyio.sleep(seconds)


def test_configuration_refuses_none_unknown_and_hs_with_a_jwks_url() -> None:
    """The allow-list is the host's, checked when the backend is built."""
    for algorithms in (["none"], [], ["RS256", "none"], ["XS256"]):
        with pytest.raises(ValueError, match="algorithms"):
            make_backend("http://127.0.0.1:9/jwks.json", algorithms=algorithms)
    with pytest.raises(ValueError, match="HS"):
        make_backend("http://127.0.0.1:9/jwks.json", algorithms=["RS256", "HS256"])


async def test_hs256_with_a_given_secret_but_never_with_the_rsa_key(rsa_key: SigningKey) -> None:
    """Keys given directly may hold an HMAC secret (`oct`): HS256 then verifies with it, and
    only with it; a token that names the RSA key's kid with HS256 is refused."""
    secret = {"kty": "oct", "kid": "hmac", "k": jwt.utils.base64url_encode(b"s" * 32).decode()}
    backend = JWTAuthBackend(
        claim_access(), keys=[secret, rsa_key.jwk], algorithms=["RS256", "HS256"],
        issuer=ISSUER, audience=AUDIENCE,
    )  # fmt: skip
    good = jwt.encode(claims(), b"s" * 32, algorithm="HS256", headers={"kid": "hmac"})
    assert (await backend.verify(good))["sub"] == "john_doe"
    confused = jwt_hs256(rsa_key.public_pem(), claims(), rsa_key.kid)
    with pytest.raises(Exception) as refused_:
        await backend.verify(confused)
    assert getattr(refused_.value, "detail", None) == "Token is signed with an unknown key."


async def test_a_verified_token_is_kept_until_it_expires(
    rsa_key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same token string passes again without its signature checked, but never past
    its `exp` (+ leeway): then it is checked again, and refused."""
    backend = JWTAuthBackend(
        claim_access(), keys=[rsa_key.jwk], algorithms=["RS256"], issuer=ISSUER,
        audience=AUDIENCE, leeway=0,
    )  # fmt: skip
    decoded: list[str] = []
    decode = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        decoded.append(token)
        return decode(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    now = int(claims()["iat"])
    short = token(rsa_key, exp=now + 1)
    for _ in range(3):
        assert (await backend.verify(short))["sub"] == "john_doe"
    assert len(decoded) == 1
    await _after(2.1)  # `exp` was at most 2 s away
    with pytest.raises(Exception) as refused_:
        await backend.verify(short)
    assert getattr(refused_.value, "detail", None) == "Token has expired."
    assert len(decoded) == 2


async def test_claim_access_reaches_other_users_only_through_the_host(rsa_key: SigningKey) -> None:
    """An admin by its token's claim reaches another user only when the host says that user
    is a member (`target_is_member`); without that question answered, 404 User not found."""
    members = {("acme", "jane")}

    async def is_member(platform_key: str, username: str) -> bool:
        return (platform_key, username) in members

    admin = bearer(token(rsa_key, "boss", platforms={"acme": "admin"}))
    for access, expected in [(claim_access(target_is_member=is_member), 200), (claim_access(), 404)]:
        backend = JWTAuthBackend(access, keys=[rsa_key.jwk], algorithms=["RS256"],
                                 issuer=ISSUER, audience=AUDIENCE)  # fmt: skip
        app = PlatformMetadataApp(auth=backend, store=MemoryStore())
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=Starlette(routes=[Mount(URL.rstrip("/"), app=app)])),
            base_url="http://testserver",
        ) as client:
            response = await client.get(ACME + "&username=jane", headers=admin)
            assert response.status_code == expected, response.text
            stranger = await client.get(ACME + "&username=mallory", headers=admin)
            assert (stranger.status_code, stranger.json()) == (404, {"error": "User not found"})
