"""One exception per refusal, each carrying the status and the parsed body.

`MetadataClientError` is the root; `error_for(response)` picks the class for a refused
response, so both clients raise the same thing for the same answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from ..exceptions import PlatformMetadataError

__all__ = [
    "MetadataClientError",
    "NotAuthenticated",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "PreconditionFailed",
    "UnexpectedResponse",
    "Unavailable",
    "ValidationError",
    "error_for",
    "parse_retry_after",
]


class MetadataClientError(PlatformMetadataError):
    """A request the server refused, or an answer the client could not read.

    Attributes:
        status_code: the HTTP status of the response.
        body: the response body parsed as JSON, or `None` when it was empty or not JSON.
        headers: the response headers (case-insensitive).
    """

    def __init__(
        self, status_code: int, body: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status_code, body)
        self.status_code = status_code
        self.body = body
        self.headers = httpx.Headers(headers or {})

    @property
    def message(self) -> str | None:
        """The body's `detail` or `error` text (the contract's two shapes), if it has one."""
        if isinstance(self.body, dict):
            for name in ("detail", "error"):
                value = self.body.get(name)
                if isinstance(value, str):
                    return value
        return None

    def __str__(self) -> str:
        shown = self.message if self.message is not None else json.dumps(self.body, default=repr)
        return f"{self.status_code}: {shown}"


class NotAuthenticated(MetadataClientError):
    """401: no credentials, a malformed `Authorization` header, or an unknown token."""


class PermissionDenied(MetadataClientError):
    """403: another user's metadata without being a tenant admin, not a member of the
    platform, a member changing protected or private keys, or the policy as a member."""

    @property
    def keys(self) -> list[str]:
        """The keys a policy forbade this caller to change (`[]` for other refusals)."""
        keys = self.body.get("keys") if isinstance(self.body, dict) else None
        return [key for key in keys if isinstance(key, str)] if isinstance(keys, list) else []


class NotFound(MetadataClientError):
    """404: unknown platform, a user not on the platform, a revision not kept, a bad cursor."""


class ValidationError(MetadataClientError):
    """400: the request was malformed; `errors` holds the body's field errors.

    Field errors are DRF's shape, `{"metadata": ["..."], "delete_keys": {"0": ["..."]}}`;
    refusals worded as one sentence (`{"error": ...}`, `{"detail": ...}`) appear there too.
    An import's refusal names its bad lines, `{"lines": {"3": ["..."]}}` (also as `lines`).
    """

    @property
    def errors(self) -> dict[str, Any]:
        return dict(self.body) if isinstance(self.body, dict) else {}

    @property
    def lines(self) -> dict[int, list[str]]:
        """An import's refusal, `{"lines": {"3": [...]}}`, by line number (from 1); `{}` for
        any other refusal."""
        given = self.errors.get("lines")
        if not isinstance(given, dict):
            return {}
        return {
            int(number): [str(message) for message in messages]
            for number, messages in given.items()
            if isinstance(number, str) and number.isdigit() and isinstance(messages, list)
        }


class PreconditionFailed(MetadataClientError):
    """412: `If-Match` named a version that is no longer current.

    Attributes:
        current_etag: the ETag of the version the server holds now, from the response.
    """

    def __init__(
        self, status_code: int, body: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status_code, body, headers)
        self.current_etag: str | None = self.headers.get("etag")


class PayloadTooLarge(MetadataClientError):
    """413: the request body, or the document it would store, is over a server limit.

    The body names the limit: `{"detail": ..., "limit": "max_document_bytes", "value": N}`.
    """

    @property
    def limit(self) -> str | None:
        value = self.body.get("limit") if isinstance(self.body, dict) else None
        return value if isinstance(value, str) else None


class Unavailable(MetadataClientError):
    """503: the server's store is busy or unreachable; nothing was changed.

    Attributes:
        retry_after: seconds the server asks to wait (`Retry-After`), or `None`.
    """

    def __init__(
        self, status_code: int, body: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status_code, body, headers)
        self.retry_after = parse_retry_after(self.headers.get("retry-after"))


class UnexpectedResponse(MetadataClientError):
    """Any other answer: a status the contract does not give (405, 415, 500, a proxy's 502),
    or a success whose body or `ETag` is not what the contract says."""


_BY_STATUS: dict[int, type[MetadataClientError]] = {
    400: ValidationError,
    401: NotAuthenticated,
    403: PermissionDenied,
    404: NotFound,
    412: PreconditionFailed,
    413: PayloadTooLarge,
    503: Unavailable,
}


def error_for(response: httpx.Response) -> MetadataClientError:
    """The exception for a refused response (the caller has read its body)."""
    cls = _BY_STATUS.get(response.status_code, UnexpectedResponse)
    return cls(response.status_code, json_or_none(response), response.headers)


def json_or_none(response: httpx.Response) -> Any:
    """The body parsed as JSON, or `None` when it is empty or not JSON."""
    try:
        return json.loads(response.content) if response.content else None
    except ValueError:
        return None


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` in seconds: delay-seconds or an HTTP-date (RFC 9110 10.2.3), else `None`."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())
