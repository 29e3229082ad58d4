"""The history resources' fragment: `/history/` and `/restore/` (EXTENSIONS.md section 2).

A user's revisions, a page at a time, and undo: a kept revision written again under a PUT's
rules.  Its own components: the `Revision`, `HistoryPage` and `RestoreRequest` bodies, the
`HistoryNotFound` and `RestoreNotFound` answers, and the page's `limit` parameter.  DELETE's
`history=purge` belongs to the metadata resource, which answers it.
"""

from __future__ import annotations

from typing import Any

from .. import errors
from .base import Context, Fragment, detail_body, error_body, json_content, operation, page, ref

__all__ = ["fragment"]


def fragment(context: Context) -> Fragment:
    """`/history/` (GET, whoever may GET the metadata) and `/restore/` (POST, whoever may PUT)."""
    return Fragment(
        paths=_paths(),
        components={
            "schemas": _schemas(),
            "responses": _responses(),
            "parameters": _parameters(),
        },
    )


def _paths() -> dict[str, Any]:
    history = operation(
        "A user's revisions, newest first (whoever may GET that metadata)",
        {
            "200": {
                "description": (
                    "A page of revisions; `next` is the next page's absolute URL, or null. "
                    "Members do not see private keys."
                ),
                "content": json_content(ref("schemas", "HistoryPage")),
            }
        },
        conditional=(),
        parameters=("platform_key", "username", "cursor", "limit"),
        not_found="HistoryNotFound",
    )
    restore = operation(
        "Write a kept revision's document as a new change (whoever may PUT that metadata)",
        {"200": ref("responses", "Record")},
        conditional=["IfMatch"],
        body="RestoreRequest",
        not_found="RestoreNotFound",
    )
    return {
        "/history/": {"description": "The revisions of a user's metadata.", "get": history},
        "/restore/": {
            "description": "Undo: an old document written again, under a PUT's rules.",
            "post": restore,
        },
    }


def _schemas() -> dict[str, Any]:
    return {
        "Revision": {
            "type": "object",
            "required": ["version", "operation", "actor", "at", "metadata", "changed_keys"],
            "properties": {
                "version": {"type": "integer", "minimum": 1},
                "operation": {"type": "string", "enum": ["patch", "put", "delete", "restore"]},
                "actor": {"type": ["string", "null"]},
                "at": {"type": "string", "format": "date-time"},
                "metadata": {"type": "object"},
                "changed_keys": {"type": "array", "items": {"type": "string"}},
            },
            "additionalProperties": False,
        },
        "HistoryPage": page("Revision"),
        "RestoreRequest": {
            "type": "object",
            "required": ["version"],
            "properties": {"version": {"type": "integer", "minimum": 1}},
        },
    }


def _responses() -> dict[str, Any]:
    return {
        "HistoryNotFound": {
            "description": "Unknown platform, (admins) a user not on it, or a bad cursor.",
            "content": json_content(
                {
                    "anyOf": [
                        error_body(errors.PLATFORM_NOT_FOUND, errors.USER_NOT_FOUND),
                        detail_body(errors.INVALID_CURSOR),
                    ]
                }
            ),
        },
        "RestoreNotFound": {
            "description": "Unknown platform, (admins) a user not on it, or a version not kept.",
            "content": json_content(
                error_body(
                    errors.PLATFORM_NOT_FOUND, errors.USER_NOT_FOUND, errors.REVISION_NOT_FOUND
                )
            ),
        },
    }


def _parameters() -> dict[str, Any]:
    return {
        "limit": {
            "name": "limit",
            "in": "query",
            "required": False,
            "description": "Revisions per page (refused, not clamped, outside 1..100).",
            "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
        },
    }
