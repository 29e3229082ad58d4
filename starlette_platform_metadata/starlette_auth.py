"""An `AuthBackend` for hosts that already authenticate with Starlette's `AuthenticationMiddleware`.

Such a host has `request.user` on every request already.  `StarletteUserBackend` reads the
caller from it instead of parsing credentials a second time, so the host writes only the
tenancy question, `access`:

    app = Starlette(
        routes=[Mount("/api/core/users/platform-metadata", app=PlatformMetadataApp(
            auth=StarletteUserBackend(access=my_access), store=store))],
        middleware=[Middleware(AuthenticationMiddleware, backend=MyBackend(),
                               on_error=on_auth_error)],
    )

`AuthenticationMiddleware` answers bad credentials itself, before the endpoint runs, with a
plain-text 400 unless given `on_error`; `on_auth_error` makes that the contract's 401 JSON.
With a scheme of its own (`StarletteUserBackend(access, www_authenticate="Bearer")`), pass the
backend's `on_auth_error` instead, so that 401 carries the same challenge as the endpoint's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.authentication import AuthenticationError, BaseUser
from starlette.requests import HTTPConnection
from starlette.responses import Response

from . import errors
from .auth import Identity, PlatformAccess
from .responses import error_response

__all__ = ["StarletteUserBackend", "on_auth_error"]

AccessFunction = Callable[[Identity, str, str | None], Awaitable[PlatformAccess]]


def _display_name(user: BaseUser) -> str:
    return user.display_name


class StarletteUserBackend:
    """The caller is `request.user`, as Starlette's `AuthenticationMiddleware` set it.

    Args:
        access: answers `AuthBackend.access`; the identity it gets carries the `BaseUser` as
            `identity.id`.
        username: the contract's username of a user (default: `user.display_name`).
        www_authenticate: the challenge of every 401 (default DRF's `Token`).
        openapi_security_schemes: the OpenAPI security schemes, by name (default: from the
            challenge); see `AuthBackend`.

    A user that is not authenticated gets the contract's 401 "credentials were not provided".
    Without `AuthenticationMiddleware` in front of the endpoint there is no `request.user`:
    that is a configuration error, answered 500 and logged with this message.
    """

    def __init__(
        self,
        access: AccessFunction,
        *,
        username: Callable[[BaseUser], str] = _display_name,
        www_authenticate: str = errors.TOKEN_CHALLENGE,
        openapi_security_schemes: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self._access = access
        self._username = username
        self.www_authenticate = www_authenticate
        self.openapi_security_schemes = openapi_security_schemes

    async def authenticate(self, conn: HTTPConnection) -> Identity | None:
        user = conn.scope.get("user")
        if user is None:
            raise RuntimeError(
                "StarletteUserBackend needs Starlette's AuthenticationMiddleware in front of "
                "the metadata endpoint: no request.user was set."
            )
        if not user.is_authenticated:
            return None
        return Identity(self._username(user), id=user)

    async def access(
        self, identity: Identity, platform_key: str, target: str | None
    ) -> PlatformAccess:
        return await self._access(identity, platform_key, target)

    def on_auth_error(self, conn: HTTPConnection, exc: AuthenticationError) -> Response:
        """`AuthenticationMiddleware(on_error=...)`: as `on_auth_error`, with this challenge."""
        return _auth_error(exc, self.www_authenticate)


def on_auth_error(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    """`AuthenticationMiddleware(on_error=...)`: bad credentials as the contract's 401.

    The exception's message becomes the `detail` (DRF's "Invalid token." when it has none).
    """
    return _auth_error(exc, errors.TOKEN_CHALLENGE)


def _auth_error(exc: AuthenticationError, challenge: str) -> Response:
    return error_response(
        errors.authentication_failed(str(exc) or errors.INVALID_TOKEN, challenge)
    )
