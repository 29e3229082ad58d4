"""`update(fn)`: one read-modify-write cycle's requests, and when it tries again, I/O-free."""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping
from typing import Any

from .calls import Call, Calls
from .errors import MetadataClientError, PreconditionFailed, Unavailable
from .models import MetadataRecord

__all__ = ["BACKOFF_BASE", "BACKOFF_CAP", "RETRY_AFTER_CAP", "Update"]

#: `update`'s backoff after a 412: full jitter, `uniform(0, min(CAP, BASE * 2**attempt))`.
BACKOFF_BASE = 0.01
BACKOFF_CAP = 0.5
#: The longest `Retry-After` of a 503 that `update` waits before trying again.
RETRY_AFTER_CAP = 5.0


class Update:
    """One `update(fn)`: its read, its conditional write, and when to try again.

    The clients loop: send `read()`, call `fn` with `given(record)`, send
    `write(record, given, result)`; on `PreconditionFailed` or `Unavailable`, `delay` says how
    long to wait before the next round, or `None`: raise it.
    """

    def __init__(
        self, calls: Calls, platform_key: str, *, username: str | None, retries: int
    ) -> None:
        self._calls = calls
        self.platform_key = platform_key
        self.username = username
        self.retries = retries
        self.attempt = 0

    def read(self) -> Call[MetadataRecord]:
        return self._calls.get(self.platform_key, username=self.username)

    def given(self, current: MetadataRecord) -> dict[str, Any]:
        """A deep copy for `fn`: nothing it does can touch the record it came from."""
        return copy.deepcopy(current.metadata)

    def write(
        self, current: MetadataRecord, given: dict[str, Any], result: Mapping[str, Any] | None
    ) -> Call[MetadataRecord]:
        """The PUT of `fn`'s result (or of the copy it was `given`, when it returned `None`:
        it edited that copy in place), if `current` is still the stored version."""
        document = dict(given if result is None else result)
        return self._calls.replace(
            self.platform_key, document, username=self.username, if_match=current.etag
        )

    def delay(self, error: MetadataClientError) -> float | None:
        """Seconds to wait before the next round after `error`, or `None` when the retries
        are spent or `error` is not one to retry.

        A 412 means another writer came first: back off with full jitter, so racing writers
        spread out.  A 503 waits what `Retry-After` asks, bounded by `RETRY_AFTER_CAP`.
        """
        attempt = self.attempt
        if attempt >= self.retries:
            return None
        self.attempt += 1
        if isinstance(error, PreconditionFailed):
            return random.uniform(0.0, min(BACKOFF_CAP, BACKOFF_BASE * 2.0**attempt))
        if isinstance(error, Unavailable):
            if error.retry_after is not None:
                return min(error.retry_after, RETRY_AFTER_CAP)
            return min(BACKOFF_CAP, BACKOFF_BASE * 2.0**attempt)
        return None
