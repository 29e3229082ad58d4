"""The response layer every resource answers through: the success body, JSON answers, error
bodies, 304, and HEAD.

Bodies are built around stored JSON text without decoding it: a record is read far more
often than written, so the same timestamps and names come back request after request and
each is rendered once (bounded caches; all they hold is also in the responses they speed up).
"""

from __future__ import annotations

import functools
from datetime import datetime, timezone
from typing import Any, Protocol

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from . import conditional
from .errors import ApiError
from .jsontext import dump
from .stores.base import Record

__all__ = [
    "Answer",
    "RecordResponse",
    "error_response",
    "iso",
    "json_response",
    "not_modified",
    "render_record",
    "send_head",
]


class Answer(Protocol):
    """What a resource's handler answers: a Starlette `Response`, or a response of our own
    (a prepared record, a stream, an export) with the same three members."""

    status_code: int

    @property
    def raw_headers(self) -> list[tuple[bytes, bytes]]: ...

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...


@functools.lru_cache(maxsize=4096)
def iso(value: datetime | None) -> str:
    """A timestamp as DRF's DateTimeField renders it, as JSON: ISO 8601 in UTC, "+00:00"
    written as "Z"; `null` for none."""
    if value is None:
        return "null"
    text = value.astimezone(timezone.utc).isoformat()
    return '"' + text.removesuffix("+00:00") + 'Z"'


_json_string = functools.lru_cache(maxsize=4096)(dump)


def render_record(username: str, platform_key: str, record: Record) -> bytes:
    """The success body, built around the stored JSON text without decoding it."""
    return (
        f'{{"username":{_json_string(username)},"platform_key":{_json_string(platform_key)},'
        f'"metadata":{record.metadata_json},'
        f'"created_at":{iso(record.created_at)},"updated_at":{iso(record.updated_at)}}}'
    ).encode()


class RecordResponse:
    """A success response with headers prepared once: the hot path skips `Response`'s work."""

    __slots__ = ("body", "raw_headers", "status_code")

    def __init__(self, body: bytes, etag: str, allow: bytes) -> None:
        self.status_code = 200
        self.body = body
        self.raw_headers = [
            (b"content-type", b"application/json"),
            (b"vary", b"Authorization"),
            (b"allow", allow),
            (b"etag", etag.encode()),
            (b"content-length", str(len(body)).encode()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body})


def json_response(
    body: Any, headers: dict[str, str] | None = None, status_code: int = 200
) -> Response:
    """`body` as the package's compact JSON (bytes are sent as they are)."""
    content = body if isinstance(body, bytes) else dump(body).encode()
    return Response(content, status_code, headers, media_type="application/json")


def error_response(error: ApiError) -> Response:
    """An `ApiError` as the contract's JSON body, status and headers."""
    return json_response(error.body, error.headers, error.status_code)


def not_modified(record: Record) -> Response:
    """304: RFC 9110 15.4.5 repeats the ETag and Vary the 200 would carry."""
    return Response(
        status_code=304, headers={"ETag": conditional.etag(record), "Vary": "Authorization"}
    )


async def send_head(response: Answer, send: Send) -> None:
    """Send a response's status and headers without its body (HEAD)."""
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": response.raw_headers,
        }
    )
    await send({"type": "http.response.body", "body": b""})
