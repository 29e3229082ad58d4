"""Where a `JWTAuthBackend` finds the key of a token: a JSON Web Key Set, given or fetched.

A key is found by the token's `kid` and `alg` header only; a key a token names or carries
(`jku`, `jwk`, `x5u`, `x5c`) is never read.  Each key of a set is prepared once, for each
allowed algorithm that fits its type (and `alg`, when the key names one): an RSA key never
verifies an HMAC token, whatever the token says, and a set fetched from a URL holds no
symmetric keys at all (a published key is public, so an HMAC "secret" from it is not one).

`RemoteKeySet` fetches the set with httpx (asynchronously: the event loop never waits on the
network while other requests could be served) and keeps it:

- an unknown `kid` fetches the set again at most once per `min_refetch_interval` (10 s), so a
  flood of made-up kids costs the issuer one request per interval, and a rotated key is
  picked up within seconds of its first token;
- the set is fetched again in the background once it is `refresh_interval` (5 min) old, so
  a key removed from it stops working even when no new kid comes;
- while the set cannot be fetched, the keys already held keep working; with none held, the
  backend raises `AuthUnavailable` (a 503), and tries the URL again at most once per
  `retry_interval` (5 s), so requests succeed again seconds after it comes back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import httpx
from jwt import PyJWK
from jwt.exceptions import PyJWTError

from . import errors
from .errors import AuthUnavailable

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "SYMMETRIC_ALGORITHMS",
    "KeySet",
    "KeySource",
    "RemoteKeySet",
]

logger = logging.getLogger("starlette_platform_metadata")

#: The algorithms an asymmetric key may verify, by JWK key type (and curve).
_RSA = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
_BY_CURVE = {"P-256": ("ES256",), "P-384": ("ES384",), "P-521": ("ES512",),
             "secp256k1": ("ES256K",), "Ed25519": ("EdDSA",), "Ed448": ("EdDSA",)}  # fmt: skip
ASYMMETRIC_ALGORITHMS = frozenset(
    (*_RSA, "ES256", "ES384", "ES512", "ES256K", "EdDSA")
)
SYMMETRIC_ALGORITHMS = frozenset(("HS256", "HS384", "HS512"))


def _algorithms_of(jwk: Mapping[str, Any]) -> tuple[str, ...]:
    """What a key of this type may verify, before the allow-list and the key's own `alg`."""
    kty = jwk.get("kty")
    if kty == "RSA":
        return _RSA
    if kty in ("EC", "OKP"):
        curve = jwk.get("crv")
        return _BY_CURVE.get(curve, ()) if isinstance(curve, str) else ()
    if kty == "oct":
        return tuple(sorted(SYMMETRIC_ALGORITHMS))
    return ()


class KeySet:
    """Keys prepared for verification, by (`kid`, algorithm).

    Args:
        keys: a JWK Set (`{"keys": [...]}`) or a list of JWKs.  Members that are not keys
            for signing with an allowed algorithm are left out (a set may hold others).
        algorithms: the allow-list; only these are ever prepared.
        symmetric: whether `oct` (HMAC) keys may be used; never for a set from a URL.
    """

    def __init__(
        self,
        keys: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        algorithms: Iterable[str],
        *,
        symmetric: bool = True,
    ) -> None:
        members = keys.get("keys", []) if isinstance(keys, Mapping) else keys
        allowed = frozenset(algorithms)
        self._keys: dict[tuple[str | None, str], PyJWK] = {}
        kids: set[str | None] = set()
        for jwk in members if isinstance(members, list | tuple) else ():
            if not isinstance(jwk, Mapping) or jwk.get("use", "sig") != "sig":
                continue
            if jwk.get("kty") == "oct" and not symmetric:
                continue
            kid = jwk.get("kid")
            if kid is not None and not isinstance(kid, str):
                continue
            named = jwk.get("alg")
            for alg in _algorithms_of(jwk):
                if alg not in allowed or (named is not None and named != alg):
                    continue
                try:
                    self._keys[(kid, alg)] = PyJWK(dict(jwk), alg)
                except (PyJWTError, ValueError, TypeError):
                    continue  # a malformed member is not a key; the others still are
                kids.add(kid)
        self.kids = frozenset(kids)

    def __len__(self) -> int:
        return len(self.kids)

    def find(self, kid: str | None, alg: str) -> PyJWK | None:
        """The key `kid` prepared for `alg`; for a token without a `kid`, the set's only key."""
        if kid is None and len(self.kids) == 1:
            (kid,) = self.kids  # a set of one key: tokens need not name it
        return self._keys.get((kid, alg))


class KeySource(Protocol):
    """Where the backend asks for a token's key."""

    async def key(self, kid: str | None, alg: str) -> PyJWK | None:
        """The key for (`kid`, `alg`), or `None`; `AuthUnavailable` when none can be known."""
        ...


