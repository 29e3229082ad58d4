"""The users resource's fragment: `/users/` (EXTENSIONS.md section 4), for tenant admins.

GET lists a platform's stored records a page at a time (`filter`, `cursor`, `limit`), or
exports them all as NDJSON; POST imports NDJSON, all or nothing.  Its own components: the
`UsersPage`, `ImportResult`, `UsersValidationError` and `ImportRefused` bodies, the
`UsersBadRequest`, `ImportBadRequest`, `UsersForbidden` and `UsersNotFound` answers, and the
`filter` and `users_limit` parameters (the latter's query name is `limit`).
"""

from __future__ import annotations

from typing import Any

from .. import errors
from ..limits import Limits
from .base import (
    Context,
    Fragment,
    detail_body,
    error_body,
    json_content,
    operation,
    page,
    ref,
    string_list,
)

__all__ = ["NDJSON", "fragment"]

NDJSON = "application/x-ndjson"


def fragment(context: Context) -> Fragment:
    """`/users/`: the admin listing and export (GET) and import (POST)."""
    return Fragment(
        paths={"/users/": _path_item()},
        components={
            "schemas": _schemas(),
            "responses": _responses(),
            "parameters": _parameters(context.limits),
        },
    )


def _path_item() -> dict[str, Any]:
    listing = operation(
        "A page of the platform's stored records of members, or all of them as NDJSON "
        "(tenant admins)",
        {
            "200": {
                "description": (
                    "`application/json`: a page by username, `next` the next page's absolute "
                    "URL or null (a page may come back short while former members' records "
                    "are skipped). `application/x-ndjson` (ask with `Accept`): every "
                    "matching record, one success body per line, streamed; `cursor` and "
                    "`limit` do not apply."
                ),
                "content": {
                    **json_content(ref("schemas", "UsersPage")),
                    NDJSON: {"schema": {"type": "string"}},
                },
            }
        },
        conditional=(),
        parameters=("platform_key", "filter", "cursor", "users_limit"),
        bad_request="UsersBadRequest",
        forbidden="UsersForbidden",
        not_found="UsersNotFound",
    )
    load = operation(
        "Replace the named members' documents from NDJSON, all or nothing (tenant admins)",
        {
            "200": {
                "description": "Every line was written, as a PUT by the admin would.",
                "content": json_content(ref("schemas", "ImportResult")),
            }
        },
        conditional=(),
        parameters=("platform_key",),
        bad_request="ImportBadRequest",
        forbidden="UsersForbidden",
        not_found="UsersNotFound",
    )
    load["requestBody"] = {
        "required": True,
        "content": {
            NDJSON: {
                "schema": {
                    "type": "string",
                    "description": (
                        'One `{"username": ..., "metadata": {...}}` per line (an export\'s '
                        "lines work as they are: other fields are ignored)."
                    ),
                }
            }
        },
    }
    responses = load["responses"]
    responses["413"] = ref("responses", "ContentTooLarge")
    responses["415"] = ref("responses", "UnsupportedMediaType")
    for status in ("500", "503"):  # keep the document's order: 4xx, then 5xx
        responses[status] = responses.pop(status)
    return {
        "description": "A platform's stored metadata, for its tenant admins.",
        "get": listing,
        "post": load,
    }


def _schemas() -> dict[str, Any]:
    strings = string_list()
    return {
        "UsersPage": page("Record"),
        "ImportResult": {
            "type": "object",
            "required": ["imported"],
            "properties": {"imported": {"type": "integer", "minimum": 0}},
            "additionalProperties": False,
        },
        "UsersValidationError": {
            "type": "object",
            "minProperties": 1,
            "properties": {
                "limit": {**strings, "description": "Not an integer in 1..1000."},
                "filter": {**strings, "description": "Not a JSON object."},
            },
            "additionalProperties": False,
        },
        "ImportRefused": {
            "type": "object",
            "required": ["lines"],
            "properties": {
                "lines": {
                    "type": "object",
                    "description": "Each bad line's number, from 1, to its messages.",
                    "propertyNames": {"pattern": "^[1-9][0-9]*$"},
                    "additionalProperties": strings,
                }
            },
            "additionalProperties": False,
        },
    }


def _responses() -> dict[str, Any]:
    return {
        "UsersBadRequest": {
            "description": "A bad query (`error`), `limit` or `filter`.",
            "content": json_content(
                {"anyOf": [ref("schemas", "QueryError"), ref("schemas", "UsersValidationError")]}
            ),
        },
        "ImportBadRequest": {
            "description": "A bad query, or bad lines: nothing was written.",
            "content": json_content(
                {"anyOf": [ref("schemas", "QueryError"), ref("schemas", "ImportRefused")]}
            ),
        },
        "UsersForbidden": {
            "description": "Not a tenant admin of the platform.",
            "content": json_content(error_body(errors.ADMIN_ONLY)),
        },
        "UsersNotFound": {
            "description": (
                "Unknown platform, a bad cursor, or a store that cannot list (GET) or write a "
                "batch (POST)."
            ),
            "content": json_content(
                {
                    "anyOf": [
                        error_body(errors.PLATFORM_NOT_FOUND),
                        detail_body(errors.INVALID_CURSOR, "Not found."),
                    ]
                }
            ),
        },
    }


def _parameters(limits: Limits) -> dict[str, Any]:
    return {
        "filter": {
            "name": "filter",
            "in": "query",
            "required": False,
            "description": (
                'A JSON object, e.g. `{"plan": "pro", "beta": true}`: only records storing '
                "each key with an equal JSON value (numbers by value, booleans never equal "
                f"numbers, objects and arrays as JSON); at most {limits.max_keys} keys."
            ),
            "schema": {"type": "string"},
        },
        "users_limit": {
            "name": "limit",
            "in": "query",
            "required": False,
            "description": "Records per page (refused, not clamped, outside 1..1000).",
            "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
        },
    }
