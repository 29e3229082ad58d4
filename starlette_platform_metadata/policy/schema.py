"""The policy schema compiled: jsonschema-rs under our bounds, and its errors worded as the
contract words them."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NoReturn

import jsonschema_rs

from ..errors import truncate
from ..field_errors import (
    SCHEMA_BAD_REGEX,
    SCHEMA_NOT_A_SCHEMA,
    SCHEMA_NOT_JSON,
    SCHEMA_TOO_DEEP,
    SCHEMA_TOO_LARGE,
)
from ..jsontext import dump
from ..jsonvalues import within_depth
from .cost import SchemaRefused, Weigher
from .limits import PolicyLimits

__all__ = ["Compiled", "compile_schema", "located"]

# Instance values never appear in schema messages: a member would otherwise read private
# values through them, and a 64 KiB document would be copied into every message.
_MASK = "value"


@dataclass(frozen=True, slots=True)
class Compiled:
    validator: jsonschema_rs.Validator
    weight: int
    context_weight: int
    max_errors: int
    max_error_work: int


def compile_schema(schema: object, limits: PolicyLimits) -> tuple[dict[str, Any] | bool, Compiled]:
    """A private copy of `schema` and its validator, or `SchemaRefused`.

    The cheap bounds run before jsonschema-rs sees the schema, so no hostile schema gets to
    the compiler.
    """
    if not isinstance(schema, (dict, bool)):
        raise SchemaRefused(SCHEMA_NOT_A_SCHEMA.format(type(schema).__name__))
    if not within_depth(schema, limits.max_schema_depth):
        raise SchemaRefused(SCHEMA_TOO_DEEP.format(limits.max_schema_depth))
    try:
        text = dump(schema)
    except (TypeError, ValueError):
        raise SchemaRefused(SCHEMA_NOT_JSON) from None
    if len(text.encode()) > limits.max_schema_bytes:
        raise SchemaRefused(SCHEMA_TOO_LARGE.format(limits.max_schema_bytes))
    copy: dict[str, Any] | bool = json.loads(text)
    weight, context_weight = Weigher(copy, limits).weigh()
    try:
        validator = jsonschema_rs.Draft202012Validator(
            copy,
            # Formats are annotations in 2020-12.  Asserting them would tie validity to this
            # library's format checkers (which change between releases, flipping stored
            # documents), and `"format": "regex"` would compile member-supplied regexes.
            validate_formats=False,
            retriever=_refuse_retrieval,
            mask=_MASK,
            pattern_options=jsonschema_rs.RegexOptions(
                size_limit=limits.max_regex_bytes,
                dfa_size_limit=limits.max_regex_cache_bytes,
            ),
        )
    except jsonschema_rs.ValidationError as error:
        raise SchemaRefused(_schema_message(error, limits)) from None
    except (jsonschema_rs.ReferencingError, ValueError) as error:
        raise SchemaRefused(truncate(str(error))) from None
    return copy, Compiled(
        validator, weight, context_weight, limits.max_errors, limits.max_error_work
    )


def _refuse_retrieval(uri: str, /) -> NoReturn:
    # jsonschema-rs would otherwise fetch `$ref`s over HTTP or from files.
    raise ValueError(f"{uri} is not fetched: references must resolve inside the schema")


def _schema_message(error: jsonschema_rs.ValidationError, limits: PolicyLimits) -> str:
    if isinstance(error.kind, jsonschema_rs.ValidationErrorKind.Referencing):
        return truncate(error.message)
    message = error.message
    if isinstance(error.kind, jsonschema_rs.ValidationErrorKind.Format):
        if error.kind.format == "regex":
            message += SCHEMA_BAD_REGEX.format(limits.max_regex_bytes)
    return truncate(f"{_pointer(error.instance_path)}: {message}")


def located(error: jsonschema_rs.ValidationError) -> str:
    """A schema error as the contract words it: `"<JSON Pointer, / for the root>: <message>"`."""
    return truncate(f"{_pointer(error.instance_path)}: {error.message}")


def _pointer(path: Iterable[str | int]) -> str:
    """RFC 6901 JSON Pointer, except that the root is `/`, as the contract says."""
    tokens = [str(token).replace("~", "~0").replace("/", "~1") for token in path]
    return "/" + "/".join(tokens)
