"""Every cursor a client holds, in one codec: pages of history and of the admin listing, and
the event ids of live changes.

Each is opaque to clients but must stay stable across releases (a client resumes with what
it kept), so the texts are exactly what earlier releases issued:

- a page cursor is `<tag>=<position>` in unpadded URL-safe base64: `v=<version>` (history:
  revisions older than it), `u=<username>` (listing: records after it);
- an event id is `v.<version>` on a one-user stream, `s.<seq>` on a platform's.

A cursor that is not one of ours decodes to `None` (pages: 404 "Invalid cursor"; events:
older than any history, so a snapshot or a reset).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Literal

from starlette.datastructures import URL
from starlette.types import Scope
from urllib.parse import quote

__all__ = [
    "EventKind",
    "event_id",
    "next_url",
    "page_cursor",
    "read_event_id",
    "read_history_cursor",
    "read_listing_cursor",
]

_VERSION = re.compile(r"[1-9][0-9]{0,17}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_EVENT_ID = re.compile(r"([vs])\.([0-9]{1,18})")

EventKind = Literal["user", "platform"]


def page_cursor(tag: Literal["v", "u"], position: int | str) -> str:
    """The cursor of the page after `position` (`v`: a version, `u`: a username)."""
    return base64.urlsafe_b64encode(f"{tag}={position}".encode()).decode().rstrip("=")


def _read_page_cursor(cursor: str, tag: str) -> str | None:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        text = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    prefix = tag + "="
    return text[len(prefix) :] if text.startswith(prefix) else None


def read_history_cursor(cursor: str) -> int | None:
    """The version a history cursor names, or `None`."""
    value = _read_page_cursor(cursor, "v")
    return int(value) if value is not None and _VERSION.fullmatch(value) else None


def read_listing_cursor(cursor: str) -> str | None:
    """The username a listing cursor names, or `None`."""
    value = _read_page_cursor(cursor, "u")
    return None if value is None or _CONTROL.search(value) else value


def event_id(kind: EventKind, position: int) -> str:
    """An event id: `v.<version>` on a one-user stream, `s.<seq>` on a platform's."""
    return f"{'v' if kind == 'user' else 's'}.{position}"


def read_event_id(kind: EventKind, text: str | None) -> int | None:
    """The position a client's `Last-Event-ID` names on this kind of stream; -1 when it names
    none of ours (older than any history: a snapshot or a reset); `None` without one."""
    if text is None:
        return None
    match = _EVENT_ID.fullmatch(text.strip())
    if match is None or match.group(1) != ("v" if kind == "user" else "s"):
        return -1
    return int(match.group(2))


def next_url(scope: Scope, cursor: str) -> str:
    """The request's own absolute URL with `cursor` replaced, every other parameter kept as
    the client sent it (DRF's `replace_query_param`)."""
    kept = [
        field
        for field in scope["query_string"].split(b"&")
        if field and field.partition(b"=")[0] != b"cursor"
    ]
    query = "&".join([quote(field, safe="=&%+/:,;@!$'()*~-._") for field in kept])
    query = (query + "&" if query else "") + f"cursor={cursor}"
    base = URL(scope={**scope, "query_string": b""})
    return str(base.replace(query=query))