class StaticKeys:
    """Keys given to the backend directly: never fetched, never changing."""

    def __init__(self, keys: KeySet) -> None:
        self.keys = keys

    async def key(self, kid: str | None, alg: str) -> PyJWK | None:
        return self.keys.find(kid, alg)


class RemoteKeySet:
    """A JWK Set fetched from `url` and kept (see the module docstring for when it is
    fetched again).

    Args:
        url: the issuer's `jwks_uri`.  Redirects are not followed.
        algorithms: the allow-list.
        timeout: seconds one fetch may take.
        max_bytes: a larger answer is a failed fetch.
        transport: an httpx transport to fetch through (tests, proxies); default httpx's.
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(
        self,
        url: str,
        algorithms: Iterable[str],
        *,
        min_refetch_interval: float = 10.0,
        refresh_interval: float = 300.0,
        retry_interval: float = float(errors.AUTH_RETRY_AFTER_SECONDS),
        timeout: float = 5.0,
        max_bytes: int = 1 << 20,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.algorithms = frozenset(algorithms)
        self.min_refetch_interval = min_refetch_interval
        self.refresh_interval = refresh_interval
        self.retry_interval = retry_interval
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._transport = transport
        self._clock = clock
        self._keys: KeySet | None = None
        self._fetched_at = float("-inf")  # the last fetch that succeeded
        self._tried_at = float("-inf")  # the last fetch, whatever came of it
        self._failing = False
        self._running: asyncio.Task[None] | None = None
        #: Fetches made (successful or not): what a flood of unknown kids costs the issuer.
        self.fetches = 0

    async def key(self, kid: str | None, alg: str) -> PyJWK | None:
        now = self._clock()
        keys = self._keys
        if keys is None:
            if now - self._tried_at < self.retry_interval and self._running is None:
                raise AuthUnavailable(errors.KEYS_UNAVAILABLE)
            await self._refresh()
            keys = self._keys
            if keys is None:
                raise AuthUnavailable(errors.KEYS_UNAVAILABLE)
            return keys.find(kid, alg)
        stale = now - self._fetched_at >= self.refresh_interval
        if stale and self._running is None and now - self._tried_at >= self.retry_interval:
            self._start()  # in the background: this request goes on with the keys held
        found = keys.find(kid, alg)
        # An unknown kid may be a new key: fetch (or join the fetch under way), at most once
        # per interval however many unknown kids come.
        due = self._running is not None or now - self._tried_at >= self.min_refetch_interval
        if found is None and kid not in keys.kids and due:
            await self._refresh()
            found = self._keys.find(kid, alg) if self._keys is not None else None
        return found

    async def aclose(self) -> None:
        """Cancel a fetch in flight (the app's shutdown)."""
        task, self._running = self._running, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _start(self) -> asyncio.Task[None]:
        if self._running is None:
            self._tried_at = self._clock()
            self._running = asyncio.get_running_loop().create_task(self._fetch())
            self._running.add_done_callback(self._finished)
        return self._running

    def _finished(self, task: asyncio.Task[None]) -> None:
        if self._running is task:
            self._running = None

    async def _refresh(self) -> None:
        """One fetch, shared by every request that needs it meanwhile."""
        # Shielded: a client that hangs up does not cancel the fetch others wait for.
        await asyncio.shield(self._start())

    async def _fetch(self) -> None:
        self.fetches += 1
        try:
            keys = KeySet(await self._download(), self.algorithms, symmetric=False)
            if not len(keys):
                raise ValueError("no signing key for an allowed algorithm in the set")
        except Exception as exc:  # noqa: BLE001  (any failure of the issuer: the keys held stay)
            if not self._failing:
                logger.warning(
                    "JWKS %s cannot be fetched (%s: %s); %s",
                    self.url,
                    type(exc).__name__,
                    exc,
                    "keeping the keys held" if self._keys else "answering 503 until it can",
                )
            self._failing = True
            return
        if self._failing:
            logger.warning("JWKS %s fetched again", self.url)
        self._failing = False
        self._keys = keys
        self._fetched_at = self._clock()

    async def _download(self) -> Any:
        # A client per fetch: fetches are seconds apart at least, and a client kept would be
        # bound to the event loop that made it.
        client = httpx.AsyncClient(
            transport=self._transport, timeout=self.timeout, follow_redirects=False
        )
        headers = {"Accept": "application/json"}
        async with client, client.stream("GET", self.url, headers=headers) as response:
            response.raise_for_status()
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > self.max_bytes:
                    raise ValueError(f"the JWK Set is larger than {self.max_bytes} bytes")
        return json.loads(body)
