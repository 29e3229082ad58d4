"""The metadata resource's fragment: `/`, the seed contract's GET, PUT, PATCH, DELETE and OPTIONS.

Its own components: the `Metadata` document and the `PutRequest` and `PatchRequest` bodies,
the write form of `If-None-Match` (`IfNoneMatchWrite`: `*` makes a write create-only), and
DELETE's `history=purge` (EXTENSIONS.md section 2).
"""

from __future__ import annotations

from typing import Any

from ..limits import Limits
from .base import Context, Fragment, operation, options_operation, ref

__all__ = ["fragment"]


def fragment(context: Context) -> Fragment:
    """`/`: one (platform, user) pair's metadata, read, replaced, changed and deleted."""
    return Fragment(
        paths={"/": _path_item()},
        components={
            "schemas": _schemas(context.limits),
            "parameters": _parameters(),
        },
    )


def _path_item() -> dict[str, Any]:
    record = {"200": ref("responses", "Record")}
    writes = ["IfMatch", "IfNoneMatchWrite"]
    return {
        "description": (
            "Per-user, per-platform metadata. Any other method is answered 405 with an `Allow` "
            "header (see components.responses.MethodNotAllowed), after authentication."
        ),
        "get": operation(
            "Get the metadata",
            {**record, "304": ref("responses", "NotModified")},
            conditional=["IfNoneMatch"],
        ),
        "put": operation("Replace all metadata", record, conditional=writes, body="PutRequest"),
        "patch": operation(
            "Set and delete top-level keys", record, conditional=writes, body="PatchRequest"
        ),
        "delete": operation(
            "Delete all metadata (idempotent)",
            {"204": {"description": "Nothing is stored any more."}},
            conditional=writes,
            parameters=("platform_key", "username", "history"),
        ),
        "options": options_operation("endpoint"),
    }


def _schemas(limits: Limits) -> dict[str, Any]:
    return {
        "Metadata": {
            "type": "object",
            "description": (
                "Any JSON values under non-empty string keys, round-tripped exactly. Strict "
                f"JSON: nesting at most {limits.max_depth} levels (this object is level 1), "
                "integers within signed 64 bits, no NaN or Infinity, no lone surrogates, no "
                "U+0000, no duplicate keys."
            ),
            "maxProperties": limits.max_keys,
            "propertyNames": {"minLength": 1, "maxLength": limits.max_key_length},
            "additionalProperties": True,
        },
        "PatchRequest": {
            "type": "object",
            "description": (
                "`delete_keys` are removed first (missing keys are ignored), then the "
                "`metadata` keys are set, whole values, no deep merge. At least one of the "
                "two must be present and non-empty. Unknown fields are ignored."
            ),
            "properties": {
                "metadata": ref("schemas", "Metadata"),
                "delete_keys": {
                    "type": "array",
                    "maxItems": limits.max_delete_keys,
                    "items": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": limits.max_key_length,
                    },
                },
            },
            "anyOf": [
                {"required": ["metadata"], "properties": {"metadata": {"minProperties": 1}}},
                {"required": ["delete_keys"], "properties": {"delete_keys": {"minItems": 1}}},
            ],
        },
        "PutRequest": {
            "type": "object",
            "description": "`metadata` replaces the whole document. Unknown fields are ignored.",
            "required": ["metadata"],
            "properties": {"metadata": ref("schemas", "Metadata")},
        },
    }


def _parameters() -> dict[str, Any]:
    return {
        "IfNoneMatchWrite": {
            "name": "If-None-Match",
            "in": "header",
            "required": False,
            "description": (
                "Write only if the record has none of these ETags; `*`: only if no record is "
                "stored (create-only). Several lines form one list; at most max_etags tags; "
                "malformed: never writes."
            ),
            "schema": {"type": "string"},
        },
        "history": {
            "name": "history",
            "in": "query",
            "required": False,
            "description": "`purge`: erase every earlier revision too (the DELETE stays as one).",
            "schema": {"type": "string", "enum": ["purge"]},
        },
    }
