"""Committed changes, told to whoever listens in this process (the host's `on_change`).

Every write that changes a record (PATCH, PUT, DELETE of a stored record, restore) is
published once it is committed, with what history keeps of it.  Callbacks run in the request
that made the change, after the commit and before its response is sent: a cache invalidated
here is invalid before the client hears of the change.  A callback that raises is logged and
never fails the request; a slow one delays its response, so a webhook belongs in a task of
the host's own (`asyncio.create_task`) or a queue.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

__all__ = ["Committed", "Feed", "OnChange"]

logger = logging.getLogger("starlette_platform_metadata")


@dataclass(frozen=True, slots=True)
class Committed:
    """One committed change of one user's metadata.

    Attributes:
        platform_key / username: whose record changed.
        version: the record's version after the change (its ETag number).
        operation: `"patch"`, `"put"`, `"delete"` or `"restore"`.
        actor: the username of the caller who made the change (`None`: not known).
        at: when (aware UTC).
        metadata_json: the whole document after the change (`"{}"` after a delete), full view.
    """

    platform_key: str
    username: str
    version: int
    operation: str
    actor: str | None
    at: datetime
    metadata_json: str

    @property
    def metadata(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.metadata_json)
        return value


#: A host's callback: sync, or async (awaited).
OnChange: TypeAlias = Callable[[Committed], "Awaitable[None] | None"]


class Feed:
    """The callbacks told of every committed change in this process."""

    def __init__(self) -> None:
        self._callbacks: list[OnChange] = []
        # Told only which platform committed (the live-changes hub, which reads the rest from
        # history): cheaper than a `Committed` for every write.
        self._platform_listeners: list[Callable[[str], None]] = []

    @property
    def active(self) -> bool:
        """Whether anyone listens for `Committed` changes (else a write builds none)."""
        return bool(self._callbacks)

    @property
    def watched(self) -> bool:
        """Whether anyone listens for committed platforms."""
        return bool(self._platform_listeners)

    def on_platform(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Call `listener(platform_key)` after every write that may have changed a record of
        that platform (sync, must not raise); returns the unsubscriber."""
        self._platform_listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._platform_listeners:
                self._platform_listeners.remove(listener)

        return unsubscribe

    def committed(self, platform_key: str) -> None:
        for listener in self._platform_listeners:
            listener(platform_key)

    def subscribe(self, callback: OnChange) -> Callable[[], None]:
        """Call `callback` with every committed change from now on; returns the unsubscriber."""
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return unsubscribe

    async def publish(self, change: Committed) -> None:
        for callback in list(self._callbacks):
            try:
                result = callback(change)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception(
                    "on_change callback %r failed for %r / %r version %d; the change stands",
                    callback,
                    change.platform_key,
                    change.username,
                    change.version,
                )
