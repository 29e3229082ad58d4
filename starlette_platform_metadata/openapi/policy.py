"""The policy resource's fragment: `/policy/` (EXTENSIONS.md section 1).

GET for members and admins, PUT (with `dry_run`) and DELETE for tenant admins, OPTIONS.  Its
own components: the `Policy` views, the `PolicyPutRequest` body and its `PolicyPutResult`, the
`PolicyValidationError` field errors, the `PolicyBadRequest` and `PolicyForbidden` answers, and
the `dry_run` parameter.  The schemas carry the app's `PolicyLimits`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import errors
from ..policy import PolicyLimits
from .base import (
    Context,
    Fragment,
    error_body,
    header,
    indexed_messages,
    json_content,
    operation,
    options_operation,
    ref,
    string_list,
)

__all__ = ["fragment"]


def fragment(context: Context) -> Fragment:
    """`/policy/`: a platform's protected keys, private keys and JSON Schema."""
    return Fragment(
        paths={"/policy/": _path_item()},
        components={
            "schemas": _schemas(context.policy_limits),
            "responses": _responses(),
            "parameters": {"dry_run": _dry_run()},
        },
    )


def _operation(
    summary: str, ok: dict[str, Any], *, conditional: Sequence[str], body: bool = False
) -> dict[str, Any]:
    return operation(
        summary,
        ok,
        conditional=conditional,
        body="PolicyPutRequest" if body else None,
        body_required=False,
        parameters=("platform_key", "dry_run") if body else ("platform_key",),
        bad_request="PolicyBadRequest",
        forbidden="PolicyForbidden",
    )


def _path_item() -> dict[str, Any]:
    # No ETag while the host fixes the policy: it may change it at any time.
    etag = {**header("The policy's version as a strong entity tag."), "required": False}
    return {
        "description": (
            "The platform's policy: protected keys, private keys and a JSON Schema. Any other "
            "method is answered 405 with an `Allow` header, after authentication."
        ),
        "get": _operation(
            "Get the platform policy (members and admins)",
            {
                "200": {
                    "description": "The policy; members do not get `private_keys`.",
                    "headers": {"ETag": etag},
                    "content": json_content(ref("schemas", "Policy")),
                },
                "304": ref("responses", "NotModified"),
            },
            conditional=["IfNoneMatch"],
        ),
        "put": _operation(
            "Replace the platform policy (tenant admins)",
            {
                "200": {
                    "description": "The new policy, and the stored documents it refuses.",
                    "headers": {"ETag": etag},
                    "content": json_content(ref("schemas", "PolicyPutResult")),
                }
            },
            conditional=["IfMatch"],
            body=True,
        ),
        "delete": _operation(
            "Back to the default policy (tenant admins)",
            {"204": {"description": "Nothing protected, nothing private, no schema."}},
            conditional=["IfMatch"],
        ),
        "options": options_operation("resource"),
    }


def _schemas(policy_limits: PolicyLimits) -> dict[str, Any]:
    strings = string_list()
    entries = {
        "type": "array",
        "maxItems": policy_limits.max_entries,
        "items": {"type": "string", "minLength": 1, "maxLength": policy_limits.max_key_length},
        "description": 'Exact top-level keys, or prefixes ending in `*` (`"billing_*"`).',
    }
    schema = {
        "type": ["object", "boolean", "null"],
        "description": (
            "A JSON Schema (draft 2020-12) every document must satisfy after a write, or null. "
            "`$ref`s must resolve inside it; nothing is fetched. Bounds: "
            f"{policy_limits.max_schema_bytes} bytes, {policy_limits.max_schema_depth} levels, "
            f"{policy_limits.max_patterns} regular expressions, weight "
            f"{policy_limits.max_schema_weight} (see docs/policy.md)."
        ),
    }
    view = {
        "platform_key": {"type": "string"},
        "protected_keys": strings,
        "private_keys": strings,
        "schema": {"type": ["object", "boolean", "null"]},
        "version": {"type": "integer", "minimum": 0},
        "updated_at": {"type": ["string", "null"], "format": "date-time"},
    }
    by_index = indexed_messages()
    return {
        "Policy": {
            "type": "object",
            "description": "A platform's policy; members do not get `private_keys`.",
            "required": ["platform_key", "protected_keys", "schema", "version", "updated_at"],
            "properties": view,
            "additionalProperties": False,
        },
        "PolicyPutRequest": {
            "type": "object",
            "description": "Every field optional; a missing one takes its default.",
            "properties": {
                "protected_keys": entries,
                "private_keys": entries,
                "schema": schema,
            },
        },
        "PolicyPutResult": {
            "type": "object",
            "description": (
                "The admin view of the policy (with `?dry_run=true`: as it would be, with the "
                "stored version), and the stored documents its schema refuses: "
                "`violating_documents` is null when the store cannot list its documents."
            ),
            "required": [*view, "violating_documents", "examples"],
            "properties": {
                **view,
                "violating_documents": {"type": ["integer", "null"], "minimum": 0},
                "examples": {
                    "type": "array",
                    "maxItems": 20,
                    "items": {
                        "type": "object",
                        "required": ["username", "errors"],
                        "properties": {"username": {"type": "string"}, "errors": strings},
                        "additionalProperties": False,
                    },
                },
            },
            "additionalProperties": False,
        },
        "PolicyValidationError": {
            "type": "object",
            "description": "Django REST Framework's shape: field name to its messages.",
            "minProperties": 1,
            "properties": {
                "non_field_errors": strings,
                "protected_keys": by_index,
                "private_keys": by_index,
                "schema": strings,
                "dry_run": {"type": "array", "items": {"enum": [errors.NOT_A_BOOLEAN]}},
            },
            "additionalProperties": False,
        },
    }


def _responses() -> dict[str, Any]:
    return {
        "PolicyForbidden": {
            "description": (
                "Not a member or admin of the platform; or a change by a member, or of a "
                "policy the host application fixes."
            ),
            "content": json_content(
                error_body(errors.NOT_A_MEMBER, errors.POLICY_ADMIN_ONLY, errors.POLICY_MANAGED)
            ),
        },
        "PolicyBadRequest": {
            "description": (
                "Query (`error`), JSON parse (`detail`), or validation (field to messages) "
                "error; or `If-Match` listing more than max_etags tags."
            ),
            "content": json_content(
                {
                    "anyOf": [
                        ref("schemas", "QueryError"),
                        ref("schemas", "ParseError"),
                        ref("schemas", "PolicyValidationError"),
                        ref("schemas", "LimitExceeded"),
                    ]
                }
            ),
        },
    }


def _dry_run() -> dict[str, Any]:
    return {
        "name": "dry_run",
        "in": "query",
        "required": False,
        "description": "Report what the policy would refuse, and save nothing.",
        "schema": {"type": "boolean", "default": False},
    }
