"""`TokenAuthBackend`: DRF-style `Authorization: Token <key>` against the host's tokens table."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import HTTPConnection

from starlette_platform_metadata import (
    AuthenticationFailed,
    Identity,
    PlatformAccess,
    token_from_header,
)
from starlette_platform_metadata.arrivals import arrival

from .db import HostDB

__all__ = ["TokenAuthBackend"]


class TokenAuthBackend:
    """An `AuthBackend` on `HostDB`.

    `authenticate` reads the host tables' generation once and hands it to `access` in the
    identity, so both answers come from one snapshot and, while nothing has changed, from
    memory: one statement per request, or one per batch of requests that arrived together
    (`HostDB.generation`).
    """

    def __init__(self, db: HostDB) -> None:
        self.db = db

    async def authenticate(self, conn: HTTPConnection) -> Identity | None:
        key = token_from_header(conn)
        if key is None:
            return None
        generation = await self.db.generation(arrival(conn.scope))
        user = await self.db.user_for_token(key, generation=generation)
        if user is None:
            raise AuthenticationFailed("Invalid token.")
        return Identity(user.username, id=(user.id, generation))

    async def access(
        self, identity: Identity, platform_key: str, target: str | None
    ) -> PlatformAccess:
        user_id, generation = identity.id
        return await self.db.access(user_id, platform_key, target, generation=generation)

    async def members_among(
        self, identity: Identity, platform_key: str, usernames: Sequence[str]
    ) -> set[str]:
        """The batch question (`MemberLister`): a page of the admin listing in one query."""
        return await self.db.members_among(platform_key, usernames)
