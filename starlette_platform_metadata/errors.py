"""Every error the endpoint can answer, in one table.

The bodies are the contract's (docs/api.md) and Django REST Framework's, byte for byte:
handlers raise, one place renders.  The failures below HTTP live with their layers: a store's
`StoreUnavailable` in `stores/base.py`, a write's refusals in `changes.py`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .exceptions import PlatformMetadataError

# The contract's messages, each typed once: the handlers answer with them and the OpenAPI
# document (openapi/) lists them.  A template's `{}` is the one variable part.
NOT_AUTHENTICATED = "Authentication credentials were not provided."
NO_CREDENTIALS = "Invalid token header. No credentials provided."
TOKEN_HAS_SPACES = "Invalid token header. Token string should not contain spaces."
TOKEN_HAS_INVALID_CHARACTERS = (
    "Invalid token header. Token string should not contain invalid characters."
)
INVALID_TOKEN = "Invalid token."
#: Every 401 detail the package itself words (a backend may raise others).
AUTHENTICATION_DETAILS = (
    NOT_AUTHENTICATED,
    NO_CREDENTIALS,
    TOKEN_HAS_SPACES,
    TOKEN_HAS_INVALID_CHARACTERS,
    INVALID_TOKEN,
)
METHOD_NOT_ALLOWED = 'Method "{}" not allowed.'
PLATFORM_NOT_FOUND = "Platform not found"
ADMIN_ONLY = "Only tenant admins can access other users' metadata"
USER_NOT_FOUND = "User not found"
NOT_A_MEMBER = "You are not a member of this platform"
UNSUPPORTED_MEDIA_TYPE = 'Unsupported media type "{}" in request.'
PARSE_ERROR = "JSON parse error - {}"
KEYS_FORBIDDEN = "Only tenant admins can change these keys"
#: A member's schema errors that would speak of what it may not read become this one message
#: (member_errors.py): it names no key and says nothing of any value or count.
MEMBER_SCHEMA_ERROR = (
    "the document does not satisfy a rule of the schema that may depend on keys only tenant"
    " admins can read"
)
POLICY_ADMIN_ONLY = "Only tenant admins can change the platform policy"
POLICY_MANAGED = "The platform policy is managed by the host application"
NOT_A_BOOLEAN = "Must be a valid boolean."
NOT_A_CHOICE = '"{}" is not a valid choice.'
INVALID_CURSOR = "Invalid cursor"
REVISION_NOT_FOUND = "Revision not found"
NOT_AN_INTEGER = "A valid integer is required."
INTEGER_TOO_SMALL = "Ensure this value is greater than or equal to {}."
INTEGER_TOO_LARGE = "Ensure this value is less than or equal to {}."
REQUIRED = "This field is required."
ALL_USERS_WITH_USERNAME = "Give either username or all_users, not both."
TOO_MANY_STREAMS = "Too many open event streams. Try again shortly."
TOO_MANY_STREAMS_OF_YOURS = "You have too many open event streams. Close one and try again."
TOO_MANY_PLATFORM_STREAMS = "Too many open event streams on this platform. Try again later."
STORE_UNAVAILABLE = "The metadata store is busy or unavailable. Try again shortly."
# The ready auth backends (jwt_auth.py, drf_auth.py).  DRF's own words for an inactive user.
USER_INACTIVE = "User inactive or deleted."
TOKEN_EXPIRED = "Token has expired."
TOKEN_NOT_YET_VALID = "Token is not yet valid."
TOKEN_WRONG_ISSUER = "Token has the wrong issuer."
TOKEN_WRONG_AUDIENCE = "Token has the wrong audience."
TOKEN_MISSING_CLAIM = 'Token has no "{}" claim.'
TOKEN_BAD_CLAIM = 'Token has an invalid "{}" claim.'
TOKEN_MALFORMED = "Token is malformed."
TOKEN_ALGORITHM_REFUSED = "Token is signed with an algorithm that is not allowed."
TOKEN_UNKNOWN_KEY = "Token is signed with an unknown key."
TOKEN_BAD_SIGNATURE = "Token signature is invalid."
KEYS_UNAVAILABLE = (
    "The token signing keys cannot be fetched and none are cached. Try again shortly."
)
SERVER_ERROR = "A server error occurred."
# The answers of the HTTP protocol itself (uvicorn_http.py), before any request reaches an app:
# ready bytes, since no app renders them.
HEAD_TOO_LARGE = b'{"detail":"Request line and headers too large."}'
HEAD_TIMEOUT = b'{"detail":"Request headers not received in time."}'
MALFORMED_REQUEST = b'{"detail":"Invalid HTTP request received."}'

#: DRF's challenge: the `WWW-Authenticate` of every 401 unless the `AuthBackend` names its own.
TOKEN_CHALLENGE = "Token"

# The admin listing, export and import (`<mount>/users/`).
FILTER_NOT_JSON = "Not valid JSON: {}"
FILTER_NOT_OBJECT = "Must be a JSON object of top-level keys to values."
FILTER_TOO_MANY_KEYS = "Ensure this field has no more than {} keys."
NOT_AN_IMPORT_LINE = 'Expected an object {{"username": ..., "metadata": {{...}}}}, but got {}.'
DUPLICATE_USERNAME = "username: also given on line {}."


class ApiError(PlatformMetadataError):
    """A refused request: a status, a JSON body and optional extra headers.

    `reason` names why a 503 was answered (`UNAVAILABLE_REASONS`), for metrics and logs."""

    def __init__(
        self,
        status_code: int,
        body: Any,
        headers: Mapping[str, str] | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(status_code, body)
        self.status_code = status_code
        self.body = body
        self.headers = dict(headers or {})
        self.reason = reason


class AuthenticationFailed(PlatformMetadataError):
    """Raised by an `AuthBackend` for credentials that are present but wrong.

    `detail` is sent to the client as `{"detail": ...}` with status 401.  `challenge`, when
    given, is that 401's `WWW-Authenticate` instead of the backend's own: a backend that
    speaks two schemes answers a bad Bearer token with a Bearer challenge (RFC 6750's
    `error="invalid_token"`) while a request without credentials keeps the backend's.
    """

    def __init__(self, detail: str = INVALID_TOKEN, challenge: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.challenge = challenge


class AuthUnavailable(PlatformMetadataError):
    """Raised by an `AuthBackend` that cannot check credentials now (its key server is down
    and it holds no key): the endpoint answers 503 with `detail` and `Retry-After`, not 401,
    so a client retries instead of discarding a good token."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


