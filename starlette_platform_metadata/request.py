"""The one request path every resource takes: query parsing, authentication, one
`authorize`, and the body read under the limits.

Every resource (and every live stream's re-check) goes through these functions, in the
contract's order (401, then 405, then 400 `platform_key`, 404 platform, 403 / 404 user):
a new surface inherits the rules instead of re-deciding them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal, NamedTuple, TypeVar
from urllib.parse import unquote_to_bytes

from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY
from starlette.requests import HTTPConnection
from starlette.types import Receive

from . import conditional, errors
from .auth import AuthBackend, AuthScheme, Identity, valid_challenge
from .errors import AuthenticationFailed, AuthUnavailable
from .limits import Limits
from .payload import parse_json, read_body
from .stores.base import POLICY_USERNAME

__all__ = ["Grant", "Query", "authenticate", "authorize", "read_json", "conditions"]

T = TypeVar("T")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DIGITS = re.compile(rb"\s*[+-]?[0-9]{1,18}\s*")
# DRF's BooleanField spellings.
_TRUE = frozenset((b"t", b"T", b"y", b"Y", b"yes", b"Yes", b"YES", b"true", b"True", b"TRUE",
                   b"on", b"On", b"ON", b"1"))  # fmt: skip
_FALSE = frozenset((b"f", b"F", b"n", b"N", b"no", b"No", b"NO", b"false", b"False", b"FALSE",
                    b"off", b"Off", b"OFF", b"0"))  # fmt: skip


class Query:
    """The query parameters a resource reads, percent-decoded, not yet text.

    Decoding happens per value and strictly: `parse_qsl` would turn every invalid UTF-8
    sequence into U+FFFD, so two different byte strings could name the same user.  Names
    the resource does not read are ignored, as DRF ignores unknown query parameters.
    """

    __slots__ = ("limits", "raw", "values")

    def __init__(self, query_string: bytes, names: frozenset[bytes], limits: Limits) -> None:
        self.raw = query_string
        self.limits = limits
        self.values: dict[str, list[bytes]] = {}
        for field in query_string.split(b"&"):
            raw_name, _, raw_value = field.partition(b"=")
            name = unquote_to_bytes(raw_name.replace(b"+", b" "))
            if name in names:
                self.values.setdefault(name.decode(), []).append(
                    unquote_to_bytes(raw_value.replace(b"+", b" "))
                )

    def last(self, name: str) -> bytes | None:
        """The last value given for `name` (DRF reads the last), or `None`."""
        given = self.values.get(name)
        return given[-1] if given else None

    def platform_key(self) -> str:
        platform_keys = self.values.get("platform_key", [])
        if len(platform_keys) > 1:
            raise errors.bad_query("platform_key query parameter must be given only once")
        if not platform_keys or not platform_keys[0]:
            raise errors.platform_key_required()
        return self._text("platform_key", platform_keys[0])

    def username(self) -> str | None:
        usernames = self.values.get("username")
        if usernames is None:
            return None
        if len(usernames) > 1:
            raise errors.bad_query("username query parameter must be given only once")
        if not usernames[0]:
            raise errors.bad_query("username query parameter may not be empty")
        return self._text("username", usernames[0])

    def target(self) -> tuple[str, str | None]:
        """`platform_key`, then `username`, each refused in that order."""
        platform_key = self.platform_key()
        return platform_key, self.username()

    def _text(self, name: str, raw: bytes) -> str:
        """A query value as exact text: strict UTF-8, bounded, no control characters.

        No normalization of case, Unicode form or whitespace: what does not match byte for
        byte names another (usually nonexistent) user, never someone else's record.
        """
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise errors.bad_query(f"{name} query parameter must be valid UTF-8") from None
        limit = self.limits.max_query_value_length
        if len(value) > limit:
            raise errors.bad_query(f"{name} query parameter is longer than {limit} characters")
        if _CONTROL.search(value):
            raise errors.bad_query(f"{name} query parameter may not contain control characters")
        return value

    def boolean(self, name: str) -> bool:
        """A boolean parameter as DRF's BooleanField reads it (the last value counts)."""
        value = self.last(name)
        if value is None:
            return False
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise errors.not_a_boolean(name)

    def choice(self, name: str, allowed: str) -> bool:
        """Whether `name=allowed` was given; any other value is refused, so that a typo never
        does less than the client meant (`history=purge`)."""
        value = self.last(name)
        if value is None:
            return False
        if value == allowed.encode():
            return True
        shown = value.decode("utf-8", "replace")
        raise errors.validation_error({name: [errors.NOT_A_CHOICE.format(shown)]})

    def cursor(self, read: Callable[[str], T | None]) -> T | None:
        """The position `cursor` names, read by `read` (a `cursors` reader), or `None`
        without one; a cursor that is not one of ours is 404 "Invalid cursor" (DRF's)."""
        raw = self.last("cursor")
        if raw is None:
            return None
        position = read(raw.decode("latin-1"))
        if position is None:
            raise errors.invalid_cursor()
        return position

    def limit(self, default: int, maximum: int) -> int:
        """`limit` as DRF's IntegerField reads it; refused, not clamped."""
        raw = self.last("limit")
        if raw is None:
            return default
        if not _DIGITS.fullmatch(raw):
            raise errors.validation_error({"limit": [errors.NOT_AN_INTEGER]})
        limit = int(raw)
        if limit < 1:
            raise errors.validation_error({"limit": [errors.INTEGER_TOO_SMALL.format(1)]})
        if limit > maximum:
            raise errors.validation_error({"limit": [errors.INTEGER_TOO_LARGE.format(maximum)]})
        return limit


