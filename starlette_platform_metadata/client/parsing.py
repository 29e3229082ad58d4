"""Reading answers: each parser takes a response (or one streamed line or event) and returns
the typed result, or raises the refusal's exception.

An answer with the expected status but a body off the contract is `UnexpectedResponse`: every
reader below raises `KeyError`, `TypeError` or `ValueError` on such a body, and `_read` turns
them into it, in one place.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import httpx

from .errors import UnexpectedResponse, error_for, json_or_none
from .models import (
    Change,
    EventName,
    ListedRecord,
    MetadataRecord,
    Page,
    PlatformPolicy,
    PolicyUpdate,
    PolicyViolation,
    Revision,
)

__all__ = [
    "opened",
    "parse_change",
    "parse_export_line",
    "parse_history",
    "parse_imported",
    "parse_listing",
    "parse_no_content",
    "parse_policy",
    "parse_policy_update",
    "parse_record",
]

T = TypeVar("T")

#: What the readers raise on a body off the contract (`UnicodeDecodeError` is a `ValueError`).
_OFF_CONTRACT = (KeyError, TypeError, ValueError)

_ETAG = re.compile(r'^(?:W/)?"([0-9]+)"$')


def _body(response: httpx.Response, status: int) -> dict[str, Any]:
    """The JSON object of a `status` answer; any other status raises its refusal."""
    if response.status_code != status:
        raise error_for(response)
    body = json_or_none(response)
    if not isinstance(body, dict):
        raise _unexpected(response)
    return body


def _unexpected(response: httpx.Response) -> UnexpectedResponse:
    return UnexpectedResponse(response.status_code, json_or_none(response), response.headers)


def _read(response: httpx.Response, read: Callable[[dict[str, Any]], T]) -> T:
    """`read` applied to the JSON object of a 200: a refusal raises its exception, a body
    `read` cannot read raises `UnexpectedResponse`."""
    body = _body(response, 200)
    try:
        return read(body)
    except _OFF_CONTRACT:
        raise _unexpected(response) from None


def _datetime(value: Any) -> datetime | None:
    # RFC 3339 with `Z` and optional fractions: what `fromisoformat` reads since 3.11.
    return None if value is None else datetime.fromisoformat(value)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def _dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError("not an object")
    return value


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("not an integer")
    return value


def _listed(body: Any) -> ListedRecord:
    """A success body as a record."""
    return ListedRecord(
        username=_str(body["username"]),
        platform_key=_str(body["platform_key"]),
        metadata=_dict(body["metadata"]),
        created_at=_datetime(body["created_at"]),
        updated_at=_datetime(body["updated_at"]),
    )


def _record(body: Any, etag: str | None) -> MetadataRecord:
    match = _ETAG.match(etag or "")
    if etag is None or match is None:
        raise ValueError("no ETag")
    listed = _listed(body)
    return MetadataRecord(
        username=listed.username,
        platform_key=listed.platform_key,
        metadata=listed.metadata,
        etag=etag,
        version=int(match.group(1)),
        created_at=listed.created_at,
        updated_at=listed.updated_at,
    )


def parse_record(response: httpx.Response) -> MetadataRecord:
    return _read(response, lambda body: _record(body, response.headers.get("etag")))


def parse_no_content(response: httpx.Response) -> None:
    if response.status_code != 204:
        raise error_for(response)


def _revision(item: Any) -> Revision:
    return Revision(
        version=int(item["version"]),
        operation=_str(item["operation"]),
        actor=None if item["actor"] is None else _str(item["actor"]),
        at=datetime.fromisoformat(item["at"]),
        metadata=_dict(item["metadata"]),
        changed_keys=tuple(_str(key) for key in item["changed_keys"]),
    )


def _page(response: httpx.Response, item: Callable[[Any], T]) -> Page[T]:
    def read(body: dict[str, Any]) -> Page[T]:
        following = body.get("next")
        if following is not None and not isinstance(following, str):
            raise TypeError("next")
        return Page(tuple(item(each) for each in body["results"]), following)

    return _read(response, read)


def parse_history(response: httpx.Response) -> Page[Revision]:
    return _page(response, _revision)


def parse_listing(response: httpx.Response) -> Page[ListedRecord]:
    """A page of `users/`: success bodies, which carry no version."""
    return _page(response, _listed)


def parse_imported(response: httpx.Response) -> int:
    return _read(response, lambda body: _int(body.get("imported")))


def _policy(body: dict[str, Any], etag: str | None) -> PlatformPolicy:
    private = body.get("private_keys")
    return PlatformPolicy(
        platform_key=_str(body["platform_key"]),
        protected_keys=tuple(_str(key) for key in body["protected_keys"]),
        private_keys=None if private is None else tuple(_str(key) for key in private),
        schema=body["schema"],
        version=int(body["version"]),
        updated_at=_datetime(body["updated_at"]),
        etag=etag,
        raw=body,
    )


def parse_policy(response: httpx.Response) -> PlatformPolicy:
    return _read(response, lambda body: _policy(body, response.headers.get("etag")))


def parse_policy_update(response: httpx.Response) -> PolicyUpdate:
    def read(body: dict[str, Any]) -> PolicyUpdate:
        count = body["violating_documents"]
        examples = tuple(
            PolicyViolation(_str(item["username"]), tuple(_str(e) for e in item["errors"]))
            for item in body["examples"]
        )
        return PolicyUpdate(
            policy=_policy(body, response.headers.get("etag")),
            violating_documents=None if count is None else int(count),
            examples=examples,
            raw=body,
        )

    return _read(response, read)


# --- streamed answers ------------------------------------------------------------------------


def opened(media_type: str) -> Callable[[httpx.Response], None]:
    """The `parse` of a streamed call, given its response once the headers are in: returns
    when it is the stream asked for; raises the refusal's exception otherwise (the client
    has read the body of anything but a 200 before)."""

    def parse(response: httpx.Response) -> None:
        if response.status_code != 200:
            raise error_for(response)
        given = response.headers.get("content-type", "").partition(";")[0].strip().lower()
        if given != media_type:
            # A 200 that is not the stream (a proxy's page): its body is left unread.
            raise UnexpectedResponse(200, None, response.headers)

    return parse


def parse_export_line(line: bytes, response: httpx.Response) -> ListedRecord:
    """One line of an export's NDJSON body (`response`, streamed) as a record."""
    try:
        return _listed(json.loads(line))
    except _OFF_CONTRACT:
        raise UnexpectedResponse(200, None, response.headers) from None


def parse_change(event: EventName, event_id: str, data: str, platform_key: str) -> Change:
    """One event's data as a `Change`; data off the contract is `UnexpectedResponse`."""
    try:
        body = _dict(json.loads(data))
        if event == "reset":
            return Change(event, event_id, platform_key, None, {}, None, None, None, None, None)
        actor, operation, version = body["actor"], body["operation"], _int(body["version"])
        record = _listed(body)
        return Change(
            event=event,
            id=event_id,
            platform_key=record.platform_key,
            username=record.username,
            metadata=record.metadata,
            version=version,
            actor=None if actor is None else _str(actor),
            operation=None if operation is None else _str(operation),
            created_at=record.created_at,
            updated_at=record.updated_at,
        )
    except _OFF_CONTRACT:
        raise UnexpectedResponse(200, {"event": event, "id": event_id, "data": data}) from None
