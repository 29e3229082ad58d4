"""The host tables' generation counter, known without a statement per request on PostgreSQL.

Every change to the host's tables raises `example_host_generation.n` (triggers, db.py), and on
PostgreSQL the same trigger sends `NOTIFY example_host_generation`.  `GenerationWatch` holds
one listening connection per process: while it listens, the counter read last is exact until
a notification arrives, so a request reads it only after a change (one statement, then none
again).  A notification is delivered when the change commits, before the client that made it
even hears of the commit, so a revoked token is refused from the next request on in practice;
the window is the notification's trip, milliseconds.  Changes this process makes itself
(`forgets_generation` on `HostDB`'s methods) take effect on its next request, without waiting.
While not listening (not yet, the connection lost, a pooler that cannot LISTEN), every request
reads the counter: a lost listener costs a statement, never a change.  (SQLite has no NOTIFY:
there one read serves the requests that arrived before it, `arrivals.SharedRead`, db.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["CHANNEL", "GenerationWatch", "forgets_generation"]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

CHANNEL = "example_host_generation"
#: Seconds between attempts to listen again after a failure.
RETRY_SECONDS = 1.0
#: Seconds a listener has to hear its own test notification before it is trusted, and between
#: attempts after one did not (LISTEN through a transaction pooler such as PgBouncer hears
#: nothing: docs/postgresql.md, "PgBouncer and live changes").
PING_SECONDS = 2.0
DEAF_RETRY_SECONDS = 60.0

logger = logging.getLogger("example_host")


class GenerationWatch:
    """The counter as of the last notification, or `None`: read it (see the module docstring).

    `read` reads the counter; `notify` sends a notification on `CHANNEL` through the
    connections requests use; `dsn` is the listener's address as `asyncpg.connect` takes it.
    A listener is trusted only once it heard a notification sent that way.
    """

    def __init__(
        self,
        read: Callable[[], Awaitable[int]],
        notify: Callable[[str], Awaitable[Any]],
        dsn: str,
        timeout: float,
    ) -> None:
        self.read = read
        self.notify = notify
        self.pings: dict[str, asyncio.Event] = {}
        self.dsn = dsn
        self.timeout = timeout
        self.known: int | None = None
        # Raised by every notification: a read that started before one may hold an old value.
        self.epoch = 0
        self.listener: Any = None
        self.retry_at = 0.0

    async def generation(self) -> int:
        if self.known is not None:
            return self.known
        if self.listener is None or self.listener.is_closed():
            await self.listen()
        epoch = self.epoch
        value = await self.read()
        if self.listener is not None and epoch == self.epoch:
            self.known = value
        return value

    async def listen(self) -> None:
        import asyncpg

        self.listener = None
        self.known = None
        loop = asyncio.get_running_loop()
        if loop.time() < self.retry_at:
            return
        try:
            async with asyncio.timeout(self.timeout):
                listener = await asyncpg.connect(self.dsn)
                await listener.add_listener(CHANNEL, self.changed)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            self.retry_at = loop.time() + RETRY_SECONDS
            logger.warning("cannot LISTEN for auth changes (%s); reading the counter", exc)
            return
        listener.add_termination_listener(self.lost)
        if not await self.hears(listener):
            self.retry_at = loop.time() + DEAF_RETRY_SECONDS
            logger.warning(
                "the LISTEN connection for auth changes heard nothing within %s s (a "
                "transaction pooler between?); reading the counter on every request",
                PING_SECONDS,
            )
            with contextlib.suppress(Exception):
                await asyncio.wait_for(listener.close(), 1.0)
            return
        self.listener = listener

    async def hears(self, listener: Any) -> bool:
        """Whether `listener` hears a notification sent through the requests' connections."""
        token = secrets.token_hex(8)
        heard = self.pings[token] = asyncio.Event()
        try:
            async with asyncio.timeout(PING_SECONDS):
                await self.notify(token)
                await heard.wait()
            return True
        except TimeoutError:
            return False
        except Exception:  # the database failed meanwhile: not trusted, tried again later
            return False
        finally:
            del self.pings[token]

    def changed(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        self.forget()
        ping = self.pings.get(payload)
        if ping is not None:
            ping.set()

    def forget(self) -> None:
        """Read the counter again on the next request."""
        self.epoch += 1
        self.known = None

    def lost(self, connection: Any) -> None:
        self.epoch += 1
        self.known = None
        self.listener = None

    async def close(self) -> None:
        listener, self.listener = self.listener, None
        self.known = None
        if listener is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(listener.close(), 1.0)


def forgets_generation(method: F) -> F:
    """For a `HostDB` method that changes the host tables: afterwards (even after a failure,
    which may have committed) the counter is read again by this process's next request,
    without waiting for its own NOTIFY."""

    @functools.wraps(method)
    async def changing(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(self, *args, **kwargs)
        finally:
            self.forget_generation()

    return changing  # type: ignore[return-value]
