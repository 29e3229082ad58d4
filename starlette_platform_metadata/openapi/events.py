"""The events resource's fragment: `/events/` (EXTENSIONS.md section 3).

Live changes of one user's metadata, or (tenant admins, `all_users`) of a whole platform's, as
Server-Sent Events, resumed with `Last-Event-ID` or `last_event_id`.  Its own components: those
three parameters, and the `TooManyOwnStreams` (429) and `EventsUnavailable` (503) answers.
"""

from __future__ import annotations

from typing import Any

from .. import errors
from .base import Context, Fragment, detail_body, header, json_content, operation, ref, retry_after

__all__ = ["fragment"]


def fragment(context: Context) -> Fragment:
    """`/events/`: GET, by whoever may GET the metadata (`all_users`: tenant admins)."""
    return Fragment(
        paths={"/events/": _path_item()},
        components={"responses": _responses(), "parameters": _parameters()},
    )


def _path_item() -> dict[str, Any]:
    stream = operation(
        "Live changes as Server-Sent Events (whoever may GET; all_users: tenant admins)",
        {
            "200": {
                "description": (
                    "`text/event-stream`: events `snapshot` (a one-user stream without a "
                    "cursor), `change` and `reset`, each with an `id:` (an opaque cursor for "
                    "`Last-Event-ID`) and `data:` one line of JSON, the GET body plus "
                    "`version`, `actor` and `operation`; a comment at least every 15 s."
                ),
                "headers": {"Cache-Control": header("Always `no-store`.")},
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }
        },
        conditional=(),
        parameters=("platform_key", "username", "all_users", "last_event_id", "LastEventID"),
    )
    stream["responses"]["429"] = ref("responses", "TooManyOwnStreams")
    stream["responses"]["503"] = ref("responses", "EventsUnavailable")
    return {"description": "Changes of users' metadata, live.", "get": stream}


def _responses() -> dict[str, Any]:
    return {
        "TooManyOwnStreams": {
            "description": (
                "The caller's, or the platform's, share of this process's streams is taken."
            ),
            "headers": {"Retry-After": retry_after()},
            "content": json_content(
                detail_body(errors.TOO_MANY_STREAMS_OF_YOURS, errors.TOO_MANY_PLATFORM_STREAMS)
            ),
        },
        "EventsUnavailable": {
            "description": "Too many open streams in this process, or the store is unavailable.",
            "headers": {"Retry-After": retry_after()},
            "content": json_content(detail_body(errors.TOO_MANY_STREAMS, errors.STORE_UNAVAILABLE)),
        },
    }


def _parameters() -> dict[str, Any]:
    return {
        "all_users": {
            "name": "all_users",
            "in": "query",
            "required": False,
            "description": "Every user of the platform (tenant admins; not with username).",
            "schema": {"type": "boolean", "default": False},
        },
        "last_event_id": {
            "name": "last_event_id",
            "in": "query",
            "required": False,
            "description": "Resume after this event id (for clients that cannot set headers).",
            "schema": {"type": "string"},
        },
        "LastEventID": {
            "name": "Last-Event-ID",
            "in": "header",
            "required": False,
            "description": "Resume after this event id: replays exactly what was missed.",
            "schema": {"type": "string"},
        },
    }