RETRY_AFTER_SECONDS = 1
# A caller's or a platform's own streams free up only when some of them close: a client
# told to come back in a second would only be refused again.
STREAM_QUOTA_RETRY_AFTER_SECONDS = 10
# A key server that is down is asked again at most this often (jwks.py): a sooner retry
# would only be refused again.
AUTH_RETRY_AFTER_SECONDS = 5



def not_authenticated(challenge: str = TOKEN_CHALLENGE) -> ApiError:
    return ApiError(401, {"detail": NOT_AUTHENTICATED}, {"WWW-Authenticate": challenge})


def authentication_failed(detail: str, challenge: str = TOKEN_CHALLENGE) -> ApiError:
    return ApiError(401, {"detail": detail}, {"WWW-Authenticate": challenge})


def auth_unavailable(detail: str) -> ApiError:
    """503: the auth backend cannot check credentials now (`AuthUnavailable`)."""
    return ApiError(503, {"detail": detail}, {"Retry-After": str(AUTH_RETRY_AFTER_SECONDS)})


def method_not_allowed(method: str, allow: str) -> ApiError:
    return ApiError(405, {"detail": METHOD_NOT_ALLOWED.format(method)}, {"Allow": allow})


def not_found() -> ApiError:
    return ApiError(404, {"detail": "Not found."})


#: What a resource offers, by resource, when the server's store cannot serve it.
NOT_AVAILABLE = {
    "history/": "History is not kept on this server.",
    "restore/": "History is not kept on this server.",
    "events/": "Live changes are not available on this server.",
    "users/": "Listing users' metadata is not available on this server.",
    "users/ import": "Import is not available on this server.",
}


def not_available(resource: str) -> ApiError:
    """404: the server's store, or its settings, do not provide `resource`."""
    return ApiError(404, {"detail": NOT_AVAILABLE[resource]})


def platform_key_required() -> ApiError:
    return ApiError(400, {"error": "platform_key query parameter is required"})


def bad_query(message: str) -> ApiError:
    return ApiError(400, {"error": message})


def platform_not_found() -> ApiError:
    return ApiError(404, {"error": PLATFORM_NOT_FOUND})


