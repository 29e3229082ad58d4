"""The authentication seam: who is calling, and what they may reach on a platform.

A host implements `AuthBackend` with its own user and tenant model; it does not inherit from
anything here.  `authenticate` follows Starlette's rule: return `None` when the request carries
no credentials, raise `AuthenticationFailed` when it carries bad ones.  `access` answers every
tenant question the endpoint asks in one call, so a backend can answer it in one query.
A backend names its scheme (the 401 challenge, the OpenAPI security scheme) in optional
attributes, read once by `AuthScheme.of`; one that names none is DRF's `Token`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeGuard, runtime_checkable

from starlette.requests import HTTPConnection

from . import errors
from .errors import TOKEN_CHALLENGE, AuthenticationFailed, AuthUnavailable

__all__ = [
    "TOKEN_SECURITY_SCHEMES",
    "AuthBackend",
    "AuthScheme",
    "AuthUnavailable",
    "AuthenticationFailed",
    "Identity",
    "MemberLister",
    "PlatformAccess",
    "members_of",
    "token_from_header",
    "valid_challenge",
]


@dataclass(frozen=True, slots=True)
class Identity:
    """The authenticated caller.

    Attributes:
        username: the name the contract uses for this user (the `username` query parameter).
        id: the host's own key for the user, passed back to `AuthBackend.access` untouched.
    """

    username: str
    id: Any = None


@dataclass(frozen=True, slots=True)
class PlatformAccess:
    """What the caller may do on one platform.

    Attributes:
        platform_exists: the platform key names a platform.
        is_member: the caller belongs to the platform.
        is_admin: the caller is a tenant admin of the platform.
        target_is_member: when another user was named, that user belongs to the platform
            (only consulted for admins; `False` when no other user was named).
    """

    platform_exists: bool
    is_member: bool = False
    is_admin: bool = False
    target_is_member: bool = False


NO_PLATFORM = PlatformAccess(platform_exists=False)

#: The OpenAPI security scheme of DRF's token authentication, the default.
TOKEN_SECURITY_SCHEMES: Mapping[str, Mapping[str, Any]] = {
    "TokenAuth": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "`Authorization: Token <key>`; the keyword is case-insensitive.",
    }
}
# RFC 9110 11.6.1: a challenge starts with the scheme, a token; visible ASCII throughout.
_CHALLENGE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+(?: [\x20-\x7e]*)?")


def valid_challenge(challenge: object) -> TypeGuard[str]:
    """Whether `challenge` may be sent as a `WWW-Authenticate` value: an auth scheme,
    optionally with parameters, in visible ASCII (no line break can ride along)."""
    return isinstance(challenge, str) and _CHALLENGE.fullmatch(challenge) is not None


@dataclass(frozen=True, slots=True)
class AuthScheme:
    """How a backend's callers authenticate, as the 401s and the OpenAPI document say it.

    Attributes:
        challenge: the `WWW-Authenticate` value of every 401.
        security_schemes: the OpenAPI `components.securitySchemes`, by name; any one of them
            authenticates a request.
    """

    challenge: str = TOKEN_CHALLENGE
    security_schemes: Mapping[str, Mapping[str, Any]] = field(
        default_factory=lambda: TOKEN_SECURITY_SCHEMES
    )

    @classmethod
    def of(cls, backend: object) -> AuthScheme:
        """The scheme `backend` names in its optional attributes (see `AuthBackend`).

        Raises:
            ValueError: the challenge is not a valid `WWW-Authenticate` value, or the
                security schemes are not a mapping.
        """
        challenge = getattr(backend, "www_authenticate", TOKEN_CHALLENGE)
        if not valid_challenge(challenge):
            raise ValueError(
                f"www_authenticate must be an auth scheme, optionally with parameters "
                f"(e.g. 'Bearer' or 'Bearer realm=\"api\"'), not {challenge!r}"
            )
        schemes = getattr(backend, "openapi_security_schemes", None)
        if schemes is None:
            scheme = challenge.split()[0]
            if scheme.lower() == TOKEN_CHALLENGE.lower():
                schemes = TOKEN_SECURITY_SCHEMES
            else:
                name = scheme[:1].upper() + scheme[1:].lower() + "Auth"
                schemes = {name: {"type": "http", "scheme": scheme.lower()}}
        elif not isinstance(schemes, Mapping):
            raise ValueError(
                f"openapi_security_schemes must map names to OpenAPI security schemes, "
                f"not {schemes!r}"
            )
        return cls(challenge, schemes)


@runtime_checkable
class AuthBackend(Protocol):
    """Resolves callers and answers tenant questions for the endpoint.

    Two optional attributes, read once when the app is built, say how callers authenticate;
    a backend without them is DRF's `Authorization: Token <key>`:

    - `www_authenticate: str`: the `WWW-Authenticate` challenge of every 401, e.g. `"Bearer"`
      (default `"Token"`, as the contract requires).
    - `openapi_security_schemes: Mapping[str, Mapping[str, Any]]`: the OpenAPI document's
      `components.securitySchemes`, by name, e.g.
      `{"SessionCookie": {"type": "apiKey", "in": "cookie", "name": "session"}}`.  By default
      it follows the challenge: `TokenAuth` (an `Authorization` header apiKey) for `Token`,
      else an `http` scheme of the challenge's first word (`"Bearer"` gives `BearerAuth`,
      `{"type": "http", "scheme": "bearer"}`).
    """

    async def authenticate(self, conn: HTTPConnection) -> Identity | None:
        """Return the caller, `None` without credentials, or raise `AuthenticationFailed`."""
        ...

    async def access(
        self, identity: Identity, platform_key: str, target: str | None
    ) -> PlatformAccess:
        """Describe `identity`'s standing on `platform_key`, and whether `target` is a user there.

        `target` is `None` when the caller acts on its own metadata.
        """
        ...


@runtime_checkable
class MemberLister(Protocol):
    """The optional batch question of the auth seam: which of these users belong to a platform.

    The admin listing, export and import ask it once per page of users; a backend with it
    answers a page in one query.  Without it, each user is asked about with `access`.
    """

    async def members_among(
        self, identity: Identity, platform_key: str, usernames: Sequence[str]
    ) -> set[str]:
        """The names among `usernames` that are members of `platform_key` now (`identity`
        is the tenant admin asking)."""
        ...


async def members_of(
    backend: AuthBackend, identity: Identity, platform_key: str, usernames: Sequence[str]
) -> set[str]:
    """`backend.members_among(...)`, or for a backend without it one `access` per user (at most
    16 at a time), each read as `target_is_member`."""
    if not usernames:
        return set()
    if isinstance(backend, MemberLister):
        return set(await backend.members_among(identity, platform_key, usernames))
    found: set[str] = set()
    gate = asyncio.Semaphore(16)

    async def ask(username: str) -> None:
        async with gate:
            access = await backend.access(identity, platform_key, username)
        if access.platform_exists and access.target_is_member:
            found.add(username)

    await asyncio.gather(*(ask(username) for username in usernames))
    return found


def token_from_header(conn: HTTPConnection, keyword: bytes = b"token") -> str | None:
    """Extract the key of an `Authorization: Token <key>` header, as DRF's TokenAuthentication.

    Returns `None` when there is no such header or it uses another scheme; raises
    `AuthenticationFailed` with DRF's exact messages for a malformed one.
    """
    values = conn.headers.getlist("authorization")
    if not values:
        return None
    # Django joins repeated headers with "," (so DRF sees "Token a,Token b": two spaces, 401).
    # Taking the first, as Starlette's `get` would, could authenticate a request as someone a
    # proxy or client did not mean.
    header = ",".join(values)
    # Starlette decodes headers as latin-1, so this gives back the bytes on the wire.
    parts = header.encode("latin-1").split()
    if not parts or parts[0].lower() != keyword:
        return None
    if len(parts) == 1:
        raise AuthenticationFailed(errors.NO_CREDENTIALS)
    if len(parts) > 2:
        raise AuthenticationFailed(errors.TOKEN_HAS_SPACES)
    try:
        return parts[1].decode()
    except UnicodeError:
        raise AuthenticationFailed(errors.TOKEN_HAS_INVALID_CHARACTERS) from None
