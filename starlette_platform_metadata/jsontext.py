"""The one JSON writer: every document is stored and served as this compact text."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["dump"]


def dump(value: Any) -> str:
    """Compact JSON as DRF renders it; U+2028/U+2029 escaped so it is safe inside JS."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    if "\u2028" in text or "\u2029" in text:
        text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return text
