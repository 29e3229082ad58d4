"""`JWTAuthBackend`: `Authorization: Bearer <JWT>` access tokens, as an OIDC issuer (Auth0,
Keycloak, Clerk, Cognito, your own) signs them.  Needs the `jwt` extra (PyJWT, cryptography,
httpx); docs/auth-jwt.md is the recipe.

What is checked, in order: the header (`alg` on the configured allow-list, never `none`; the
key found by `kid` among the configured keys only), the signature, then `exp` and `nbf` and
`iat` (with `leeway`), `iss`, `aud`, and the username claim.  Each refusal is a 401 in the
contract's shape, `{"detail": "..."}`, with `WWW-Authenticate: Bearer error="invalid_token",
error_description="..."` (RFC 6750, 3.1); a request without a Bearer token gets the plain
`Bearer` challenge and "credentials were not provided"; keys that cannot be had at all are a
503 (jwks.py).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import httpx
import jwt
from jwt import PyJWK
from starlette.requests import HTTPConnection

from . import errors
from .auth import Identity, PlatformAccess, token_from_header
from .errors import AuthenticationFailed
from .jwks import (
    ASYMMETRIC_ALGORITHMS,
    SYMMETRIC_ALGORITHMS,
    KeySet,
    KeySource,
    RemoteKeySet,
    StaticKeys,
)

__all__ = ["AccessFunction", "JWTAuthBackend", "bearer_challenge", "claim_access"]

AccessFunction = Callable[[Identity, str, str | None], Awaitable[PlatformAccess]]
BEARER = "Bearer"
# RFC 6750 3: error_description is %x20-21 / %x23-5B / %x5D-7E (no quote, no backslash).
_UNSAFE = str.maketrans({'"': "'", "\\": "/"})


def bearer_challenge(error: str, description: str) -> str:
    """`Bearer error="...", error_description="..."`, with the description made safe to quote."""
    safe = "".join(c for c in description.translate(_UNSAFE) if " " <= c <= "~")
    return f'{BEARER} error="{error}", error_description="{safe}"'


def invalid_token(detail: str) -> AuthenticationFailed:
    """The 401 of a Bearer token that is not good: `detail` in the body and the challenge."""
    return AuthenticationFailed(detail, bearer_challenge("invalid_token", detail))


def invalid_request(detail: str) -> AuthenticationFailed:
    """The 401 of an `Authorization: Bearer` header that is malformed."""
    return AuthenticationFailed(detail, bearer_challenge("invalid_request", detail))


def claim_access(
    claim: str = "platforms",
    *,
    target_is_member: Callable[[str, str], Awaitable[bool]] | None = None,
) -> AccessFunction:
    """Platform access read from the token: `{"platforms": {"acme": "admin", "beta": "member"}}`.

    A token speaks only of its holder's platforms, so a platform it does not name answers
    404 (it exists for no one the token knows of), and whether another user belongs to a
    platform is the host's to say: `target_is_member(platform_key, username)`.  Without it a
    tenant admin reaches no one's metadata but its own (404 "User not found").
    """

    async def access(identity: Identity, platform_key: str, target: str | None) -> PlatformAccess:
        claims = identity.id if isinstance(identity.id, Mapping) else {}
        platforms = claims.get(claim)
        role = platforms.get(platform_key) if isinstance(platforms, Mapping) else None
        if role not in ("member", "admin"):
            return PlatformAccess(platform_exists=False)
        is_admin = role == "admin"
        target_member = False
        if target is not None and is_admin and target_is_member is not None:
            target_member = await target_is_member(platform_key, target)
        return PlatformAccess(True, is_member=True, is_admin=is_admin,
                              target_is_member=target_member)  # fmt: skip

    return access


class JWTAuthBackend:
    """An `AuthBackend` for Bearer JWTs.

    Args:
        access: answers `AuthBackend.access` (`claim_access()` reads a claim of the token;
            a host function reads its own tables); its identity carries the verified claims
            as `identity.id`.
        jwks_url: the issuer's JWK Set, fetched and kept (jwks.py).  Or:
        keys: the keys themselves, a JWK Set or a list of JWKs (HMAC `oct` keys allowed
            here, with an `HS*` algorithm).
        algorithms: the allow-list, e.g. `["RS256"]`; the token's `alg` is only checked
            against it.  `none` is refused, and so is `HS*` with a `jwks_url`.
        issuer: the `iss` every token must carry.
        audience: the `aud` every token must carry (one of them, if several are given).
        leeway: seconds of clock skew allowed on `exp`, `nbf` and `iat`.
        username_claim: the claim holding the contract's username (`sub` by default).
        require: claims every token must have besides `exp`, `iss`, `aud` and the username.
        verified_cache: tokens kept once verified (0: none), see `verify`.
        jwks_transport, jwks_options: passed to `RemoteKeySet` (intervals, timeout, ...).
    """

    www_authenticate = BEARER
    openapi_security_schemes: Mapping[str, Mapping[str, Any]] = {
        "BearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    }

    def __init__(
        self,
        access: AccessFunction,
        *,
        jwks_url: str | None = None,
        keys: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        algorithms: Iterable[str],
        issuer: str | None,
        audience: str | Sequence[str] | None,
        leeway: float = 30.0,
        username_claim: str = "sub",
        require: Iterable[str] = (),
        verified_cache: int = 4096,
        jwks_transport: httpx.AsyncBaseTransport | None = None,
        **jwks_options: Any,
    ) -> None:
        self.algorithms = tuple(dict.fromkeys(algorithms))
        unknown = set(self.algorithms) - ASYMMETRIC_ALGORITHMS - SYMMETRIC_ALGORITHMS
        if not self.algorithms or unknown:
            raise ValueError(
                f"algorithms must list signing algorithms among "
                f"{sorted(ASYMMETRIC_ALGORITHMS | SYMMETRIC_ALGORITHMS)}; got {unknown or 'none'}"
            )
        if (jwks_url is None) == (keys is None):
            raise ValueError("give either jwks_url or keys")
        self.key_source: KeySource
        if jwks_url is not None:
            if SYMMETRIC_ALGORITHMS & set(self.algorithms):
                raise ValueError(
                    "HS* algorithms verify with a shared secret, which a JWK Set URL never "
                    "publishes: allowing them with jwks_url would accept tokens signed with "
                    "a public key.  Give the secret in keys= instead."
                )
            self.key_source = RemoteKeySet(
                jwks_url, self.algorithms, transport=jwks_transport, **jwks_options
            )
        else:
            assert keys is not None
            key_set = KeySet(keys, self.algorithms)
            if not len(key_set):
                raise ValueError("keys holds no signing key for an allowed algorithm")
            self.key_source = StaticKeys(key_set)
        self._access = access
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.username_claim = username_claim
        required = ["exp", username_claim, *require]
        required += ["iss"] * (issuer is not None) + ["aud"] * (audience is not None)
        self._options: jwt.types.Options = {"require": list(dict.fromkeys(required))}
        self.verified_cache = verified_cache
        self._verified: dict[str, _Verified] = {}

    async def authenticate(self, conn: HTTPConnection) -> Identity | None:
        try:
            token = token_from_header(conn, b"bearer")
        except AuthenticationFailed as exc:
            raise invalid_request(exc.detail) from None
        if token is None:
            return None
        claims = await self.verify(token)
        return Identity(claims[self.username_claim], id=claims)

    async def verify(self, token: str) -> dict[str, Any]:
        """The claims of `token` once every check passed (the username claim a non-empty
        string); otherwise `AuthenticationFailed` (a 401 with RFC 6750's challenge), or
        `AuthUnavailable` when no key can be had.

        A token that passed is kept (up to `verified_cache` of them) with the key that
        verified it, and passes again without its signature checked while it has not
        expired and that same key is still the one its `kid` names: the same token string,
        signature included, so nothing is trusted that was not verified.  A key gone from
        the set (rotation) sends the token through every check again, and so to its 401.
        Verifying costs PyJWT some 100 us a token, a request's own cost again
        (benchmarks/README.md, "JWT auth").
        """
        kept = self._verified.get(token)
        if (
            kept is not None
            and time.time() < kept.expires
            and await self.key_source.key(kept.kid, kept.alg) is kept.key
        ):
            return kept.claims
        claims, key, kid, alg = await self._verify(token)
        if self.verified_cache:
            if len(self._verified) >= self.verified_cache:
                self._verified.clear()  # a flood of new tokens only ever empties it
            expires = float(claims["exp"]) + self.leeway
            self._verified[token] = _Verified(claims, key, kid, alg, expires)
        return claims

    async def _verify(self, token: str) -> tuple[dict[str, Any], PyJWK, str | None, str]:
        header = _header(token)
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise invalid_token(errors.TOKEN_ALGORITHM_REFUSED)
        if kid is not None and not isinstance(kid, str):
            raise invalid_token(errors.TOKEN_MALFORMED)
        key = await self.key_source.key(kid, alg)
        if key is None:
            raise invalid_token(errors.TOKEN_UNKNOWN_KEY)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options=self._options,
            )
        except jwt.PyJWTError as exc:
            raise invalid_token(_detail(exc)) from None
        username = claims.get(self.username_claim)
        if not isinstance(username, str) or not username:
            raise invalid_token(errors.TOKEN_BAD_CLAIM.format(self.username_claim))
        return claims, key, kid, alg

    async def access(
        self, identity: Identity, platform_key: str, target: str | None
    ) -> PlatformAccess:
        return await self._access(identity, platform_key, target)

    async def aclose(self) -> None:
        """Stop a key fetch in flight (call from the host's shutdown)."""
        if isinstance(self.key_source, RemoteKeySet):
            await self.key_source.aclose()


class _Verified(NamedTuple):
    claims: dict[str, Any]
    key: PyJWK
    kid: str | None
    alg: str
    expires: float  # `exp` + leeway, epoch seconds


def _header(token: str) -> dict[str, Any]:
    """The token's header, read only to pick the key: PyJWT checks it all again.  (PyJWT's
    `get_unverified_header` validates every segment, a fourth of the cost of a request.)"""
    segment = token.partition(".")[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error):
        raise invalid_token(errors.TOKEN_MALFORMED) from None
    if not isinstance(header, dict) or "." not in token:
        raise invalid_token(errors.TOKEN_MALFORMED)
    return header


def _detail(exc: jwt.PyJWTError) -> str:
    """The 401 detail of a failed check: which rule, never the library's own text."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return errors.TOKEN_EXPIRED
    if isinstance(exc, jwt.ImmatureSignatureError):
        return errors.TOKEN_NOT_YET_VALID
    if isinstance(exc, jwt.InvalidIssuerError):
        return errors.TOKEN_WRONG_ISSUER
    if isinstance(exc, jwt.InvalidAudienceError):
        return errors.TOKEN_WRONG_AUDIENCE
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return errors.TOKEN_MISSING_CLAIM.format(exc.claim)
    if isinstance(exc, jwt.InvalidSignatureError):
        return errors.TOKEN_BAD_SIGNATURE
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return errors.TOKEN_ALGORITHM_REFUSED
    if isinstance(exc, jwt.InvalidIssuedAtError):
        return errors.TOKEN_BAD_CLAIM.format("iat")
    return errors.TOKEN_MALFORMED
