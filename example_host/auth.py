"""`TokenAuthBackend`: DRF-style `Authorization: Token <key>` against the host's tokens table."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from starlette_platform_metadata import (
    AuthenticationFailed,
    Identity,
    PlatformAccess,
    token_from_header,
)

from .db import HostDB

__all__ = ["TokenAuthBackend"]


class TokenAuthBackend:
    """An `AuthBackend` on `HostDB`: one query to find the caller, one to answer `access`."""

    def __init__(self, db: HostDB) -> None:
        self.db = db

    async def authenticate(self, conn: HTTPConnection) -> Identity | None:
        key = token_from_header(conn)
        if key is None:
            return None
        user = await self.db.user_for_token(key)
        if user is None:
            raise AuthenticationFailed("Invalid token.")
        return Identity(user.username, id=user.id)

    async def access(
        self, identity: Identity, platform_key: str, target: str | None
    ) -> PlatformAccess:
        return await self.db.access(identity.id, platform_key, target)
