"""`update(fn)`: what it writes, and when it tries again, I/O-free."""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping
from typing import Any

from .errors import MetadataClientError, PreconditionFailed, Unavailable

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "RETRY_AFTER_CAP",
    "document_copy",
    "new_document",
    "retry_delay",
]

#: `update`'s backoff after a 412: full jitter, `uniform(0, min(CAP, BASE * 2**attempt))`.
BACKOFF_BASE = 0.01
BACKOFF_CAP = 0.5
#: The longest `Retry-After` of a 503 that `update` waits before trying again.
RETRY_AFTER_CAP = 5.0


def new_document(result: Mapping[str, Any] | None, given: dict[str, Any]) -> dict[str, Any]:
    """What `update` writes: `fn`'s result, or the copy it was given when it returned
    `None` (it edited that copy in place)."""
    return dict(given if result is None else result)


def document_copy(metadata: dict[str, Any]) -> dict[str, Any]:
    """A deep copy for `fn`: nothing it does can touch the record it came from."""
    return copy.deepcopy(metadata)


def retry_delay(error: MetadataClientError, attempt: int) -> float | None:
    """Seconds to wait before `update` tries again after `error` on try `attempt` (0 first),
    or `None` when `error` is not one to retry.

    A 412 means another writer came first: back off with full jitter, so racing writers
    spread out.  A 503 waits what `Retry-After` asks, bounded by `RETRY_AFTER_CAP`.
    """
    if isinstance(error, PreconditionFailed):
        return random.uniform(0.0, min(BACKOFF_CAP, BACKOFF_BASE * 2.0**attempt))
    if isinstance(error, Unavailable):
        if error.retry_after is not None:
            return min(error.retry_after, RETRY_AFTER_CAP)
        return min(BACKOFF_CAP, BACKOFF_BASE * 2.0**attempt)
    return None
