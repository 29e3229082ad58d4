"""The one JSON writer: every document is stored and served as this compact text."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

# Keys that are their own JSON text inside quotes (most keys are): no escaping to do.
_PLAIN = re.compile(r"[A-Za-z0-9_. $:@+-]*")

__all__ = ["dump", "keys_json"]


def dump(value: Any) -> str:
    """Compact JSON as DRF renders it; U+2028/U+2029 escaped so it is safe inside JS."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    if "\u2028" in text or "\u2029" in text:
        text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return text


def keys_json(keys: Sequence[str], _memo: dict[tuple[str, ...], str] = {}) -> str:  # noqa: B006
    """`dump(list(keys))`, for the changed keys history writes with every change.

    A service changes the same few sets of keys over and over: their texts are remembered (a
    bounded memo, emptied when full, so keys sent by clients cannot grow it), and a new plain
    set is joined without the encoder."""
    key = tuple(keys)
    text = _memo.get(key)
    if text is None:
        if all(_PLAIN.fullmatch(name) for name in key):
            text = '["' + '","'.join(key) + '"]' if key else "[]"
        else:
            text = dump(list(key))
        if len(_memo) >= 1024:
            _memo.clear()
        if sum(map(len, key)) <= 256:  # long key sets are rare: not worth holding
            _memo[key] = text
    return text
