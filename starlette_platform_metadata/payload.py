"""Request bodies: bounded reading, strict JSON, and DRF-shaped validation.

Python's `json` accepts what no JSON client should send (NaN, 1e400, lone surrogates, huge
integers, duplicate keys) and raises unexpected exceptions on hostile input; everything here
turns such input into the contract's 400 `JSON parse error - ...` before it can be stored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import Receive

from . import errors
from . import field_errors
from .jsonvalues import within_depth
from .limits import Limits

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


@dataclass(frozen=True, slots=True)
class PatchBody:
    set: dict[str, Any]
    delete: list[str]


async def read_body(receive: Receive, content_length: str | None, limit: int) -> bytes:
    """Read the whole body, refusing with 413 as soon as it exceeds `limit` bytes.

    A declared Content-Length over the limit is refused before anything is read; without one
    (chunked), the count stops at the first message past the limit, so at most `limit` bytes
    plus one message are ever held.  Starlette's `RequestBodyLimitMiddleware` in front of us
    raises from `receive`; that becomes the same JSON 413, naming the limit that was hit.
    """
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            declared = -1
        if declared > limit:
            raise errors.body_too_large(limit)
    body = bytearray()
    while True:
        try:
            message = await receive()
        except HTTPException as exc:
            if exc.status_code == 413:
                raise errors.body_too_large(limit) from None
            raise
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        if chunk:
            if len(body) + len(chunk) > limit:
                raise errors.body_too_large(limit)
            body += chunk
        if not message.get("more_body", False):
            return bytes(body)


class ClientDisconnected(Exception):
    """The client went away before sending the whole body; nothing is done."""


def _reject_constant(name: str) -> Any:
    # DRF's wording (rest_framework.utils.json.strict_constant).
    raise ValueError(field_errors.OUT_OF_RANGE_FLOAT.format(repr(name)))


def _parse_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(field_errors.OUT_OF_RANGE_FLOAT.format(repr(text)))
    return value


def _parse_int(text: str) -> int:
    # 20 characters hold any signed 64-bit integer; refusing longer text first keeps
    # 5,000-digit integers from costing a quadratic conversion.
    if len(text) > 20:
        raise ValueError(field_errors.INTEGER_OUT_OF_RANGE)
    value = int(text)
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(field_errors.INTEGER_OUT_OF_RANGE)
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(field_errors.DUPLICATE_KEY.format(repr(key)))
            seen.add(key)
    return result


_DECODER = json.JSONDecoder(
    parse_constant=_reject_constant,
    parse_float=_parse_float,
    parse_int=_parse_int,
    object_pairs_hook=_no_duplicates,
)


def parse_json(body: bytes, max_depth: int) -> Any:
    """Decode a request body as strict JSON or raise the contract's 400 parse error.

    `max_depth` bounds the metadata object; the body around it adds one level.
    """
    try:
        text = body.decode("utf-8")
        if text.startswith("\ufeff"):
            # What `json.loads`, and so DRF, answers; the bare decoder would say "Expecting value".
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        value = _DECODER.decode(text)
    except RecursionError:
        # The C scanner stops near the interpreter's recursion limit (a body of 100,000 `[`).
        raise errors.parse_error(_too_deep(max_depth)) from None
    except (ValueError, UnicodeError) as exc:  # JSONDecodeError is a ValueError
        raise errors.parse_error(str(exc)) from None
    if not within_depth(value, max_depth + 1):
        raise errors.parse_error(_too_deep(max_depth))
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        # PostgreSQL cannot store U+0000 in text or JSON, so no store accepts it.
        raise errors.parse_error(field_errors.NUL_CHARACTER)
    if _SURROGATE_ESCAPE.search(text):
        # The decoder joins valid pairs into one character, so anything that still fails
        # to encode is a lone surrogate, which no database can store as UTF-8.
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise errors.parse_error(field_errors.LONE_SURROGATE) from None
    return value


def _too_deep(max_depth: int) -> str:
    return field_errors.TOO_DEEP.format(max_depth)


def _type_name(value: Any) -> str:
    return type(value).__name__


def require_object(data: Any) -> dict[str, Any]:
    if data is None:
        raise errors.validation_error({"non_field_errors": [field_errors.NO_DATA]})
    if not isinstance(data, dict):
        message = field_errors.NOT_A_DICT.format(_type_name(data))
        raise errors.validation_error({"non_field_errors": [message]})
    return data


def _metadata_errors(value: Any, limits: Limits) -> list[str]:
    if value is None:
        return [field_errors.NULL]
    if not isinstance(value, dict):
        return [field_errors.NOT_A_DICT_OF_ITEMS.format(_type_name(value))]
    if len(value) > limits.max_keys:
        return [field_errors.TOO_MANY_KEYS.format(limits.max_keys)]
    for key in value:
        if not key or len(key) > limits.max_key_length:
            return [field_errors.BAD_KEY.format(limits.max_key_length)]
    return []


def _delete_keys_errors(value: Any, limits: Limits) -> list[str] | dict[str, list[str]]:
    if value is None:
        return [field_errors.NULL]
    if not isinstance(value, list):
        return [field_errors.NOT_A_LIST.format(_type_name(value))]
    if len(value) > limits.max_delete_keys:
        return [field_errors.TOO_MANY_ENTRIES.format(limits.max_delete_keys)]
    item_errors: dict[str, list[str]] = {}
    for index, item in enumerate(value):
        if item is None:
            item_errors[str(index)] = [field_errors.NULL]
        elif not isinstance(item, str):
            item_errors[str(index)] = [field_errors.NOT_A_STRING]
        elif not item:
            item_errors[str(index)] = [field_errors.BLANK]
        elif len(item) > limits.max_key_length:
            item_errors[str(index)] = [field_errors.TOO_LONG.format(limits.max_key_length)]
    return item_errors


def validate_patch(data: Any, limits: Limits) -> PatchBody:
    """Validate a PATCH body as the original DRF serializer did."""
    body = require_object(data)
    problems: dict[str, Any] = {}
    if "metadata" in body:
        if found := _metadata_errors(body["metadata"], limits):
            problems["metadata"] = found
    if "delete_keys" in body:
        if found_keys := _delete_keys_errors(body["delete_keys"], limits):
            problems["delete_keys"] = found_keys
    if problems:
        raise errors.validation_error(problems)
    metadata: dict[str, Any] = body.get("metadata") or {}
    delete: list[str] = body.get("delete_keys") or []
    if not metadata and not delete:
        raise errors.nothing_to_do()
    return PatchBody(set=metadata, delete=delete)


def validate_put(data: Any, limits: Limits) -> dict[str, Any]:
    """Validate a PUT body: `metadata` is required and replaces everything."""
    body = require_object(data)
    if "metadata" not in body:
        raise errors.validation_error({"metadata": [errors.REQUIRED]})
    if found := _metadata_errors(body["metadata"], limits):
        raise errors.validation_error({"metadata": found})
    metadata: dict[str, Any] = body["metadata"]
    return metadata
