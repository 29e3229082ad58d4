"""The four handlers of the contract: parse, authorize, call the store, render."""

from __future__ import annotations

import functools
import logging
import re
import traceback
import uuid
from datetime import datetime, timezone
from urllib.parse import unquote_to_bytes

from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from . import changes, conditional, errors
from .auth import AuthBackend, AuthScheme, Identity
from .errors import ApiError, AuthenticationFailed
from .jsontext import dump
from .limits import Limits
from .payload import ClientDisconnected, parse_json, read_body, validate_patch, validate_put
from .stores.base import Change, Record, Store, StoreUnavailable

logger = logging.getLogger("starlette_platform_metadata")

# DRF's order: Django's http_method_names filtered to what the view has (HEAD follows GET).
ALLOW = "GET, PUT, PATCH, DELETE, HEAD, OPTIONS"
_METHODS = frozenset(ALLOW.split(", "))
_OPTIONS_BODY = {
    "name": "User Platform Metadata",
    "description": "Per-user, per-platform metadata.",
    "renders": ["application/json"],
    "parses": ["application/json"],
}


# A record is read far more often than written, so the same timestamps and names come back
# request after request: render each once (bounded caches; all that they hold is also in the
# responses they speed up).
@functools.lru_cache(maxsize=4096)
def _iso(value: datetime | None) -> str:
    if value is None:
        return "null"
    # As DRF's DateTimeField renders it: ISO 8601 in UTC, "+00:00" written as "Z".
    text = value.astimezone(timezone.utc).isoformat()
    return '"' + text.removesuffix("+00:00") + 'Z"'


_json_string = functools.lru_cache(maxsize=4096)(dump)


def render_record(username: str, platform_key: str, record: Record) -> bytes:
    """The success body, built around the stored JSON text without decoding it."""
    return (
        f'{{"username":{_json_string(username)},"platform_key":{_json_string(platform_key)},'
        f'"metadata":{record.metadata_json},'
        f'"created_at":{_iso(record.created_at)},"updated_at":{_iso(record.updated_at)}}}'
    ).encode()


def error_response(error: ApiError) -> Response:
    return Response(
        dump(error.body).encode(),
        status_code=error.status_code,
        headers=error.headers,
        media_type="application/json",
    )


def _is_json(content_type: str) -> bool:
    return content_type.partition(";")[0].strip().lower() == "application/json"


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_OK_HEADERS = [
    (b"content-type", b"application/json"),
    (b"vary", b"Authorization"),
    (b"allow", ALLOW.encode()),
]


class _RecordResponse:
    """A success response with headers prepared once: the hot path skips `Response`'s work."""

    __slots__ = ("body", "raw_headers", "status_code")

    def __init__(self, body: bytes, etag: str) -> None:
        self.status_code = 200
        self.body = body
        self.raw_headers = [
            *_OK_HEADERS,
            (b"etag", etag.encode()),
            (b"content-length", str(len(body)).encode()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body})


