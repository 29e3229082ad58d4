"""The endpoint's OpenAPI 3.1 document, served by the app at `<mount>/openapi.json`.

`build` makes the document once per app, with the app's `Limits` written into the schemas, its
auth backend's scheme, and every error message taken from `errors`, as the endpoint answers it;
`render` adds the server URL, which is where the app is mounted (the request's `root_path`),
so the document is right wherever the host puts the endpoint.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

# The root's literal, not `importlib.metadata.version()`: that module costs 5 ms to import
# (a tenth of Starlette's own import) and read the same string from the installed metadata.
from . import __version__, errors
from .auth import AuthScheme
from .limits import Limits
from .jsontext import dump
from .policy import PolicyLimits

__all__ = ["build", "render"]

_JSON = "application/json"
NDJSON = "application/x-ndjson"
_NO_CONTROL = "^[^\\u0000-\\u001f\\u007f]*$"
# Escaped one by one, as both Python's `re` and ECMA-262 (JSON Schema's dialect) read them.
_REGEX_SYNTAX = re.compile(r"([\\^$.|?*+()\[\]{}])")


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {_JSON: {"schema": schema}}


def _detail(*messages: str, pattern: str | None = None) -> dict[str, Any]:
    detail: dict[str, Any] = {"type": "string"}
    if messages:
        detail["enum"] = list(messages)
    if pattern is not None:
        detail["pattern"] = pattern
    return {
        "type": "object",
        "required": ["detail"],
        "properties": {"detail": detail},
        "additionalProperties": False,
    }


def _pattern(template: str) -> str:
    """A JSON Schema pattern for the messages an `errors` template makes (`{}`: any text)."""
    parts = [_REGEX_SYNTAX.sub(r"\\\1", part) for part in template.split("{}")]
    if not parts[-1]:
        # A template ending in `{}` (a parser's reason) may go on over several lines.
        return "^" + ".*".join(parts[:-1])
    return "^" + ".*".join(parts) + "$"


def _error(*messages: str) -> dict[str, Any]:
    error: dict[str, Any] = {"type": "string"}
    if messages:
        error["enum"] = list(messages)
    return {
        "type": "object",
        "required": ["error"],
        "properties": {"error": error},
        "additionalProperties": False,
    }


def _header(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "required": True, "schema": schema or {"type": "string"}}


def _policy_schemas(limits: Limits, policy_limits: PolicyLimits) -> dict[str, Any]:
    strings = {"type": "array", "items": {"type": "string"}}
    entries = {
        "type": "array",
        "maxItems": policy_limits.max_entries,
        "items": {"type": "string", "minLength": 1, "maxLength": policy_limits.max_key_length},
        "description": "Exact top-level keys, or prefixes ending in `*` (`\"billing_*\"`).",
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
    by_index = {
        "oneOf": [
            strings,
            {
                "type": "object",
                "description": "Index of each bad element to its messages.",
                "propertyNames": {"pattern": "^[0-9]+$"},
                "additionalProperties": strings,
            },
        ]
    }
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


def _schemas(limits: Limits) -> dict[str, Any]:
    strings = {"type": "array", "items": {"type": "string"}}
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
        "PatchRequest": {
            "type": "object",
            "description": (
                "`delete_keys` are removed first (missing keys are ignored), then the "
                "`metadata` keys are set, whole values, no deep merge. At least one of the "
                "two must be present and non-empty. Unknown fields are ignored."
            ),
            "properties": {
                "metadata": _ref("schemas", "Metadata"),
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
            "properties": {"metadata": _ref("schemas", "Metadata")},
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
        "QueryError": _error(),
        "ParseError": _detail(pattern=_pattern(errors.PARSE_ERROR)),
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
                "delete_keys": {
                    "oneOf": [
                        strings,
                        {
                            "type": "object",
                            "description": "Index of each bad element to its messages.",
                            "propertyNames": {"pattern": "^[0-9]+$"},
                            "additionalProperties": strings,
                        },
                    ]
                },
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
    }


def _responses(limits: Limits, challenge: str) -> dict[str, Any]:
    etag = _header("The record's version as a strong entity tag.")
    parse_error = errors.PARSE_ERROR.format("")
    return {
        "Record": {
            "description": "The metadata of the (platform, user) pair.",
            "headers": {"ETag": etag},
            "content": _json(_ref("schemas", "Record")),
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
            "content": _json(
                {
                    "anyOf": [
                        _ref("schemas", "QueryError"),
                        _ref("schemas", "ParseError"),
                        _ref("schemas", "ValidationError"),
                        _ref("schemas", "LimitExceeded"),
                    ]
                }
            ),
        },
        "Unauthorized": {
            "description": "No credentials, malformed credentials, or an unknown token.",
            "headers": {
                "WWW-Authenticate": _header(
                    f"Always `{challenge}`.", {"type": "string", "enum": [challenge]}
                )
            },
            "content": _json(_detail(*errors.AUTHENTICATION_DETAILS)),
        },
        "Forbidden": {
            "description": (
                "Another user's metadata without being a tenant admin, not a member, or (a "
                "member's write) keys the platform policy protects or keeps private."
            ),
            "content": _json(
                {
                    "anyOf": [
                        _error(errors.ADMIN_ONLY, errors.NOT_A_MEMBER),
                        _ref("schemas", "KeysForbidden"),
                    ]
                }
            ),
        },
        "PolicyForbidden": {
            "description": (
                "Not a member or admin of the platform; or a change by a member, or of a "
                "policy the host application fixes."
            ),
            "content": _json(
                _error(errors.NOT_A_MEMBER, errors.POLICY_ADMIN_ONLY, errors.POLICY_MANAGED)
            ),
        },
        "PolicyBadRequest": {
            "description": (
                "Query (`error`), JSON parse (`detail`), or validation (field to messages) "
                "error; or `If-Match` listing more than max_etags tags."
            ),
            "content": _json(
                {
                    "anyOf": [
                        _ref("schemas", "QueryError"),
                        _ref("schemas", "ParseError"),
                        _ref("schemas", "PolicyValidationError"),
                        _ref("schemas", "LimitExceeded"),
                    ]
                }
            ),
        },
        "NotFound": {
            "description": "Unknown platform, or (admins) a user not on the platform.",
            "content": _json(_error(errors.PLATFORM_NOT_FOUND, errors.USER_NOT_FOUND)),
        },
        "MethodNotAllowed": {
            "description": "Any method not documented here (after authentication).",
            "headers": {"Allow": _header("The methods this endpoint answers.")},
            "content": _json(_detail(pattern=_pattern(errors.METHOD_NOT_ALLOWED))),
        },
        "PreconditionFailed": {
            "description": (
                "`If-Match` or `If-None-Match` did not hold for the current version; nothing "
                "was changed. The ETag is the record's current one."
            ),
            "headers": {"ETag": _header("The record's current version.")},
            "content": _json(_detail(*errors.PRECONDITION_DETAILS.values())),
        },
        "ContentTooLarge": {
            "description": (
                f"The body is larger than max_body_bytes ({limits.max_body_bytes}), or the "
                f"stored document would be larger than max_document_bytes "
                f"({limits.max_document_bytes}) without its private keys, or (tenant "
                f"admins) its private keys than max_private_bytes "
                f"({limits.max_private_bytes}); nothing was changed."
            ),
            "content": _json(_ref("schemas", "LimitExceeded")),
        },
        "UnsupportedMediaType": {
            "description": "A body that is not `application/json`.",
            "content": _json(_detail(pattern=_pattern(errors.UNSUPPORTED_MEDIA_TYPE))),
        },
        "ServerError": {
            "description": "An unexpected failure, logged server-side under the request id.",
            "headers": {"X-Request-ID": _header("The request id, as in the body.")},
            "content": _json(_ref("schemas", "ServerError")),
        },
        "ServiceUnavailable": {
            "description": "The store is busy or unreachable; nothing was changed. Retry.",
            "headers": {"Retry-After": _header("Seconds to wait.", {"type": "string"})},
            "content": _json(_detail(errors.STORE_UNAVAILABLE)),
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
    }


def _dry_run() -> dict[str, Any]:
    return {
        "name": "dry_run",
        "in": "query",
        "required": False,
        "description": "Report what the policy would refuse, and save nothing.",
        "schema": {"type": "boolean", "default": False},
    }


def _operation(
    summary: str,
    ok: dict[str, Any],
    *,
    conditional: Sequence[str],
    body: str | None = None,
    body_required: bool = True,
    parameters: Sequence[str] = ("platform_key", "username"),
    bad_request: str = "BadRequest",
    forbidden: str = "Forbidden",
    not_found: str = "NotFound",
) -> dict[str, Any]:
    """One operation of either resource: its own answers, then the ones every request may get."""
    responses: dict[str, Any] = dict(ok)
    responses["400"] = _ref("responses", bad_request)
    responses["401"] = _ref("responses", "Unauthorized")
    responses["403"] = _ref("responses", forbidden)
    responses["404"] = _ref("responses", not_found)
    if "IfMatch" in conditional:
        responses["412"] = _ref("responses", "PreconditionFailed")
    if body is not None:
        responses["413"] = _ref("responses", "ContentTooLarge")
        responses["415"] = _ref("responses", "UnsupportedMediaType")
    responses["500"] = _ref("responses", "ServerError")
    responses["503"] = _ref("responses", "ServiceUnavailable")
    operation: dict[str, Any] = {
        "summary": summary,
        "parameters": [_ref("parameters", name) for name in (*parameters, *conditional)],
        "responses": responses,
    }
    if body is not None:
        operation["requestBody"] = {
            "required": body_required,
            "content": _json(_ref("schemas", body)),
        }
    return operation


def _policy_operation(
    summary: str, ok: dict[str, Any], *, conditional: Sequence[str], body: bool = False
) -> dict[str, Any]:
    return _operation(
        summary,
        ok,
        conditional=conditional,
        body="PolicyPutRequest" if body else None,
        body_required=False,
        parameters=("platform_key", "dry_run") if body else ("platform_key",),
        bad_request="PolicyBadRequest",
        forbidden="PolicyForbidden",
    )


def _policy_path() -> dict[str, Any]:
    # No ETag while the host fixes the policy: it may change it at any time.
    etag = {**_header("The policy's version as a strong entity tag."), "required": False}
    return {
        "description": (
            "The platform's policy: protected keys, private keys and a JSON Schema. Any other "
            "method is answered 405 with an `Allow` header, after authentication."
        ),
        "get": _policy_operation(
            "Get the platform policy (members and admins)",
            {
                "200": {
                    "description": "The policy; members do not get `private_keys`.",
                    "headers": {"ETag": etag},
                    "content": _json(_ref("schemas", "Policy")),
                },
                "304": _ref("responses", "NotModified"),
            },
            conditional=["IfNoneMatch"],
        ),
        "put": _policy_operation(
            "Replace the platform policy (tenant admins)",
            {
                "200": {
                    "description": "The new policy, and the stored documents it refuses.",
                    "headers": {"ETag": etag},
                    "content": _json(_ref("schemas", "PolicyPutResult")),
                }
            },
            conditional=["IfMatch"],
            body=True,
        ),
        "delete": _policy_operation(
            "Back to the default policy (tenant admins)",
            {"204": {"description": "Nothing protected, nothing private, no schema."}},
            conditional=["IfMatch"],
        ),
        "options": {
            "summary": "Describe the resource",
            "responses": {
                "200": {
                    "description": "What the resource renders and parses.",
                    "headers": {"Allow": _header("The methods this resource answers.")},
                    "content": _json(_ref("schemas", "OptionsBody")),
                },
                "401": _ref("responses", "Unauthorized"),
            },
        },
    }


def _history_paths() -> dict[str, Any]:
    """`/history/` and `/restore/` (EXTENSIONS.md section 2)."""
    history = _operation(
        "A user's revisions, newest first (whoever may GET that metadata)",
        {
            "200": {
                "description": (
                    "A page of revisions; `next` is the next page's absolute URL, or null. "
                    "Members do not see private keys."
                ),
                "content": _json(_ref("schemas", "HistoryPage")),
            }
        },
        conditional=(),
        parameters=("platform_key", "username", "cursor", "limit"),
        not_found="HistoryNotFound",
    )
    restore = _operation(
        "Write a kept revision's document as a new change (whoever may PUT that metadata)",
        {"200": _ref("responses", "Record")},
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


def _events_path() -> dict[str, Any]:
    """`/events/` (EXTENSIONS.md section 3)."""
    operation = _operation(
        "Live changes as Server-Sent Events (whoever may GET; all_users: tenant admins)",
        {
            "200": {
                "description": (
                    "`text/event-stream`: events `snapshot` (a one-user stream without a "
                    "cursor), `change` and `reset`, each with an `id:` (an opaque cursor for "
                    "`Last-Event-ID`) and `data:` one line of JSON, the GET body plus "
                    "`version`, `actor` and `operation`; a comment at least every 15 s."
                ),
                "headers": {"Cache-Control": _header("Always `no-store`.")},
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }
        },
        conditional=(),
        parameters=("platform_key", "username", "all_users", "last_event_id", "LastEventID"),
    )
    operation["responses"]["429"] = _ref("responses", "TooManyOwnStreams")
    operation["responses"]["503"] = _ref("responses", "EventsUnavailable")
    return {"description": "Changes of users' metadata, live.", "get": operation}


def _page(item: str) -> dict[str, Any]:
    """DRF's cursor-pagination shape (EXTENSIONS.md's common rules) of `item` schemas."""
    return {
        "type": "object",
        "required": ["next", "results"],
        "properties": {
            "next": {"type": ["string", "null"]},
            "results": {"type": "array", "items": _ref("schemas", item)},
        },
        "additionalProperties": False,
    }


def _history_schemas() -> dict[str, Any]:
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
        "HistoryPage": _page("Revision"),
        "RestoreRequest": {
            "type": "object",
            "required": ["version"],
            "properties": {"version": {"type": "integer", "minimum": 1}},
        },
    }


def _history_responses() -> dict[str, Any]:
    return {
        "TooManyOwnStreams": {
            "description": "The caller's, or the platform's, share of this process's streams "
            "is taken.",
            "headers": {"Retry-After": _header("Seconds to wait.", {"type": "string"})},
            "content": _json(
                _detail(errors.TOO_MANY_STREAMS_OF_YOURS, errors.TOO_MANY_PLATFORM_STREAMS)
            ),
        },
        "EventsUnavailable": {
            "description": "Too many open streams in this process, or the store is unavailable.",
            "headers": {"Retry-After": _header("Seconds to wait.", {"type": "string"})},
            "content": _json(_detail(errors.TOO_MANY_STREAMS, errors.STORE_UNAVAILABLE)),
        },
        "HistoryNotFound": {
            "description": "Unknown platform, (admins) a user not on it, or a bad cursor.",
            "content": _json(
                {
                    "anyOf": [
                        _error(errors.PLATFORM_NOT_FOUND, errors.USER_NOT_FOUND),
                        _detail(errors.INVALID_CURSOR),
                    ]
                }
            ),
        },
        "RestoreNotFound": {
            "description": "Unknown platform, (admins) a user not on it, or a version not kept.",
            "content": _json(
                _error(errors.PLATFORM_NOT_FOUND, errors.USER_NOT_FOUND, errors.REVISION_NOT_FOUND)
            ),
        },
    }


def _history_parameters() -> dict[str, Any]:
    return {
        "cursor": {
            "name": "cursor",
            "in": "query",
            "required": False,
            "description": "Opaque: from a page's `next`.",
            "schema": {"type": "string"},
        },
        "limit": {
            "name": "limit",
            "in": "query",
            "required": False,
            "description": "Revisions per page (refused, not clamped, outside 1..100).",
            "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
        },
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
        "history": {
            "name": "history",
            "in": "query",
            "required": False,
            "description": "`purge`: erase every earlier revision too (the DELETE stays as one).",
            "schema": {"type": "string", "enum": ["purge"]},
        },
    }


def _users_paths() -> dict[str, Any]:
    """`/users/` (EXTENSIONS.md section 4): the admin listing, export and import."""
    listing = _operation(
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
                    **_json(_ref("schemas", "UsersPage")),
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
    load = _operation(
        "Replace the named members' documents from NDJSON, all or nothing (tenant admins)",
        {
            "200": {
                "description": "Every line was written, as a PUT by the admin would.",
                "content": _json(_ref("schemas", "ImportResult")),
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
    responses["413"] = _ref("responses", "ContentTooLarge")
    responses["415"] = _ref("responses", "UnsupportedMediaType")
    for status in ("500", "503"):  # keep the document's order: 4xx, then 5xx
        responses[status] = responses.pop(status)
    return {
        "/users/": {
            "description": "A platform's stored metadata, for its tenant admins.",
            "get": listing,
            "post": load,
        }
    }


def _users_schemas() -> dict[str, Any]:
    strings = {"type": "array", "items": {"type": "string"}}
    return {
        "UsersPage": _page("Record"),
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


def _users_responses() -> dict[str, Any]:
    return {
        "UsersBadRequest": {
            "description": "A bad query (`error`), `limit` or `filter`.",
            "content": _json(
                {"anyOf": [_ref("schemas", "QueryError"), _ref("schemas", "UsersValidationError")]}
            ),
        },
        "ImportBadRequest": {
            "description": "A bad query, or bad lines: nothing was written.",
            "content": _json(
                {"anyOf": [_ref("schemas", "QueryError"), _ref("schemas", "ImportRefused")]}
            ),
        },
        "UsersForbidden": {
            "description": "Not a tenant admin of the platform.",
            "content": _json(_error(errors.ADMIN_ONLY)),
        },
        "UsersNotFound": {
            "description": (
                "Unknown platform, a bad cursor, or a store that cannot list (GET) or write a "
                "batch (POST)."
            ),
            "content": _json(
                {
                    "anyOf": [
                        _error(errors.PLATFORM_NOT_FOUND),
                        _detail(errors.INVALID_CURSOR, "Not found."),
                    ]
                }
            ),
        },
    }


def _users_parameters(limits: Limits) -> dict[str, Any]:
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


def build(
    limits: Limits, auth: AuthScheme | None = None, policy_limits: PolicyLimits | None = None
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the endpoint, for these limits and this auth scheme (default
    DRF's `Token`); `servers` is filled per request."""
    auth = auth or AuthScheme()
    policy_limits = policy_limits or PolicyLimits()
    record = {"200": _ref("responses", "Record")}
    writes = ["IfMatch", "IfNoneMatchWrite"]
    path_item = {
        "description": (
            "Per-user, per-platform metadata. Any other method is answered 405 with an `Allow` "
            "header (see components.responses.MethodNotAllowed), after authentication."
        ),
        "get": _operation(
            "Get the metadata",
            {**record, "304": _ref("responses", "NotModified")},
            conditional=["IfNoneMatch"],
        ),
        "put": _operation("Replace all metadata", record, conditional=writes, body="PutRequest"),
        "patch": _operation(
            "Set and delete top-level keys", record, conditional=writes, body="PatchRequest"
        ),
        "delete": _operation(
            "Delete all metadata (idempotent)",
            {"204": {"description": "Nothing is stored any more."}},
            conditional=writes,
            parameters=("platform_key", "username", "history"),
        ),
        "options": {
            "summary": "Describe the endpoint",
            "responses": {
                "200": {
                    "description": "What the endpoint renders and parses.",
                    "headers": {"Allow": _header("The methods this endpoint answers.")},
                    "content": _json(_ref("schemas", "OptionsBody")),
                },
                "401": _ref("responses", "Unauthorized"),
            },
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "User Platform Metadata",
            "version": __version__,
            "description": "Per-user, per-platform metadata, as Django REST Framework served it.",
        },
        "servers": [{"url": "/"}],
        "paths": {
            "/": path_item,
            "/policy/": _policy_path(),
            **_history_paths(),
            "/events/": _events_path(),
            **_users_paths(),
        },
        "components": {
            "schemas": {
                **_schemas(limits),
                **_policy_schemas(limits, policy_limits),
                **_history_schemas(),
                **_users_schemas(),
            },
            "responses": {
                **_responses(limits, auth.challenge),
                **_history_responses(),
                **_users_responses(),
            },
            "parameters": {
                **_parameters(limits),
                "dry_run": _dry_run(),
                **_history_parameters(),
                **_users_parameters(limits),
            },
            "securitySchemes": {
                name: dict(scheme) for name, scheme in auth.security_schemes.items()
            },
        },
        "security": [{name: []} for name in auth.security_schemes],
    }


def render(document: dict[str, Any], root_path: str) -> bytes:
    """The document as JSON, with the server URL set to where the app is mounted."""
    server = root_path.rstrip("/") or "/"
    return dump({**document, "servers": [{"url": server}]}).encode()