async def authenticate(auth: AuthBackend, scheme: AuthScheme, conn: HTTPConnection) -> Identity:
    """The caller, or the contract's 401 (with the scheme's challenge, or the one the
    backend's `AuthenticationFailed` names), or 503 when the backend cannot check now."""
    try:
        identity = await auth.authenticate(conn)
    except AuthenticationFailed as exc:
        challenge = exc.challenge if valid_challenge(exc.challenge) else scheme.challenge
        raise errors.authentication_failed(exc.detail, challenge) from None
    except AuthUnavailable as exc:
        raise errors.auth_unavailable(exc.detail) from None
    if identity is None:
        raise errors.not_authenticated(scheme.challenge)
    return identity


class Grant(NamedTuple):
    """What `authorize` grants: whose metadata the request reaches (`None`: the platform's,
    as a whole) and whether the caller is the platform's tenant admin (the full view).

    A named tuple, not a frozen dataclass: it is built on every request, and a frozen
    dataclass's `__init__` costs three `object.__setattr__` calls."""

    platform_key: str
    username: str | None
    is_admin: bool


Reach = Literal["user", "platform", "member"]


async def authorize(
    auth: AuthBackend, identity: Identity, platform_key: str, target: str | None, reach: Reach
) -> Grant:
    """The one authorization of every resource and every stream re-check, in the contract's
    order of refusals.

    - `"user"`: one user's metadata: the caller's own (a member), or `target`'s (a tenant
      admin of the platform, `target` a member of it).
    - `"platform"`: every user of the platform at once (tenant admins only).
    - `"member"`: something of the platform itself that members read (its policy).
    """
    if reach == "user" and target == identity.username:
        target = None
    access = await auth.access(identity, platform_key, target if reach == "user" else None)
    if not access.platform_exists:
        raise errors.platform_not_found()
    if reach == "platform":
        if not access.is_admin:
            raise errors.admin_only()
        return Grant(platform_key, None, True)
    if reach == "member":
        if not access.is_member and not access.is_admin:
            raise errors.not_a_member()
        return Grant(platform_key, None, access.is_admin)
    if target is None:
        # The reserved policy record is never anyone's metadata, whatever a backend says.
        if not access.is_member or identity.username == POLICY_USERNAME:
            raise errors.not_a_member()
        return Grant(platform_key, identity.username, access.is_admin)
    if not access.is_admin:
        raise errors.admin_only()
    if not access.target_is_member:
        raise errors.user_not_found()
    return Grant(platform_key, target, True)


def body_limit(conn: HTTPConnection, limit: int) -> int:
    """`limit`, or the host's own Starlette body limit (`max_body_size=`) in front of us when
    that is stricter."""
    host_limit = conn.scope.get(MAX_BODY_SIZE_SCOPE_KEY)
    return host_limit if isinstance(host_limit, int) and host_limit < limit else limit


async def read_json(
    conn: HTTPConnection, receive: Receive, limits: Limits, max_depth: int
) -> object:
    """The request body as strict JSON, read under `max_body_bytes`."""
    headers = conn.headers
    limit = body_limit(conn, limits.max_body_bytes)
    body = await read_body(receive, headers.get("content-length"), limit)
    content_type = headers.get("content-type")
    # As DRF: an empty body, or one without a Content-Type, is empty data, not an error.
    if not body or content_type is None:
        return {}
    if content_type.partition(";")[0].strip().lower() != "application/json":
        raise errors.unsupported_media_type(content_type)
    return parse_json(body, max_depth)


def conditions(conn: HTTPConnection, limits: Limits) -> conditional.Conditions:
    """`If-Match` / `If-None-Match`, bounded by `max_etags`."""
    try:
        return conditional.Conditions.from_headers(conn.headers, limits.max_etags)
    except conditional.TooManyTags as exc:
        raise errors.too_many_etags(exc.header, exc.limit) from None
