"""A fragment of the OpenAPI document: its contract, and the kit every fragment is written with.

A resource's module exposes `fragment(context: Context) -> Fragment`: `Context` is what the app
knows (its limits, its policy bounds, its auth scheme), `Fragment` the resource's paths and the
components it defines.  The helpers write the OpenAPI objects fragments are made of, the same
way everywhere: `ref`, a body's `json_content`, the error bodies `detail_body` and `error_body`
(their messages from `errors`), `header`, and `operation`, which adds the answers every request
may get to an operation's own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..auth import AuthScheme
from ..limits import Limits
from ..policy import PolicyLimits

__all__ = [
    "JSON",
    "Context",
    "Fragment",
    "detail_body",
    "error_body",
    "header",
    "indexed_messages",
    "json_content",
    "message_pattern",
    "operation",
    "options_operation",
    "page",
    "ref",
    "retry_after",
    "string_list",
]

JSON = "application/json"
# Escaped one by one, as both Python's `re` and ECMA-262 (JSON Schema's dialect) read them.
_REGEX_SYNTAX = re.compile(r"([\\^$.|?*+()\[\]{}])")


@dataclass(frozen=True, slots=True)
class Context:
    """What the fragments are written from: the app's bounds and how its callers authenticate.

    Attributes:
        limits: the app's `Limits`, written into schemas and descriptions.
        policy_limits: the bounds on a platform policy, for the policy resource's schemas.
        auth: the auth backend's scheme: every 401's challenge, and the security schemes.
    """

    limits: Limits
    policy_limits: PolicyLimits
    auth: AuthScheme


@dataclass(frozen=True, slots=True)
class Fragment:
    """One resource's part of the document, shaped as the document's own sections.

    Attributes:
        paths: path (relative to where the app is mounted) to its path item.
        components: section (`schemas`, `responses`, `parameters`) to the components the
            resource defines, by name; a fragment refers to its own and to `shared`'s, never
            to another resource's. Two fragments defining one name is an error.
    """

    paths: Mapping[str, Any]
    components: Mapping[str, Mapping[str, Any]]


def ref(kind: str, name: str) -> dict[str, str]:
    """A `$ref` to `components.<kind>.<name>`."""
    return {"$ref": f"#/components/{kind}/{name}"}


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    """A `content` map of one `application/json` body of this schema."""
    return {JSON: {"schema": schema}}


def header(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """A response header that is always sent (a string unless `schema` says otherwise)."""
    return {"description": description, "required": True, "schema": schema or {"type": "string"}}


def retry_after() -> dict[str, Any]:
    """The `Retry-After` header of an answer asking to come back later."""
    return header("Seconds to wait.", {"type": "string"})


def string_list() -> dict[str, Any]:
    """The schema of a list of strings (DRF's messages of one field)."""
    return {"type": "array", "items": {"type": "string"}}


def indexed_messages() -> dict[str, Any]:
    """DRF's messages of a list field: for the list itself, or by index of each bad element."""
    return {
        "oneOf": [
            string_list(),
            {
                "type": "object",
                "description": "Index of each bad element to its messages.",
                "propertyNames": {"pattern": "^[0-9]+$"},
                "additionalProperties": string_list(),
            },
        ]
    }


def detail_body(*messages: str, pattern: str | None = None) -> dict[str, Any]:
    """The schema of a `{"detail": ...}` error body: one of `messages`, or any text matching
    `pattern`, or any text when neither is given."""
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


def error_body(*messages: str) -> dict[str, Any]:
    """The schema of an `{"error": ...}` error body: one of `messages`, or any text."""
    error: dict[str, Any] = {"type": "string"}
    if messages:
        error["enum"] = list(messages)
    return {
        "type": "object",
        "required": ["error"],
        "properties": {"error": error},
        "additionalProperties": False,
    }


def message_pattern(template: str) -> str:
    """A JSON Schema pattern for the messages an `errors` template makes (`{}`: any text)."""
    parts = [_REGEX_SYNTAX.sub(r"\\\1", part) for part in template.split("{}")]
    if not parts[-1]:
        # A template ending in `{}` (a parser's reason) may go on over several lines.
        return "^" + ".*".join(parts[:-1])
    return "^" + ".*".join(parts) + "$"


def page(item: str) -> dict[str, Any]:
    """DRF's cursor-pagination shape (EXTENSIONS.md's common rules) of `item` schemas."""
    return {
        "type": "object",
        "required": ["next", "results"],
        "properties": {
            "next": {"type": ["string", "null"]},
            "results": {"type": "array", "items": ref("schemas", item)},
        },
        "additionalProperties": False,
    }


def operation(
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
    """One operation: its own answers `ok`, then the ones every request may get.

    Args:
        summary: the operation's summary.
        ok: its successful answers, by status.
        conditional: the names of the conditional-request parameters it takes (`IfMatch`
            adds the 412 answer).
        body: the name of its request body's schema (adds the 413 and 415 answers).
        body_required: whether that body must be sent.
        parameters: the names of its other parameters, before the conditional ones.
        bad_request, forbidden, not_found: the names of its 400, 403 and 404 answers.
    """
    responses: dict[str, Any] = dict(ok)
    responses["400"] = ref("responses", bad_request)
    responses["401"] = ref("responses", "Unauthorized")
    responses["403"] = ref("responses", forbidden)
    responses["404"] = ref("responses", not_found)
    if "IfMatch" in conditional:
        responses["412"] = ref("responses", "PreconditionFailed")
    if body is not None:
        responses["413"] = ref("responses", "ContentTooLarge")
        responses["415"] = ref("responses", "UnsupportedMediaType")
    responses["500"] = ref("responses", "ServerError")
    responses["503"] = ref("responses", "ServiceUnavailable")
    result: dict[str, Any] = {
        "summary": summary,
        "parameters": [ref("parameters", name) for name in (*parameters, *conditional)],
        "responses": responses,
    }
    if body is not None:
        result["requestBody"] = {
            "required": body_required,
            "content": json_content(ref("schemas", body)),
        }
    return result


def options_operation(noun: str) -> dict[str, Any]:
    """The OPTIONS operation of a resource that answers it, called `noun` in its texts."""
    return {
        "summary": f"Describe the {noun}",
        "responses": {
            "200": {
                "description": f"What the {noun} renders and parses.",
                "headers": {"Allow": header(f"The methods this {noun} answers.")},
                "content": json_content(ref("schemas", "OptionsBody")),
            },
            "401": ref("responses", "Unauthorized"),
        },
    }
