"""The four handlers of the contract: parse, authorize, call the store, render."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import re
import traceback
import uuid
from datetime import datetime, timezone
from typing import Literal, Protocol
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
from .feed import Feed
from .history import DEFAULT_HISTORY_PER_USER, Writer
from .payload import ClientDisconnected, parse_json, read_body, validate_patch, validate_put
from .policies import Policies
from .policy import DEFAULT_POLICY, Policy, PolicyInvalid, member_view, parse_policy
from .stores.base import POLICY_USERNAME, Change, Record, Store, StoreUnavailable

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


class Answer(Protocol):
    """What a resource's handler answers: a Starlette `Response`, or a response of our own
    (a prepared record, a stream) with the same three members."""

    status_code: int

    @property
    def raw_headers(self) -> list[tuple[bytes, bytes]]: ...

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...


class _Answer(Exception):
    """A response decided before the resource's own work (OPTIONS)."""

    def __init__(self, response: Response) -> None:
        super().__init__()
        self.response = response


class MetadataEndpoint:
    """The ASGI handler of `/api/core/users/platform-metadata/`."""

    def __init__(
        self,
        auth: AuthBackend,
        store: Store,
        limits: Limits,
        policies: Policies | None = None,
        writer: Writer | None = None,
    ) -> None:
        self.auth = auth
        self.store = store
        self.limits = limits
        self.policies = policies or Policies(store)
        self.writer = writer or Writer(store, DEFAULT_HISTORY_PER_USER, Feed())
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

    def _platform_key(self, values: dict[str, list[bytes]]) -> str:
        platform_keys = values.get("platform_key", [])
        if len(platform_keys) > 1:
            raise errors.bad_query("platform_key query parameter must be given only once")
        if not platform_keys or not platform_keys[0]:
            raise errors.platform_key_required()
        return self._text("platform_key", platform_keys[0])

    def _query(self, scope: Scope) -> tuple[str, str | None]:
        values = _query_values(scope["query_string"])
        platform_key = self._platform_key(values)
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

    #: The methods this resource answers (DRF's order) and its OPTIONS description.
    allow = ALLOW
    methods = _METHODS
    options_body = _OPTIONS_BODY

    async def _start(self, scope: Scope, receive: Receive) -> tuple[HTTPConnection, Identity]:
        """Authentication, then the method: the first checks of every resource, in DRF's
        order (a 401 before a 405).  OPTIONS is answered by raising its response."""
        conn = HTTPConnection(scope, receive)
        identity = await self._authenticate(conn)
        method = scope["method"]
        if method not in self.methods:
            raise errors.method_not_allowed(method, self.allow)
        if method == "OPTIONS":
            raise _Answer(
                Response(
                    dump(self.options_body).encode(),
                    headers={"Allow": self.allow},
                    media_type="application/json",
                )
            )
        return conn, identity

    async def _handle(self, scope: Scope, receive: Receive) -> Answer:
        try:
            conn, identity = await self._start(scope, receive)
        except _Answer as answer:
            return answer.response
        method = scope["method"]
        platform_key, target = self._query(scope)
        username, is_admin = await self._authorize(identity, platform_key, target)
        conditions = self._conditions(conn)
        member = not is_admin
        if method in ("GET", "HEAD"):
            current, record = await self.policies.current_and(platform_key, username)
            policy = None if current.policy.is_default else current.policy
            if conditions.not_modified(record):
                # RFC 9110 15.4.5: a 304 repeats the ETag and Vary the 200 would carry.
                return Response(
                    status_code=304,
                    headers={"ETag": conditional.etag(record), "Vary": "Authorization"},
                )
            return self._ok(username, platform_key, record, _hidden(policy, member))
        actor = identity.username
        change: Change
        purge = False
        if method == "DELETE":
            purge = _history_purge(scope["query_string"])
            policy = await self._policy(platform_key)
            change = changes.delete(
                conditions=conditions, actor=actor, policy=policy, member=member
            )
        else:
            data = await self._body(conn, receive, self.limits.max_depth)
            max_bytes = self.limits.max_document_bytes
            max_private_bytes = self.limits.max_private_bytes
            if method == "PATCH":
                patch = validate_patch(data, self.limits)
                policy = await self._policy(platform_key)
                change = changes.patch(
                    patch.set,
                    patch.delete,
                    conditions=conditions,
                    max_bytes=max_bytes,
                    actor=actor,
                    policy=policy,
                    member=member,
                    max_private_bytes=max_private_bytes,
                )
            else:
                metadata = validate_put(data, self.limits)
                policy = await self._policy(platform_key)
                change = changes.replace(
                    metadata,
                    conditions=conditions,
                    max_bytes=max_bytes,
                    actor=actor,
                    policy=policy,
                    member=member,
                    max_private_bytes=max_private_bytes,
                )
        record = await self._update(platform_key, username, change, purge=purge)
        if method == "DELETE":
            return Response(status_code=204)
        return self._ok(username, platform_key, record, _hidden(policy, member))

    async def _policy(self, platform_key: str) -> Policy | None:
        """The platform's policy, or `None` when it has none: then every request takes the
        path it took before policies existed.  Read on every request, as late as possible (a
        write reads it once its body is valid); compiled only when it changed."""
        policy = (await self.policies.current(platform_key)).policy
        return None if policy.is_default else policy

    def _conditions(self, conn: HTTPConnection) -> conditional.Conditions:
        try:
            return conditional.Conditions.from_headers(conn.headers, self.limits.max_etags)
        except conditional.TooManyTags as exc:
            raise errors.too_many_etags(exc.header, exc.limit) from None

    async def _update(
        self, platform_key: str, username: str, change: Change, *, purge: bool = False
    ) -> Record:
        """Run `change` in the store (a user's with history); refusals become the contract's
        answers."""
        try:
            if username == POLICY_USERNAME:
                return await self.store.update(platform_key, username, change)
            return await self.writer.write(platform_key, username, change, purge=purge)
        except changes.PreconditionFailed as exc:
            # Worded from, and carrying the ETag of, the record the change saw.
            raise errors.precondition_failed(exc.reason, conditional.etag(exc.record)) from None
        except changes.DocumentTooLarge as exc:
            raise errors.document_too_large(exc.limit, exc.name) from None
        except changes.KeysForbidden as exc:
            raise errors.keys_forbidden(exc.keys) from None
        except changes.SchemaViolation as exc:
            raise errors.schema_violation(exc.errors) from None

    async def _authorize(
        self, identity: Identity, platform_key: str, target: str | None
    ) -> tuple[str, bool]:
        """Whose metadata the request reaches and whether the caller is a tenant admin, or
        the contract's refusal, in its order."""
        if target == identity.username:
            target = None
        access = await self.auth.access(identity, platform_key, target)
        if not access.platform_exists:
            raise errors.platform_not_found()
        if target is None:
            # The reserved policy record is never anyone's metadata, whatever a backend says.
            if not access.is_member or identity.username == POLICY_USERNAME:
                raise errors.not_a_member()
            return identity.username, access.is_admin
        if not access.is_admin:
            raise errors.admin_only()
        if not access.target_is_member:
            raise errors.user_not_found()
        return target, True

    async def _body(self, conn: HTTPConnection, receive: Receive, max_depth: int) -> object:
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
        return parse_json(body, max_depth)

    @staticmethod
    def _ok(
        username: str, platform_key: str, record: Record, hide: Policy | None = None
    ) -> _RecordResponse:
        etag = conditional.etag(record)
        if hide is not None and hide.may_hold_private(record.metadata_json):
            shown = dump(member_view(hide, record.metadata))
            record = dataclasses.replace(record, metadata_json=shown)
        return _RecordResponse(render_record(username, platform_key, record), etag)


