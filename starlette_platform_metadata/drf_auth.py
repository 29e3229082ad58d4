"""`DRFTokenBackend`: Django REST framework's `Authorization: Token <key>`, read from the
Django project's own database, without Django.

The keys are DRF's `authtoken_token` rows and the users Django's `auth_user` (an inactive
user is refused as DRF refuses it: "User inactive or deleted."), read through the package's
kept connections (the same as `DatabaseStore`'s: SQLite or PostgreSQL, never blocking the
event loop), so this package can answer in front of a Django deployment, on the same
database, with the same tokens, at the same URL (docs/auth-django.md).  Which platforms a
user belongs to is the project's own model: give one SQL query over its tables, or an async
function (for ORM code, `asgiref.sync.sync_to_async(fn)`: the ORM is synchronous).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from databases import Database, DatabaseURL
from starlette.requests import HTTPConnection

from . import errors
from .auth import Identity, PlatformAccess, token_from_header
from .errors import AuthenticationFailed
from .stores import OpensOnFirstUse, SQLConnection, sql_connection

__all__ = ["AccessFunction", "DRFTokenBackend"]

AccessFunction = Callable[[Identity, str, str | None], Awaitable[PlatformAccess]]
# A table or column name, optionally schema-qualified: names are configuration, spliced into
# SQL, so nothing else may pass.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")


def _name(value: str, what: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"{what} must be a plain SQL name (letters, digits, _), not {value!r}")
    return value


class DRFTokenBackend(OpensOnFirstUse):
    """An `AuthBackend` on a Django project's `authtoken_token` and `auth_user` tables.

    Args:
        database: the project's database, as a `databases` URL (`sqlite:///db.sqlite3`,
            `postgresql://...`) or `Database`; or kept connections already open
            (`sql_connection(...)`, e.g. a `DatabaseStore`'s database shared).
        access_query: platform access in one statement, with `$1` the platform key, `$2` the
            user's id and `$3` the other user named (`NULL` when none): no row when the
            platform does not exist, else one row of (`is_admin`, `target_is_member`), where
            `is_admin` is `NULL` when the caller is not a member.  See docs/auth-django.md.
        access: instead of `access_query`, an async function answering `AuthBackend.access`;
            the identity carries the user's id as `identity.id`.
        user_table: a custom `AUTH_USER_MODEL`'s table (it needs `id`, `is_active` and
            `username_column`).
        token_table: DRF's token table (`key`, `user_id`).
        keyword: the header keyword, DRF's `TokenAuthentication.keyword`.
        busy_timeout: seconds a query may wait (lock or pool) before a 503.
    """

    def __init__(
        self,
        database: str | DatabaseURL | Database | SQLConnection,
        *,
        access_query: str | None = None,
        access: AccessFunction | None = None,
        user_table: str = "auth_user",
        username_column: str = "username",
        token_table: str = "authtoken_token",
        keyword: str = "Token",
        busy_timeout: float = 5.0,
    ) -> None:
        super().__init__()
        if (access_query is None) == (access is None):
            raise ValueError("give either access_query or access")
        if isinstance(database, str | DatabaseURL | Database):
            self._db = sql_connection(database, busy_timeout=busy_timeout)
            self._owned = True
        else:
            self._db, self._owned = database, False
        self._access_query = access_query
        self._access = access
        users, username = _name(user_table, "user_table"), _name(username_column, "username")
        self._user_by_key = (
            f"SELECT u.id, u.{username}, u.is_active FROM {_name(token_table, 'token_table')} t "
            f"JOIN {users} u ON u.id = t.user_id WHERE t.key = $1"
        )
        self._keyword = keyword.lower().encode()
        self.www_authenticate = keyword

    async def _open(self) -> None:
        if self._owned:
            await self._db.open()

    async def _close(self) -> None:
        if self._owned:
            await self._db.close()

    async def authenticate(self, conn: HTTPConnection) -> Identity | None:
        key = token_from_header(conn, self._keyword)
        if key is None:
            return None
        await self.ensure_open()
        row = await self._db.fetchrow(self._user_by_key, key)
        if row is None:
            raise AuthenticationFailed(errors.INVALID_TOKEN)
        user_id, username, is_active = row
        if not is_active:
            raise AuthenticationFailed(errors.USER_INACTIVE)
        return Identity(username, id=user_id)

    async def access(
        self, identity: Identity, platform_key: str, target: str | None
    ) -> PlatformAccess:
        if self._access is not None:
            return await self._access(identity, platform_key, target)
        assert self._access_query is not None
        await self.ensure_open()
        row: Any = await self._db.fetchrow(self._access_query, platform_key, identity.id, target)
        if row is None:
            return PlatformAccess(platform_exists=False)
        is_admin, target_is_member = row
        return PlatformAccess(
            platform_exists=True,
            is_member=is_admin is not None,
            is_admin=bool(is_admin),
            target_is_member=target is not None and bool(target_is_member),
        )
