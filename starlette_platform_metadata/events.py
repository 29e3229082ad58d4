"""Live changes: one hub per process tells open streams of every committed change.

Changes come from the store's history, never from the writer's memory: a change committed by
another worker process or host is found the same way as our own.  The hub watches the
platforms that have streams open.  It wakes when this process commits a change (the app's
`Feed`) or when the store says someone may have (`ChangeReader.poll`: SQLite's
`PRAGMA data_version`, PostgreSQL's LISTEN/NOTIFY), at most `poll_interval` apart, and then
reads each watched platform's changes after the last `seq` it saw: one indexed query per
platform, however many streams are open.  Each stream has a bounded queue; a stream whose
client stops reading overflows it and is ended, never buffered without bound.

Server shutdown ends every stream at once: the hub chains itself in front of the process's
SIGINT and SIGTERM handlers when its first stream opens (uvicorn, like most servers, waits
for open responses to finish before it stops), and `close_all()` does the same from code.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, fields
from types import FrameType
from typing import Any, Literal

from .feed import Committed, Feed
from .metrics import NO_METRICS, Metrics
from .stores.base import ChangeReader, Revision, Store

__all__ = ["EventHub", "EventSettings", "Subscription", "TooManyStreams"]

logger = logging.getLogger("starlette_platform_metadata")

# Watched users of a platform named in the changes query at most; past it, all are read.
_MAX_NAMED = 100
# Seconds between two passes of the hub at most once woken (a change waits at most this long).
_COALESCE = 0.01


@dataclass(frozen=True, slots=True)
class EventSettings:
    """Bounds and timings of live-change streams (per process).

    Attributes:
        max_streams: open streams at most; past it a new one is answered 503 + Retry-After.
            Keep it well below the server's connection bound (uvicorn's
            `--limit-concurrency`), so that streams never take the connections plain
            requests need.
        max_streams_per_identity: open streams of one caller (one username) at most; past
            it 429 + Retry-After, so that one token cannot hold every stream.
        max_streams_per_platform: open streams on one platform at most; past it 429 +
            Retry-After, so that one tenant cannot hold every stream of the process.
        heartbeat: seconds between comment lines on an idle stream (proxies close silent ones).
        recheck: seconds between checks that the caller may still read the stream (a revoked
            token, a lost membership or a platform gone end it).
        poll_interval: seconds between two looks for changes other processes committed.
        max_queued: changes waiting for one stream's client; past it the stream is ended.
        send_timeout: seconds a client may take to accept one event before it is dropped.
    """

    max_streams: int = 500
    max_streams_per_identity: int = 10
    max_streams_per_platform: int = 250
    heartbeat: float = 15.0
    recheck: float = 30.0
    poll_interval: float = 0.2
    max_queued: int = 1000
    send_timeout: float = 10.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"EventSettings.{field.name} must be positive, not {value!r}")


class TooManyStreams(Exception):
    """A bound of `EventSettings` is reached, or the process is shutting down.

    Attributes:
        bound: `"process"` (`max_streams`, or shutting down), `"identity"`
            (`max_streams_per_identity`) or `"platform"` (`max_streams_per_platform`).
    """

    def __init__(self, bound: Literal["process", "identity", "platform"] = "process") -> None:
        super().__init__(bound)
        self.bound = bound


class Subscription:
    """One open stream's place at the hub: the changes waiting for it, and why it must end."""

    def __init__(
        self, platform_key: str, username: str | None, max_queued: int, owner: str | None = None
    ) -> None:
        self.platform_key = platform_key
        self.username = username  # None: every user of the platform
        # Who opened it (a stream's caller); None for the host's own `watch()`.
        self.owner = owner
        self.queue: deque[tuple[str, Revision]] = deque()
        self.wake = asyncio.Event()
        self.overflowed = False
        self.closed = False
        self._max_queued = max_queued

    def push(self, username: str, revision: Revision) -> None:
        if self.username is not None and username != self.username:
            return
        if len(self.queue) >= self._max_queued:
            self.overflowed = True  # the client stopped reading: end, never grow
        else:
            self.queue.append((username, revision))
        self.wake.set()

    def close(self) -> None:
        self.closed = True
        self.wake.set()