POLICY_ALLOW = "GET, PUT, DELETE, HEAD, OPTIONS"
_POLICY_METHODS = frozenset(POLICY_ALLOW.split(", "))
_POLICY_OPTIONS_BODY = {
    "name": "Platform Policy",
    "description": "Protected keys, private keys and a JSON Schema for a platform's metadata.",
    "renders": ["application/json"],
    "parses": ["application/json"],
}
# DRF's BooleanField spellings.
_TRUE = frozenset((b"t", b"T", b"y", b"Y", b"yes", b"Yes", b"YES", b"true", b"True", b"TRUE",
                   b"on", b"On", b"ON", b"1"))  # fmt: skip
_FALSE = frozenset((b"f", b"F", b"n", b"N", b"no", b"No", b"NO", b"false", b"False", b"FALSE",
                    b"off", b"Off", b"OFF", b"0"))  # fmt: skip


class PolicyEndpoint(MetadataEndpoint):
    """The ASGI handler of `<mount>/policy/`: a platform's policy (EXTENSIONS.md section 1).

    Same authentication, query parsing, error bodies and check order as the metadata
    endpoint.  `username` is not a parameter here and is ignored, as DRF ignores unknown
    query parameters.
    """

    allow = POLICY_ALLOW
    methods = _POLICY_METHODS
    options_body = _POLICY_OPTIONS_BODY

    async def _handle(self, scope: Scope, receive: Receive) -> Answer:
        try:
            conn, identity = await self._start(scope, receive)
        except _Answer as answer:
            return answer.response
        method = scope["method"]
        values = _query_values(scope["query_string"])
        platform_key = self._platform_key(values)
        access = await self.auth.access(identity, platform_key, None)
        if not access.platform_exists:
            raise errors.platform_not_found()
        if not access.is_member and not access.is_admin:
            raise errors.not_a_member()
        if method not in ("GET", "HEAD") and not access.is_admin:
            raise errors.policy_admin_only()
        conditions = self._conditions(conn)
        current = await self.policies.current(platform_key)
        if method in ("GET", "HEAD"):
            view: Literal["admin", "member"] = "admin" if access.is_admin else "member"
            if current.fixed:
                # The host may change a fixed policy at any time: no version to validate.
                return self._policy_response(platform_key, current.policy, None, view)
            if conditions.not_modified(current.record):
                return Response(
                    status_code=304,
                    headers={"ETag": conditional.etag(current.record), "Vary": "Authorization"},
                )
            return self._policy_response(platform_key, current.policy, current.record, view)
        if current.fixed:
            raise errors.policy_managed()
        actor = identity.username
        if method == "DELETE":
            change = changes.replace(_DEFAULT_DOCUMENT, conditions=conditions, actor=actor)
            await self._update(platform_key, POLICY_USERNAME, change)
            return Response(status_code=204)
        dry_run = _boolean(values, "dry_run")
        data = await self._body(conn, receive, self.policies.limits.max_schema_depth)
        try:
            policy = parse_policy(data, self.policies.limits)
        except PolicyInvalid as exc:
            raise errors.validation_error(exc.errors) from None
        if dry_run:
            record = current.record
            if not conditions.admits(record):
                reason = conditions.refusal(record)
                raise errors.precondition_failed(reason, conditional.etag(record))
        else:
            change = changes.replace(
                policy.to_json("admin"), conditions=conditions, actor=actor
            )
            record = await self._update(platform_key, POLICY_USERNAME, change)
        found = await self.policies.violations(platform_key, policy)
        extra: dict[str, object] = {
            "violating_documents": found.count,
            "examples": found.examples,
        }
        return self._policy_response(platform_key, policy, record, "admin", extra)

    @staticmethod
    def _policy_response(
        platform_key: str,
        policy: Policy,
        record: Record | None,
        view: Literal["admin", "member"],
        extra: dict[str, object] | None = None,
    ) -> Response:
        body: dict[str, object] = {"platform_key": platform_key, **policy.to_json(view)}
        body["version"] = 0 if record is None else record.version
        updated = None if record is None else record.updated_at
        body["updated_at"] = None if updated is None else json.loads(_iso(updated))
        body.update(extra or {})
        headers = {"Vary": "Authorization", "Allow": POLICY_ALLOW}
        if record is not None:
            headers["ETag"] = conditional.etag(record)
        return Response(dump(body).encode(), headers=headers, media_type="application/json")


