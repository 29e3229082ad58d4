"""`Notifications`: one listening connection per process, for live changes on PostgreSQL.

Every write's statement sends `NOTIFY` on the table's channel (postgres.py); a process with
streams open asks `heard()` a few times a second instead of reading the table.  LISTEN holds
session state, which a transaction pooler (PgBouncer) cannot keep: the listening connection
may go straight to PostgreSQL (`dsn`) while the pool goes through the pooler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

__all__ = ["Notifications"]

logger = logging.getLogger("starlette_platform_metadata")

#: Seconds between attempts to listen again after a failure.
RETRY_SECONDS = 1.0


class Notifications:
    """Whether a NOTIFY on `channel` arrived, heard on one connection to `dsn()`."""

    def __init__(self, channel: str, dsn: Callable[[], str], timeout: float) -> None:
        self.channel = channel
        self.dsn = dsn
        self.timeout = timeout
        self.listener: Any = None
        self.notified = True  # until the listener runs, every poll may have missed something
        self.retry_at = 0.0

    async def heard(self) -> bool:
        """Whether a NOTIFY arrived since the last call (`True` while not listening, so that
        callers read the table instead: a lost listener costs latency, never a change)."""
        if self.listener is None or self.listener.is_closed():
            await self.listen()
        notified, self.notified = self.notified, self.listener is None
        return notified

    async def listen(self) -> None:
        import asyncpg

        loop = asyncio.get_running_loop()
        if loop.time() < self.retry_at:
            return
        self.listener = None
        self.notified = True
        try:
            async with asyncio.timeout(self.timeout):
                listener = await asyncpg.connect(self.dsn())
                await listener.add_listener(self.channel, self.on_notify)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            self.retry_at = loop.time() + RETRY_SECONDS
            logger.warning("PostgreSQL: cannot LISTEN for live changes (%s); polling", exc)
            return
        listener.add_termination_listener(self.on_terminated)
        self.listener = listener

    def on_notify(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        self.notified = True

    def on_terminated(self, connection: Any) -> None:
        self.notified = True

    async def close(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(listener.close(), 1.0)