class MetadataEndpoint:
    """The ASGI handler of `/api/core/users/platform-metadata/`."""

    def __init__(self, auth: AuthBackend, store: Store, limits: Limits) -> None:
        self.auth = auth
        self.store = store
        self.limits = limits
        self.auth_scheme = AuthScheme.of(auth)
        # Requests answered 503 since the store last failed; `None` while it works.  An outage
        # (a full disk, a database restart) is logged once when it starts and once when it
        # ends, not once per refused request.
        self._refused: int | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            response = await self._handle(scope, receive)
            if self._refused is not None:
                self._recovered()
        except ApiError as error:
            response = error_response(error)
        except ClientDisconnected:
            return
        except StoreUnavailable as exc:
            self._unavailable(exc)
            response = error_response(errors.service_unavailable())
        except Exception as exc:
            request_id = uuid.uuid4().hex
            # The request line without its query or headers, and a traceback with the
            # credentials cut out (an exception message may quote them): no token in the log.
            logger.error(
                "unexpected error [request_id=%s] %s %r\n%s",
                request_id,
                scope.get("method"),
                scope.get("path"),
                _redacted_traceback(exc, scope),
            )
            response = error_response(errors.server_error(request_id))
            response.headers["X-Request-ID"] = request_id
        if scope["method"] == "HEAD":
            await _send_head(response, send)
        else:
            await response(scope, receive, send)

    def _unavailable(self, exc: StoreUnavailable) -> None:
        if self._refused is None:
            self._refused = 0
            logger.warning("metadata store unavailable, answering 503: %s", exc)
        self._refused += 1

    def _recovered(self) -> None:
        logger.warning(
            "metadata store available again after %d request(s) answered 503", self._refused
        )
        self._refused = None

    async def _authenticate(self, conn: HTTPConnection) -> Identity:
        try:
            identity = await self.auth.authenticate(conn)
        except AuthenticationFailed as exc:
            raise errors.authentication_failed(exc.detail, self.auth_scheme.challenge) from None
        if identity is None:
            raise errors.not_authenticated(self.auth_scheme.challenge)
        return identity

    def _query(self, scope: Scope) -> tuple[str, str | None]:
        values = _query_values(scope["query_string"])
        platform_keys = values.get("platform_key", [])
        if len(platform_keys) > 1:
            raise errors.bad_query("platform_key query parameter must be given only once")
        if not platform_keys or not platform_keys[0]:
            raise errors.platform_key_required()
        platform_key = self._text("platform_key", platform_keys[0])
        usernames = values.get("username")
        if usernames is None:
            return platform_key, None
        if len(usernames) > 1:
            raise errors.bad_query("username query parameter must be given only once")
        if not usernames[0]:
            raise errors.bad_query("username query parameter may not be empty")
        return platform_key, self._text("username", usernames[0])

    def _text(self, name: str, raw: bytes) -> str:
        """A query value as exact text: strict UTF-8, bounded, no control characters.

        No normalization of case, Unicode form or whitespace: what does not match byte for
        byte names another (usually nonexistent) user, never someone else's record.
        """
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise errors.bad_query(f"{name} query parameter must be valid UTF-8") from None
        if len(value) > self.limits.max_query_value_length:
            raise errors.bad_query(
                f"{name} query parameter is longer than "
                f"{self.limits.max_query_value_length} characters"
            )
        if _CONTROL.search(value):
            raise errors.bad_query(f"{name} query parameter may not contain control characters")
        return value

    async def _handle(self, scope: Scope, receive: Receive) -> Response | _RecordResponse:
        conn = HTTPConnection(scope, receive)
        identity = await self._authenticate(conn)
        method = scope["method"]
        if method not in _METHODS:
            raise errors.method_not_allowed(method, ALLOW)
        if method == "OPTIONS":
            return Response(
                dump(_OPTIONS_BODY).encode(),
                headers={"Allow": ALLOW},
                media_type="application/json",
            )
        platform_key, target = self._query(scope)
        username = await self._authorize(identity, platform_key, target)
        try:
            conditions = conditional.Conditions.from_headers(conn.headers, self.limits.max_etags)
        except conditional.TooManyTags as exc:
            raise errors.too_many_etags(exc.header, exc.limit) from None
        if method in ("GET", "HEAD"):
            record = await self.store.get(platform_key, username)
            if conditions.not_modified(record):
                # RFC 9110 15.4.5: a 304 repeats the ETag and Vary the 200 would carry.
                return Response(
                    status_code=304,
                    headers={"ETag": conditional.etag(record), "Vary": "Authorization"},
                )
            return self._ok(username, platform_key, record)
        actor = identity.username
        change: Change
        if method == "DELETE":
            change = changes.delete(conditions=conditions, actor=actor)
        else:
            data = await self._body(conn, receive)
            max_bytes = self.limits.max_document_bytes
            if method == "PATCH":
                patch = validate_patch(data, self.limits)
                change = changes.patch(
                    patch.set,
                    patch.delete,
                    conditions=conditions,
                    max_bytes=max_bytes,
                    actor=actor,
                )
            else:
                metadata = validate_put(data, self.limits)
                change = changes.replace(
                    metadata, conditions=conditions, max_bytes=max_bytes, actor=actor
                )
        try:
            record = await self.store.update(platform_key, username, change)
        except changes.PreconditionFailed as exc:
            # Worded from, and carrying the ETag of, the record the change saw.
            raise errors.precondition_failed(exc.reason, conditional.etag(exc.record)) from None
        except changes.DocumentTooLarge as exc:
            raise errors.document_too_large(exc.limit) from None
        if method == "DELETE":
            return Response(status_code=204)
        return self._ok(username, platform_key, record)

    async def _authorize(self, identity: Identity, platform_key: str, target: str | None) -> str:
        """Whose metadata the request reaches, or the contract's refusal, in its order."""
        if target == identity.username:
            target = None
        access = await self.auth.access(identity, platform_key, target)
        if not access.platform_exists:
            raise errors.platform_not_found()
        if target is None:
            if not access.is_member:
                raise errors.not_a_member()
            return identity.username
        if not access.is_admin:
            raise errors.admin_only()
        if not access.target_is_member:
            raise errors.user_not_found()
        return target

    async def _body(self, conn: HTTPConnection, receive: Receive) -> object:
        headers = conn.headers
        limit = self.limits.max_body_bytes
        # A host's own Starlette body limit (`max_body_size=`) in front of us may be stricter.
        host_limit = conn.scope.get(MAX_BODY_SIZE_SCOPE_KEY)
        if isinstance(host_limit, int) and host_limit < limit:
            limit = host_limit
        body = await read_body(receive, headers.get("content-length"), limit)
        content_type = headers.get("content-type")
        # As DRF: an empty body, or one without a Content-Type, is empty data, not an error.
        if not body or content_type is None:
            return {}
        if not _is_json(content_type):
            raise errors.unsupported_media_type(content_type)
        return parse_json(body, self.limits.max_depth)

    @staticmethod
    def _ok(username: str, platform_key: str, record: Record) -> _RecordResponse:
        return _RecordResponse(
            render_record(username, platform_key, record), conditional.etag(record)
        )


