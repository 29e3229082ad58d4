"""The authentication seam: who is calling, and what they may reach on a platform.

A host implements `AuthBackend` with its own user and tenant model; it does not inherit from
anything here.  `authenticate` follows Starlette's rule: return `None` when the request carries
no credentials, raise `AuthenticationFailed` when it carries bad ones.  `access` answers every
tenant question the endpoint asks in one call, so a backend can answer it in one query.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from starlette.requests import HTTPConnection

from .errors import AuthenticationFailed

__all__ = [
    "AuthBackend",
    "AuthenticationFailed",
    "Identity",
    "PlatformAccess",
    "token_from_header",
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


@runtime_checkable
class AuthBackend(Protocol):
    """Resolves callers and answers tenant questions for the endpoint."""

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
        raise AuthenticationFailed("Invalid token header. No credentials provided.")
    if len(parts) > 2:
        raise AuthenticationFailed("Invalid token header. Token string should not contain spaces.")
    try:
        return parts[1].decode()
    except UnicodeError:
        raise AuthenticationFailed(
            "Invalid token header. Token string should not contain invalid characters."
        ) from None
