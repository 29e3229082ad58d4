"""Values and helpers the contract classes share: the awkward document, JSON sameness,
the pair every test writes, and changes that store an exact record."""

from __future__ import annotations

import math
from typing import Any


from ..conditional import Conditions, parse
from ..stores.base import (
    Change,
    Record,
    Write,
)

__all__ = ["AWKWARD", "P", "U", "if_match", "same", "storing"]

#: The platform and user every contract test writes.
P, U = "acme-corp", "john_doe"

#: Keys and values that break naive stores: quoting, Unicode, numbers at the edges.
AWKWARD: dict[str, Any] = {
    "k" * 2000: "a very long key",
    "ключ 鍵 🔑": "a Unicode key",
    "a.b": "dot",
    "$set": "dollar",
    'say "hi"': "quote",
    "[0]": "brackets",
    "back\\slash": "backslash",
    "tab\tand\nnewline": "control characters in a key",
    "one_float": 1.0,
    "one_int": 1,
    "negative_zero": -0.0,
    "huge": 1e300,
    "e16": 1e16,
    "tiny": 1.5e-10,
    "subnormal": 5e-324,
    "max_float": 1.7976931348623157e308,
    "int64_max": 2**63 - 1,
    "int64_min": -(2**63),
    "zero": 0,
    "empty_string": "",
    "empty_list": [],
    "empty_object": {},
    "bools_and_null": [True, False, None],
    "nested": {"a": [1, [2.5, [3, {"b": None, "": ""}]]], "z": {"y": {"x": "deep"}}},
    "emoji": "😀👍🏽🇺🇦",
    "separators": "line\u2028paragraph\u2029end",
    "controls": "\x01\x1f\x7f\u0085",
    "escapes": '"\\/\b\f\n\r\t',
    "mixed_list": [1, 1.0, -0.0, "1", None, {"k": [1e300]}],
}


def same(a: Any, b: Any) -> bool:
    """Equal as parsed JSON, types included: 1 is not 1.0, and -0.0 is not 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def if_match(record: Record) -> Conditions:
    """`If-Match` naming `record`'s version."""
    return Conditions(if_match=parse("If-Match", f'"{record.version}"', 64))


def storing(record: Record, operation: str = "replace") -> Change:
    """A change that stores exactly `record`, whatever is stored now."""
    return lambda current: Write(record, operation)