def _query_values(query_string: bytes) -> dict[str, list[bytes]]:
    """The raw values of `platform_key` and `username`, percent-decoded, not yet text.

    Decoding happens per value and strictly: `parse_qsl` would turn every invalid UTF-8
    sequence into U+FFFD, so two different byte strings could name the same user.
    """
    values: dict[str, list[bytes]] = {}
    for field in query_string.split(b"&"):
        raw_name, _, raw_value = field.partition(b"=")
        name = unquote_to_bytes(raw_name.replace(b"+", b" "))
        if name in (b"platform_key", b"username"):
            values.setdefault(name.decode(), []).append(
                unquote_to_bytes(raw_value.replace(b"+", b" "))
            )
    return values


def _redacted_traceback(exc: BaseException, scope: Scope) -> str:
    """The formatted traceback with every word of the Authorization header cut out."""
    text = "".join(traceback.format_exception(exc))
    for name, value in scope.get("headers", []):
        if name.lower() == b"authorization":
            words = value.decode("latin-1").split()
            # The scheme word ("Token") stays readable when there is one; the credentials go.
            for secret in words[1:] if len(words) > 1 else words:
                text = text.replace(secret, "[redacted]")
    return text


async def _send_head(response: Response | _RecordResponse, send: Send) -> None:
    """Send a response's status and headers without its body (HEAD)."""
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": response.raw_headers,
        }
    )
    await send({"type": "http.response.body", "body": b""})