def admin_only() -> ApiError:
    return ApiError(403, {"error": ADMIN_ONLY})


def user_not_found() -> ApiError:
    return ApiError(404, {"error": USER_NOT_FOUND})


def not_a_member() -> ApiError:
    return ApiError(403, {"error": NOT_A_MEMBER})


def keys_forbidden(keys: list[str]) -> ApiError:
    return ApiError(403, {"error": KEYS_FORBIDDEN, "keys": keys})


def schema_violation(messages: list[str]) -> ApiError:
    return ApiError(400, {"metadata": messages})


def policy_admin_only() -> ApiError:
    return ApiError(403, {"error": POLICY_ADMIN_ONLY})


def policy_managed() -> ApiError:
    return ApiError(403, {"error": POLICY_MANAGED})


def invalid_cursor() -> ApiError:
    return ApiError(404, {"detail": INVALID_CURSOR})


def revision_not_found() -> ApiError:
    return ApiError(404, {"error": REVISION_NOT_FOUND})


def not_a_boolean(name: str) -> ApiError:
    return ApiError(400, {name: [NOT_A_BOOLEAN]})


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(415, {"detail": UNSUPPORTED_MEDIA_TYPE.format(content_type)})


def parse_error(reason: str) -> ApiError:
    return ApiError(400, {"detail": PARSE_ERROR.format(reason)})


def validation_error(errors: Mapping[str, Any]) -> ApiError:
    return ApiError(400, dict(errors))


def nothing_to_do() -> ApiError:
    return ApiError(
        400,
        {"non_field_errors": ["Provide 'metadata' to update or 'delete_keys' to remove keys."]},
    )


# A limit refusal's body names the `Limits` field it hit as `limit`.
MAX_BODY_BYTES = "max_body_bytes"
MAX_DOCUMENT_BYTES = "max_document_bytes"
MAX_ETAGS = "max_etags"
MAX_IMPORT_BYTES = "max_import_bytes"
MAX_PRIVATE_BYTES = "max_private_bytes"
#: The detail of each limit refusal, by the limit it names.
LIMIT_DETAILS = {
    MAX_BODY_BYTES: "Request body is larger than the limit of {limit} bytes.",
    MAX_DOCUMENT_BYTES: "Stored metadata would be larger than the limit of {limit} bytes.",
    MAX_ETAGS: "{header} lists more than the limit of {limit} entity tags.",
    MAX_IMPORT_BYTES: "Import body is larger than the limit of {limit} bytes.",
    MAX_PRIVATE_BYTES: "Private metadata would be larger than the limit of {limit} bytes.",
}


def _limit_exceeded(status_code: int, name: str, limit: int, header: str = "") -> ApiError:
    detail = LIMIT_DETAILS[name].format(limit=limit, header=header)
    return ApiError(status_code, {"detail": detail, "limit": name, "value": limit})


def body_too_large(limit: int) -> ApiError:
    return _limit_exceeded(413, MAX_BODY_BYTES, limit)


def document_too_large(limit: int, name: str = MAX_DOCUMENT_BYTES) -> ApiError:
    """413 for a stored document over `name`: `max_document_bytes`, or the private keys' own
    `max_private_bytes` (sizes.py)."""
    return _limit_exceeded(413, name, limit)


def too_many_etags(header: str, limit: int) -> ApiError:
    return _limit_exceeded(400, MAX_ETAGS, limit, header)


def import_too_large(limit: int) -> ApiError:
    return _limit_exceeded(413, MAX_IMPORT_BYTES, limit)


def bad_filter(message: str) -> ApiError:
    return ApiError(400, {"filter": [message]})


def import_refused(lines: Mapping[str, list[str]]) -> ApiError:
    """400 naming each bad line of an import, counted from 1; nothing was written."""
    return ApiError(400, {"lines": dict(lines)})


#: The 412 details, by which condition the record fails: `If-Match` (it changed), or
#: `If-None-Match: *` (something is stored) or `If-None-Match: "n"` (it is still version n), or
#: a malformed `If-None-Match`, which never lets a write through.
PRECONDITION_DETAILS = {
    "changed": "Precondition failed: the metadata changed since the given ETag.",
    "stored": "Precondition failed: metadata is already stored.",
    "unchanged": "Precondition failed: the metadata still has one of the given ETags.",
    "malformed": "Precondition failed: If-None-Match is not * or a list of entity tags.",
}