_DEFAULT_DOCUMENT = DEFAULT_POLICY.to_json("admin")


def _boolean(values: dict[str, list[bytes]], name: str) -> bool:
    """A boolean query parameter as DRF's BooleanField reads it (the last value counts)."""
    given = values.get(name)
    if not given:
        return False
    if given[-1] in _TRUE:
        return True
    if given[-1] in _FALSE:
        return False
    raise errors.not_a_boolean(name)


def _hidden(policy: Policy | None, member: bool) -> Policy | None:
    """The policy whose private keys a response must leave out, if any."""
    return policy if member and policy is not None and policy.private_keys else None


_QUERY_NAMES = frozenset(
    (b"platform_key", b"username", b"dry_run", b"history", b"cursor", b"limit", b"all_users",
     b"last_event_id")
) | {b"filter"}


def _history_purge(query_string: bytes) -> bool:
    """`history=purge` on a DELETE (erasure); any other value is refused, so that a typo
    never leaves history a client meant to erase."""
    given = _query_values(query_string).get("history")
    if not given:
        return False
    if given[-1] == b"purge":
        return True
    return _refuse_choice("history", given[-1])


def _refuse_choice(name: str, value: bytes) -> bool:
    shown = value.decode("utf-8", "replace")
    raise errors.validation_error({name: [errors.NOT_A_CHOICE.format(shown)]})


def _query_values(query_string: bytes) -> dict[str, list[bytes]]:
    """The raw values of `platform_key` and `username`, percent-decoded, not yet text.

    Decoding happens per value and strictly: `parse_qsl` would turn every invalid UTF-8
    sequence into U+FFFD, so two different byte strings could name the same user.
    """
    values: dict[str, list[bytes]] = {}
    for field in query_string.split(b"&"):
        raw_name, _, raw_value = field.partition(b"=")
        name = unquote_to_bytes(raw_name.replace(b"+", b" "))
        if name in _QUERY_NAMES:
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


async def _send_head(response: Answer, send: Send) -> None:
    """Send a response's status and headers without its body (HEAD)."""
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": response.raw_headers,
        }
    )
    await send({"type": "http.response.body", "body": b""})