class EventHub:
    """Fans committed changes out to this process's open streams."""

    def __init__(
        self,
        store: Store,
        feed: Feed,
        settings: EventSettings | None = None,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self.store = store
        self.settings = settings or EventSettings()
        self.metrics = metrics  # streams opened, closed, refused
        self._subscriptions: dict[str, set[Subscription]] = {}
        # The same subscriptions by whose changes they take: (platform, username or None).  A
        # change is handed to its user's streams and the platform's, never offered to all.
        self._by_target: dict[tuple[str, str | None], set[Subscription]] = {}
        self._last: dict[str, int] = {}
        # Callers' open streams, by caller and by platform (the host's own watchers are not
        # counted here: they are bounded by `max_streams` alone).
        self._by_owner: Counter[str] = Counter()
        self._owned_by_platform: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._signals_chained = False
        # Set by SIGINT/SIGTERM: the server still accepts connections for a moment after the
        # signal, and a stream opened then would hold its shutdown up; it gets a 503 instead.
        self.shutting_down = False
        # Told which platform committed, only while streams are open: a write builds no
        # `Committed` for the hub (the changes themselves are read from history).
        self._feed = feed
        self._unfeed: Callable[[], None] | None = None

    @property
    def available(self) -> bool:
        return isinstance(self.store, ChangeReader)

    @property
    def open_streams(self) -> int:
        return sum(len(subscriptions) for subscriptions in self._subscriptions.values())

    async def subscribe(
        self, platform_key: str, username: str | None, owner: str | None = None
    ) -> Subscription:
        """A new stream's subscription, receiving every change the hub reads from now on.

        `owner` is the caller who opens it, counted against the per-identity and
        per-platform bounds; raises `TooManyStreams` naming the bound reached."""
        store = self.store
        assert isinstance(store, ChangeReader)
        settings = self.settings
        if self.shutting_down:
            self.metrics.stream_refused("shutting_down")
            raise TooManyStreams("process")
        if self.open_streams >= settings.max_streams:
            self.metrics.stream_refused("process")
            raise TooManyStreams("process")
        if owner is not None:
            if self._by_owner[owner] >= settings.max_streams_per_identity:
                self.metrics.stream_refused("identity")
                raise TooManyStreams("identity")
            if self._owned_by_platform[platform_key] >= settings.max_streams_per_platform:
                self.metrics.stream_refused("platform")
                raise TooManyStreams("platform")
            # Counted before the first await below, so that concurrent opens see each other.
            self._by_owner[owner] += 1
            self._owned_by_platform[platform_key] += 1
        try:
            return await self._subscribe(store, platform_key, username, owner)
        except BaseException:
            self._release(owner, platform_key)
            raise

    async def _subscribe(
        self, store: ChangeReader, platform_key: str, username: str | None, owner: str | None
    ) -> Subscription:
        if platform_key not in self._last:
            seq, _ = await store.position(platform_key)
            # Another stream of the platform may have started meanwhile: keep its position.
            self._last.setdefault(platform_key, seq)
        subscription = Subscription(platform_key, username, self.settings.max_queued, owner)
        self._subscriptions.setdefault(platform_key, set()).add(subscription)
        self._by_target.setdefault((platform_key, username), set()).add(subscription)
        self.metrics.stream_opened()
        self._start()
        return subscription

    async def position(self, platform_key: str) -> tuple[int, int]:
        store = self.store
        assert isinstance(store, ChangeReader)
        return await store.position(platform_key)

    def _release(self, owner: str | None, platform_key: str) -> None:
        if owner is None:
            return
        for counter, key in ((self._by_owner, owner), (self._owned_by_platform, platform_key)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]

    def unsubscribe(self, subscription: Subscription) -> None:
        platform = subscription.platform_key
        subscriptions = self._subscriptions.get(platform)
        if subscriptions is None or subscription not in subscriptions:
            return
        subscriptions.discard(subscription)
        self.metrics.stream_closed()
        self._release(subscription.owner, platform)
        target = (platform, subscription.username)
        same_target = self._by_target.get(target)
        if same_target is not None:
            same_target.discard(subscription)
            if not same_target:
                del self._by_target[target]
        if not subscriptions:
            # Nobody watches it: a later stream starts from the platform's position then,
            # not from a backlog.
            del self._subscriptions[platform]
            self._last.pop(platform, None)

    async def watch(
        self, platform_key: str, username: str | None = None
    ) -> AsyncIterator[Committed]:
        """Every change of the platform (or one user) committed from now on, by any process
        or host sharing the database, in commit order: the feed the streams read, for a
        host's own code.  Ends when the hub closes (`close_all`, shutdown); falling more than
        `max_queued` changes behind raises `OverflowError`."""
        subscription = await self.subscribe(platform_key, username)
        try:
            while not subscription.closed:
                if subscription.overflowed:
                    raise OverflowError("the watcher fell more than max_queued changes behind")
                while subscription.queue:
                    name, revision = subscription.queue.popleft()
                    yield Committed(
                        platform_key,
                        name,
                        revision.version,
                        revision.operation,
                        revision.actor,
                        revision.at,
                        revision.metadata_json,
                    )
                subscription.wake.clear()
                if not subscription.queue and not subscription.closed:
                    await subscription.wake.wait()
        finally:
            self.unsubscribe(subscription)

    def close_all(self) -> None:
        """End every open stream now (server shutdown)."""
        for subscriptions in list(self._subscriptions.values()):
            for subscription in list(subscriptions):
                subscription.close()

    # --- the hub's one task ------------------------------------------------------------------

    def _committed(self, platform_key: str) -> None:
        if self._wake is not None and platform_key in self._subscriptions:
            self._wake.set()

    def _start(self) -> None:
        if self._task is not None and not self._task.done():
            return
        self._wake = asyncio.Event()
        if self._unfeed is None:
            self._unfeed = self._feed.on_platform(self._committed)
        self._task = asyncio.get_running_loop().create_task(self._run())
        self._chain_signals()

    async def _run(self) -> None:
        try:
            await self._watch()
        finally:
            if self._unfeed is not None and not self._subscriptions:
                self._unfeed()
                self._unfeed = None

    async def _watch(self) -> None:
        store = self.store
        assert isinstance(store, ChangeReader) and self._wake is not None
        wake = self._wake
        while self._subscriptions:
            woken = False
            try:
                async with asyncio.timeout(self.settings.poll_interval):
                    await wake.wait()
                woken = True
            except TimeoutError:
                pass
            wake.clear()
            try:
                if not (await store.poll() or woken):
                    continue
                for platform in list(self._subscriptions):
                    await self._deliver(store, platform)
                # Under a stream of writes, a pass every few milliseconds picks up many
                # changes at once, instead of three statements per change.
                await asyncio.sleep(_COALESCE)
            except Exception as exc:  # a database outage: streams wait, the hub goes on
                logger.warning("live changes: cannot read changes (%s); retrying", exc)
                await asyncio.sleep(self.settings.poll_interval)

    async def _deliver(self, store: ChangeReader, platform: str) -> None:
        """Hand the platform's new changes to its streams.

        With no `all_users` stream open, only the changes of users with streams are read (a
        platform busy with other users' writes costs one cheap query, no Python objects), and
        the position moves to the platform's clock, read first: every change up to it is
        committed, so nothing of a watched user is left behind."""
        everyone = self._by_target.get((platform, None), ())
        usernames: list[str] | None = None
        through = 0
        if not everyone:
            usernames = [name for (p, name) in self._by_target if p == platform and name]
            if len(usernames) > _MAX_NAMED:
                usernames = None
            else:
                through, _ = await store.position(platform)
        while platform in self._last:
            found = await store.changes(
                platform, after=self._last[platform], limit=500, usernames=usernames
            )
            for username, revision in found:
                for subscription in (*everyone, *self._by_target.get((platform, username), ())):
                    subscription.push(username, revision)
            if platform not in self._last:
                return
            if found:
                self._last[platform] = found[-1][1].seq or self._last[platform]
            if len(found) < 500:
                self._last[platform] = max(self._last[platform], through)
                return

    def _chain_signals(self) -> None:
        """Put `close_all` in front of the process's SIGINT/SIGTERM handlers, once.

        Only when a Python handler is installed (a server such as uvicorn): the default
        actions are left alone, and so is a process whose main thread is not ours."""
        if self._signals_chained or threading.current_thread() is not threading.main_thread():
            return
        self._signals_chained = True
        loop = asyncio.get_running_loop()
        for number in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(number)
            if callable(previous):
                signal.signal(number, self._chained(loop, previous))

    def _chained(
        self, loop: asyncio.AbstractEventLoop, previous: Callable[[int, FrameType | None], Any]
    ) -> Callable[[int, FrameType | None], Any]:
        def handler(number: int, frame: FrameType | None) -> Any:
            self.shutting_down = True
            loop.call_soon_threadsafe(self.close_all)
            return previous(number, frame)

        return handler