def precondition_failed(reason: str, etag: str) -> ApiError:
    """412 with the current ETag, so a client can retry without another GET of the version."""
    return ApiError(412, {"detail": PRECONDITION_DETAILS[reason]}, {"ETag": etag})


# Every reason a 503 is answered for: the label of the unavailable-responses metric, and
# readiness's `reason` (docs/monitoring.md has a runbook for each).
STORE_UNAVAILABLE_REASON = "store_unavailable"
TOO_MANY_STREAMS_REASON = "too_many_streams"
SHUTTING_DOWN_REASON = "shutting_down"
STORE_TIMEOUT_REASON = "store_timeout"
SCHEMA_NEWER_REASON = "schema_newer"
SCHEMA_OLDER_REASON = "schema_older"
SCHEMA_MISSING_REASON = "schema_missing"
STORE_ERROR_REASON = "store_error"

#: Readiness's detail, by the reason it is not ready (`{found}` and `{expected}`: schema
#: versions; `{timeout}`: seconds).
NOT_READY_DETAILS = {
    STORE_UNAVAILABLE_REASON: "The metadata store is busy or unreachable.",
    STORE_TIMEOUT_REASON: "The metadata store did not answer within {timeout} s.",
    SCHEMA_NEWER_REASON: (
        "The metadata tables are schema version {found}, newer than this release's"
        " {expected}: a newer release has migrated them."
    ),
    SCHEMA_OLDER_REASON: (
        "The metadata tables are schema version {found}, older than this release's"
        " {expected}."
    ),
    SCHEMA_MISSING_REASON: "The metadata tables, or their schema version, are missing.",
    STORE_ERROR_REASON: "The metadata store failed its check; the server's log says why.",
}

#: Every reason of a 503 the package answers, the API's and readiness's.
UNAVAILABLE_REASONS = (
    STORE_UNAVAILABLE_REASON,
    TOO_MANY_STREAMS_REASON,
    SHUTTING_DOWN_REASON,
    *(reason for reason in NOT_READY_DETAILS if reason != STORE_UNAVAILABLE_REASON),
)

#: The bodies of liveness and readiness: nothing of any tenant.
ALIVE = {"status": "ok"}
READY = {"status": "ready"}


def service_unavailable() -> ApiError:
    return ApiError(
        503,
        {"detail": STORE_UNAVAILABLE},
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
        reason=STORE_UNAVAILABLE_REASON,
    )


def too_many_streams(shutting_down: bool = False) -> ApiError:
    """503: the process's `max_streams` are open, or it is shutting down (the same answer;
    the reason tells them apart in metrics)."""
    return ApiError(
        503,
        {"detail": TOO_MANY_STREAMS},
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
        reason=SHUTTING_DOWN_REASON if shutting_down else TOO_MANY_STREAMS_REASON,
    )


def not_ready(reason: str, **values: object) -> ApiError:
    """503 of readiness: `{"status": "unavailable", "reason": ..., "detail": ...}`."""
    detail = NOT_READY_DETAILS[reason].format(**values)
    body = {"status": "unavailable", "reason": reason, "detail": detail}
    return ApiError(503, body, {"Cache-Control": "no-store"}, reason=reason)


def stream_quota(bound: str) -> ApiError:
    """429 (DRF's throttled shape): the caller's, or the platform's, share of streams is
    taken; the process has room for others."""
    detail = TOO_MANY_STREAMS_OF_YOURS if bound == "identity" else TOO_MANY_PLATFORM_STREAMS
    return ApiError(
        429, {"detail": detail}, {"Retry-After": str(STREAM_QUOTA_RETRY_AFTER_SECONDS)}
    )


def server_error(request_id: str) -> ApiError:
    return ApiError(500, {"detail": SERVER_ERROR, "request_id": request_id})


# Messages can quote a client's input (a schema's `enum`, a `$ref`): a refusal stays readable
# and small.
_MAX_MESSAGE = 500


def truncate(message: str) -> str:
    """`message`, cut to at most 500 characters (an ellipsis says where)."""
    if len(message) <= _MAX_MESSAGE:
        return message
    return message[: _MAX_MESSAGE - 1] + "\u2026"


def quoted(text: str) -> str:
    """`text` as a JSON string, for naming a key or a reference inside a message."""
    return json.dumps(text, ensure_ascii=False)
