"""`RemoteKeySet` with its default intervals, on a simulated clock: what the issue asks of
the cache in wall-clock terms (a minute), checked without waiting a minute."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anyio
import httpx
import pytest

from starlette_platform_metadata.errors import AuthUnavailable
from starlette_platform_metadata.jwks import KeySet, RemoteKeySet

from .issuer import SigningKey

pytestmark = pytest.mark.anyio

MINUTE = 60.0


class Issuer:
    """A JWKS endpoint behind an httpx `MockTransport`, and a clock the test moves."""

    def __init__(self, *keys: SigningKey) -> None:
        self.keys = list(keys)
        self.up = True
        self.fetches = 0
        self.now = 1000.0

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.fetches += 1
        if not self.up:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json={"keys": [key.jwk for key in self.keys]})

    def key_set(self) -> RemoteKeySet:
        return RemoteKeySet(
            "https://issuer.test/jwks.json", ["RS256"],
            transport=httpx.MockTransport(self.handle), clock=lambda: self.now,
        )  # fmt: skip

    def seconds(self, step: float, total: float) -> Iterator[float]:
        start = self.now
        while self.now - start < total:
            self.now += step
            yield self.now - start


@pytest.fixture(scope="module")
def keys() -> tuple[SigningKey, SigningKey]:
    return SigningKey("k1"), SigningKey("k2")


async def test_a_flood_of_unknown_kids_costs_at_most_one_fetch_per_interval(
    keys: tuple[SigningKey, SigningKey],
) -> None:
    """A hundred unknown kids a second for a minute: 1 + 60/10 fetches, not 6000."""
    issuer = Issuer(keys[0])
    source = issuer.key_set()
    assert await source.key("k1", "RS256") is not None
    for _ in issuer.seconds(0.01, MINUTE):
        assert await source.key(f"unknown-{issuer.now}", "RS256") is None
    assert issuer.fetches <= 1 + MINUTE / source.min_refetch_interval


async def test_a_rotated_key_is_picked_up_within_a_minute_even_after_a_flood(
    keys: tuple[SigningKey, SigningKey],
) -> None:
    """An attacker's unknown kid just spent the refetch; the issuer's new key is still
    accepted within a minute of its first token, and the dropped key is refused by then."""
    old, new = keys
    issuer = Issuer(old)
    source = issuer.key_set()
    assert await source.key("k1", "RS256") is not None
    issuer.now += source.min_refetch_interval
    assert await source.key("attacker", "RS256") is None
    issuer.keys = [new]
    picked_up = None
    for elapsed in issuer.seconds(1.0, MINUTE):
        if await source.key("k2", "RS256") is not None:
            picked_up = elapsed
            break
    assert picked_up is not None and picked_up <= MINUTE
    assert await source.key("k1", "RS256") is None


async def test_an_issuer_down_then_back_serves_again_within_a_minute(
    keys: tuple[SigningKey, SigningKey],
) -> None:
    """No key held and the issuer down: `AuthUnavailable` (503), with at most one fetch per
    retry interval; once it is back, keys come within the retry interval."""
    issuer = Issuer(keys[0])
    issuer.up = False
    source = issuer.key_set()
    for _ in issuer.seconds(0.1, MINUTE):
        with pytest.raises(AuthUnavailable):
            await source.key("k1", "RS256")
    assert issuer.fetches <= 1 + MINUTE / source.retry_interval
    issuer.up = True
    for elapsed in issuer.seconds(0.1, MINUTE):
        try:
            assert await source.key("k1", "RS256") is not None
            break
        except AuthUnavailable:
            continue
    assert elapsed <= source.retry_interval + 0.2


async def test_held_keys_outlive_an_outage_and_a_due_refresh(
    keys: tuple[SigningKey, SigningKey],
) -> None:
    """Past the refresh interval with the issuer down, the key held still verifies."""
    issuer = Issuer(keys[0])
    source = issuer.key_set()
    assert await source.key("k1", "RS256") is not None
    issuer.up = False
    issuer.now += 2 * source.refresh_interval
    for _ in range(3):
        assert await source.key("k1", "RS256") is not None
        await anyio.sleep(0.01)  # the background fetch fails meanwhile
        issuer.now += source.retry_interval
    assert issuer.fetches >= 3


def test_a_key_set_prepares_only_allowed_signing_keys(keys: tuple[SigningKey, SigningKey]) -> None:
    """Encryption keys, other key types, an `alg` off the allow-list, symmetric keys from a
    URL and malformed members are left out; what remains verifies only its own algorithms."""
    rsa = keys[0].jwk
    members = [
        {**rsa, "kid": "enc", "use": "enc"},
        {**rsa, "kid": "rs512", "alg": "RS512"},
        {"kty": "oct", "kid": "secret", "k": "c2VjcmV0"},
        {"kty": "RSA", "kid": "broken", "n": "@@", "e": "AQAB"},
        "not a key",
        {**rsa, "kid": 7},
        rsa,
    ]
    published = KeySet({"keys": members}, ["RS256", "HS256"], symmetric=False)
    assert published.kids == {"k1"}
    assert published.find("k1", "RS256") is not None
    assert published.find("k1", "HS256") is None
    assert published.find(None, "RS256") is not None  # the only key, for a token without kid
    given = KeySet(json.loads(json.dumps({"keys": members})), ["RS256", "HS256"])
    assert given.kids == {"k1", "secret"} and given.find(None, "RS256") is None
