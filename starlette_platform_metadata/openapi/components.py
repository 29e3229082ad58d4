"""The components more than one resource refers to (`shared`).

The error bodies, built from `errors`' constants (`QueryError`, `ParseError`, the common
`ValidationError`, `LimitExceeded`, `ServerError`, `KeysForbidden`); the `Record` and
`OptionsBody` bodies; the `platform_key`, `username`, `cursor`, `If-Match` and `If-None-Match`
parameters; and the answers any resource may give: `Record`, `NotModified`, `BadRequest`,
`Unauthorized` (with the auth scheme's challenge), `Forbidden`, `NotFound`,
`MethodNotAllowed`, `PreconditionFailed`, `ContentTooLarge`, `UnsupportedMediaType`,
`ServerError` and `ServiceUnavailable`.
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
    header,
    indexed_messages,
    json_content,
    message_pattern,
    ref,
    retry_after,
    string_list,
)

__all__ = ["shared"]

_NO_CONTROL = "^[^\\u0000-\\u001f\\u007f]*$"


def shared(context: Context) -> Fragment:
    """The components more than one resource refers to, and no paths."""
    return Fragment(
        paths={},
        components={
            "schemas": _schemas(context.limits),
            "responses": _responses(context.limits, context.auth.challenge),
            "parameters": _parameters(context.limits),
        },
    )


def _schemas(limits: Limits) -> dict[str, Any]:
    strings = string_list()
    return {
        "Record": {
            "type": "object",
            "required": ["username", "platform_key", "metadata", "created_at", "updated_at"],
            "properties": {
                "username": {"type": "string"},
                "platform_key": {"type": "string"},
                "metadata": {
                    "type": "object",
                    "description": (
                        "The stored document; at most max_document_bytes "
                        f"({limits.max_document_bytes}) bytes as compact UTF-8 JSON (the "
                        "private keys of a platform's policy aside: they have "
                        f"max_private_bytes ({limits.max_private_bytes}) of their own)."
                    ),
                },
                "created_at": {"type": ["string", "null"], "format": "date-time"},
                "updated_at": {"type": ["string", "null"], "format": "date-time"},
            },
            "additionalProperties": False,
        },
        "OptionsBody": {
            "type": "object",
            "required": ["name", "description", "renders", "parses"],
            "properties": {
                "name": {"type": "string"},
                "description": {"type": "string"},
                "renders": strings,
                "parses": strings,
            },
        },
        "QueryError": error_body(),
        "ParseError": detail_body(pattern=message_pattern(errors.PARSE_ERROR)),
        # The field errors of every resource answering the common 400 (`BadRequest`).
        "ValidationError": {
            "type": "object",
            "description": "Django REST Framework's shape: field name to list of messages.",
            "minProperties": 1,
            "properties": {
                "non_field_errors": strings,
                "metadata": {
                    **strings,
                    "description": (
                        "Validation messages, or the platform schema's refusals, each "
                        '`"<JSON Pointer, / for the root>: <message>"`.'
                    ),
                },
                "history": {**strings, "description": "DELETE: `history` is not `purge`."},
                "version": {**strings, "description": "Restore: not an integer of at least 1."},
                "limit": {**strings, "description": "History: not an integer in 1..100."},
                "all_users": {**strings, "description": "Events: not a boolean, or with username."},
                "delete_keys": indexed_messages(),
            },
            "additionalProperties": False,
        },
        "LimitExceeded": {
            "type": "object",
            "required": ["detail", "limit", "value"],
            "properties": {
                "detail": {"type": "string"},
                "limit": {
                    "type": "string",
                    "enum": list(errors.LIMIT_DETAILS),
                },
                "value": {"type": "integer"},
            },
            "additionalProperties": False,
        },
        "ServerError": {
            "type": "object",
            "required": ["detail", "request_id"],
            "properties": {
                "detail": {"type": "string", "enum": [errors.SERVER_ERROR]},
                "request_id": {"type": "string"},
            },
            "additionalProperties": False,
        },
        "KeysForbidden": {
            "type": "object",
            "description": "A member's write naming keys the platform policy keeps for admins.",
            "required": ["error", "keys"],
            "properties": {
                "error": {"type": "string", "enum": [errors.KEYS_FORBIDDEN]},
                "keys": strings,
            },
            "additionalProperties": False,
        },
    }


def _responses(limits: Limits, challenge: str) -> dict[str, Any]:
    etag = header("The record's version as a strong entity tag.")
    parse_error = errors.PARSE_ERROR.format("")
    return {
        "Record": {
            "description": "The metadata of the (platform, user) pair.",
            "headers": {"ETag": etag},
            "content": json_content(ref("schemas", "Record")),
        },
        "NotModified": {
            "description": "`If-None-Match` matched the current version.",
            "headers": {"ETag": etag},
        },
        "BadRequest": {
            "description": (
                f"Query (`error`), JSON parse (`detail` starting `{parse_error}`) or "
                f"validation (field to messages) error. Limits: max_depth {limits.max_depth}, "
                f"max_keys {limits.max_keys}, max_key_length {limits.max_key_length}, "
                f"max_delete_keys {limits.max_delete_keys}, "
                f"max_query_value_length {limits.max_query_value_length}; or `If-Match` / "
                f"`If-None-Match` listing more than max_etags ({limits.max_etags}) tags."
            ),
            "content": json_content(
                {
                    "anyOf": [
                        ref("schemas", "QueryError"),
                        ref("schemas", "ParseError"),
                        ref("schemas", "ValidationError"),
                        ref("schemas", "LimitExceeded"),
                    ]
                }
            ),
        },
        "Unauthorized": {
            "description": "No credentials, malformed credentials, or an unknown token.",
            "headers": {
                "WWW-Authenticate": header(
                    f"Always `{challenge}`.", {"type": "string", "enum": [challenge]}
                )
            },
            "content": json_content(detail_body(*errors.AUTHENTICATION_DETAILS)),
        },
        "Forbidden": {
            "description": (
                "Another user's metadata without being a tenant admin, not a member, or (a "
                "member's write) keys the platform policy protects or keeps private."
            ),
            "content": json_content(
                {
                    "anyOf": [
                        error_body(errors.ADMIN_ONLY, errors.NOT_A_MEMBER),
                        ref("schemas", "KeysForbidden"),
                    ]
                }
            ),
        },
        "NotFound": {
            "description": "Unknown platform, or (admins) a user not on the platform.",
            "content": json_content(error_body(errors.PLATFORM_NOT_FOUND, errors.USER_NOT_FOUND)),
        },
        "MethodNotAllowed": {
            "description": "Any method not documented here (after authentication).",
            "headers": {"Allow": header("The methods this endpoint answers.")},
            "content": json_content(
                detail_body(pattern=message_pattern(errors.METHOD_NOT_ALLOWED))
            ),
        },
        "PreconditionFailed": {
            "description": (
                "`If-Match` or `If-None-Match` did not hold for the current version; nothing "
                "was changed. The ETag is the record's current one."
            ),
            "headers": {"ETag": header("The record's current version.")},
            "content": json_content(detail_body(*errors.PRECONDITION_DETAILS.values())),
        },
        "ContentTooLarge": {
            "description": (
                f"The body is larger than max_body_bytes ({limits.max_body_bytes}), or the "
                f"stored document would be larger than max_document_bytes "
                f"({limits.max_document_bytes}) without its private keys, or (tenant "
                f"admins) its private keys than max_private_bytes "
                f"({limits.max_private_bytes}); nothing was changed."
            ),
            "content": json_content(ref("schemas", "LimitExceeded")),
        },
        "UnsupportedMediaType": {
            "description": "A body that is not `application/json`.",
            "content": json_content(
                detail_body(pattern=message_pattern(errors.UNSUPPORTED_MEDIA_TYPE))
            ),
        },
        "ServerError": {
            "description": "An unexpected failure, logged server-side under the request id.",
            "headers": {"X-Request-ID": header("The request id, as in the body.")},
            "content": json_content(ref("schemas", "ServerError")),
        },
        "ServiceUnavailable": {
            "description": "The store is busy or unreachable; nothing was changed. Retry.",
            "headers": {"Retry-After": retry_after()},
            "content": json_content(detail_body(errors.STORE_UNAVAILABLE)),
        },
    }


def _parameters(limits: Limits) -> dict[str, Any]:
    value = {
        "type": "string",
        "minLength": 1,
        "maxLength": limits.max_query_value_length,
        "pattern": _NO_CONTROL,
    }
    return {
        "platform_key": {
            "name": "platform_key",
            "in": "query",
            "required": True,
            "description": "The platform (tenant). Given once; compared exactly.",
            "schema": value,
        },
        "username": {
            "name": "username",
            "in": "query",
            "required": False,
            "description": (
                "Another user of the platform (tenant admins only); the caller by default. "
                "Given once; compared exactly."
            ),
            "schema": value,
        },
        "IfMatch": {
            "name": "If-Match",
            "in": "header",
            "required": False,
            "description": (
                "Write only if the record still has one of these ETags (or `*`). Several "
                "lines form one list; at most max_etags tags; malformed: never writes."
            ),
            "schema": {"type": "string"},
        },
        "IfNoneMatch": {
            "name": "If-None-Match",
            "in": "header",
            "required": False,
            "description": (
                "Answer 304 when the record has one of these ETags (or `*`). Several lines "
                "form one list; at most max_etags tags."
            ),
            "schema": {"type": "string"},
        },
        "cursor": {
            "name": "cursor",
            "in": "query",
            "required": False,
            "description": "Opaque: from a page's `next`.",
            "schema": {"type": "string"},
        },
    }
