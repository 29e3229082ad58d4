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


def keys_json(keys: Sequence[str]) -> str:
    """`dump(list(keys))`, without the encoder for the common case of plain keys (history
    writes one such array with every change)."""
    if all(_PLAIN.fullmatch(key) for key in keys):
        return '["' + '","'.join(keys) + '"]' if keys else "[]"
    return dump(list(keys))
