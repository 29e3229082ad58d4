"""JSON values as the contract compares and bounds them: one definition each.

- `json_equal`: equal as JSON values, the policy's and the listing filter's equality
  (numbers by value, booleans only to booleans, containers deeply).
- `identical_json`: the same JSON text, number spelling included (what `changed_keys`
  reports as changed).
- `within_depth` and `count_values`: bounds that stop walking a value at the bound.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["count_values", "identical_json", "json_equal", "within_depth"]


def json_equal(a: Any, b: Any) -> bool:
    """Equality of two JSON values.

    Numbers compare by value (`7` equals `7.0`: JSON has one number type, and a client that
    reads `7.0` back may well send `7`), booleans never equal numbers (`true` is not `1`),
    objects compare whatever their key order, arrays item by item.
    """
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and a.keys() == b.keys()
            and all(json_equal(a[key], b[key]) for key in a)
        )
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(json_equal, a, b))
    return type(a) is type(b) and bool(a == b)


def identical_json(a: Any, b: Any) -> bool:
    """Equal as JSON texts, number spelling included: Python's `==` says `1 == 1.0 == True`
    and `0.0 == -0.0`, their JSON texts differ."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(identical_json(a[key], b[key]) for key in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(identical_json, a, b))
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return bool(a == b)


def within_depth(value: Any, limit: int, depth: int = 1) -> bool:
    """True when `value` (at `depth`) nests no deeper than `limit`; stops at the limit."""
    if depth > limit:
        return False
    if isinstance(value, dict):
        value = value.values()
    elif not isinstance(value, list):
        return True
    return all(
        within_depth(item, limit, depth + 1) for item in value if isinstance(item, (dict, list))
    )


def count_values(document: Any, cap: int) -> int:
    """Values and member names in `document`, counting no further than `cap`."""
    count = 0
    stack = [document]
    while stack and count < cap:
        value = stack.pop()
        count += 1
        if isinstance(value, dict):
            count += len(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return min(count, cap)
