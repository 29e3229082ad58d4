"""Every error the endpoint can answer, in one table.

The bodies are the contract's (../shared/API.md) and Django REST Framework's, byte for byte:
handlers raise, one place renders.  The failures below HTTP live with their layers: a store's
`StoreUnavailable` in `stores/base.py`, a write's refusals in `changes.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .exceptions import PlatformMetadataError


class ApiError(PlatformMetadataError):
    """A refused request: a status, a JSON body and optional extra headers."""

    def __init__(
        self, status_code: int, body: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status_code, body)
        self.status_code = status_code
        self.body = body
        self.headers = dict(headers or {})


class AuthenticationFailed(PlatformMetadataError):
    """Raised by an `AuthBackend` for credentials that are present but wrong.

    `detail` is sent to the client as `{"detail": ...}` with status 401.
    """

    def __init__(self, detail: str = "Invalid token.") -> None:
        super().__init__(detail)
        self.detail = detail


WWW_AUTHENTICATE = {"WWW-Authenticate": "Token"}
RETRY_AFTER_SECONDS = 1


def not_authenticated() -> ApiError:
    return ApiError(
        401, {"detail": "Authentication credentials were not provided."}, WWW_AUTHENTICATE
    )


def authentication_failed(detail: str) -> ApiError:
    return ApiError(401, {"detail": detail}, WWW_AUTHENTICATE)


def method_not_allowed(method: str, allow: str) -> ApiError:
    return ApiError(405, {"detail": f'Method "{method}" not allowed.'}, {"Allow": allow})


def not_found() -> ApiError:
    return ApiError(404, {"detail": "Not found."})


def platform_key_required() -> ApiError:
    return ApiError(400, {"error": "platform_key query parameter is required"})


def bad_query(message: str) -> ApiError:
    return ApiError(400, {"error": message})


def platform_not_found() -> ApiError:
    return ApiError(404, {"error": "Platform not found"})


def admin_only() -> ApiError:
    return ApiError(403, {"error": "Only tenant admins can access other users' metadata"})


def user_not_found() -> ApiError:
    return ApiError(404, {"error": "User not found"})


def not_a_member() -> ApiError:
    return ApiError(403, {"error": "You are not a member of this platform"})


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(415, {"detail": f'Unsupported media type "{content_type}" in request.'})


def parse_error(reason: str) -> ApiError:
    return ApiError(400, {"detail": f"JSON parse error - {reason}"})


def validation_error(errors: Mapping[str, Any]) -> ApiError:
    return ApiError(400, dict(errors))


def nothing_to_do() -> ApiError:
    return ApiError(
        400,
        {"non_field_errors": ["Provide 'metadata' to update or 'delete_keys' to remove keys."]},
    )


def body_too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        {
            "detail": f"Request body is larger than the limit of {limit} bytes.",
            "limit": "max_body_bytes",
            "value": limit,
        },
    )


def document_too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        {
            "detail": f"Stored metadata would be larger than the limit of {limit} bytes.",
            "limit": "max_document_bytes",
            "value": limit,
        },
    )


def too_many_etags(header: str, limit: int) -> ApiError:
    return ApiError(
        400,
        {
            "detail": f"{header} lists more than the limit of {limit} entity tags.",
            "limit": "max_etags",
            "value": limit,
        },
    )


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


def service_unavailable() -> ApiError:
    return ApiError(
        503,
        {"detail": "The metadata store is busy or unavailable. Try again shortly."},
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def server_error(request_id: str) -> ApiError:
    return ApiError(500, {"detail": "A server error occurred.", "request_id": request_id})
