"""The response of `<mount>/events/`: one live stream of Server-Sent Events.

Our own small writer rather than sse-starlette: a stream here must subscribe to the hub
before its headers are sent (so it carries every change committed after them), replay from
history, re-check access through the request path's own authorization, end on a full queue,
on shutdown or on a send that stalls; the event format itself is four lines.
docs/events.md says more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from starlette.types import Message, Receive, Scope, Send

from ..cursors import EventKind, event_id
from ..events import EventHub, Subscription
from ..policies import Policies
from ..policy import Policy
from ..stores.base import (
    ChangeReader,
    HistoryReader,
    Record,
    Revision,
    Store,
    StoreUnavailable,
)
from ..views import event_data, hidden

__all__ = ["HEADERS", "EventStream", "Reauthorize"]

logger = logging.getLogger("starlette_platform_metadata")

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"vary", b"Authorization"),
    # nginx and similar proxies buffer responses unless told not to.
    (b"x-accel-buffering", b"no"),
]
# Changes read from history per page of a replay: what a replay holds at a time is this many
# revisions (each at most `Limits.max_document_bytes`), whatever the client's pace.
_REPLAY_PAGE = 16

#: Authorizes the stream's request again: whether the caller is a tenant admin now, or
#: `None` when it may no longer read the stream.
Reauthorize = Callable[[], Awaitable["bool | None"]]


def _event(name: str, cursor: str, data: bytes) -> bytes:
    return b"id: " + cursor.encode() + b"\nevent: " + name.encode() + b"\ndata: " + data + b"\n\n"


def _as_record(revision: Revision) -> Record:
    """The record a revision left (a delete's has no timestamps, as a GET of it shows)."""
    if revision.created_at is None:
        return Record("{}", revision.version, None, None)
    return Record(revision.metadata_json, revision.version, revision.created_at, revision.at)


class _SendFailed(Exception):
    """The client did not take an event in time, or its connection is gone."""


class _Ended(Exception):
    """The stream must end cleanly: the caller may no longer read it, or it can no longer
    carry every change (the client resumes with its last id)."""


class EventStream:
    """The response: headers at once, then events until something ends it."""

    status_code = 200
    raw_headers = HEADERS

    def __init__(
        self,
        hub: EventHub,
        store: Store,
        policies: Policies,
        subscription: Subscription,
        is_admin: bool,
        cursor: int | None,
        reauthorize: Reauthorize,
    ) -> None:
        self.hub = hub
        self.store = store
        self.policies = policies
        self.subscription = subscription
        # The view events take: derived again before every batch of changes, by the
        # request path's own authorization (`reauthorize`).
        self.is_admin = is_admin
        self.reauthorize = reauthorize
        self.cursor = cursor
        self.platform_key = subscription.platform_key
        self.username = subscription.username
        self.kind: EventKind = "user" if self.username is not None else "platform"
        # Last delivered: a version (one user) or a seq (platform); nothing at or below it is
        # sent again.
        self.position = 0
        self.disconnected = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub = self.hub
        watcher = asyncio.get_running_loop().create_task(self._watch(receive))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            await self._run(send)
            await self._end(send)
        except (_SendFailed, OSError) as exc:
            # Nothing more can reach this client; the server closes the connection, and this
            # stream's queue, subscription and pages go with this frame.
            logger.info("live changes: stream of %r dropped: %r", self.platform_key, exc)
        except _Ended:
            await self._end(send)
        except StoreUnavailable as exc:
            # A database outage: end the response properly (the last chunk), so that the
            # client sees an end and resumes with Last-Event-ID, not a broken read.
            logger.info("live changes: stream of %r ended: %r", self.platform_key, exc)
            await self._end(send)
        except Exception:
            logger.exception("live changes: stream of %r ended by an error", self.platform_key)
            await self._end(send)
        finally:
            hub.unsubscribe(self.subscription)
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _end(self, send: Send) -> None:
        if self.disconnected.is_set():
            return
        with contextlib.suppress(_SendFailed, OSError):
            await self._send(send, b"", more=False)

    async def _watch(self, receive: Receive) -> None:
        while True:
            message: Message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnected.set()
                self.subscription.wake.set()
                return

    async def _send(self, send: Send, body: bytes, *, more: bool = True) -> None:
        # A client that stops reading makes `send` wait for the socket to drain: bounded.
        # Servers write an event into their buffer only once the earlier ones drained
        # (uvicorn waits before writing), so a client that never reads holds one event there.
        try:
            async with asyncio.timeout(self.hub.settings.send_timeout):
                await send({"type": "http.response.body", "body": body, "more_body": more})
        except (TimeoutError, OSError) as exc:
            raise _SendFailed(repr(exc)) from None

    async def _run(self, send: Send) -> None:
        settings = self.hub.settings
        loop = asyncio.get_running_loop()
        subscription = self.subscription
        await self._begin(send)
        last_sent = recheck_at = loop.time()
        recheck_at += settings.recheck
        while True:
            if self.disconnected.is_set() or subscription.closed or subscription.overflowed:
                return
            if subscription.queue:
                await self._send_changes(send)
                last_sent = loop.time()
                continue
            now = loop.time()
            if now >= recheck_at:
                await self._refresh_view()
                recheck_at = loop.time() + settings.recheck
            if now - last_sent >= settings.heartbeat:
                await self._send(send, b": keep-alive\n\n")
                last_sent = loop.time()
            subscription.wake.clear()
            if subscription.queue or subscription.closed or self.disconnected.is_set():
                continue
            timeout = min(last_sent + settings.heartbeat, recheck_at) - loop.time()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(timeout, 0.0)):
                    await subscription.wake.wait()

    async def _refresh_view(self) -> None:
        """Authorize the stream again, as a request is: a role changed since the last
        batch changes the view of the next one; a lost right ends the stream."""
        is_admin = await self.reauthorize()
        if is_admin is None:
            raise _Ended
        self.is_admin = is_admin

    # --- what a stream starts with -------------------------------------------------------------

    async def _begin(self, send: Send) -> None:
        """The snapshot, the replay or the reset the stream starts with."""
        store = self.store
        if self.kind == "platform":
            assert isinstance(store, ChangeReader)
            cursor = self.cursor
            if cursor is None:
                return  # `position` was read before the headers were sent
            seq, horizon = await store.position(self.platform_key)
            if cursor < horizon or cursor > seq:
                await self._send(send, _event("reset", event_id("platform", seq), b"{}"))
                self.position = seq
                return
            self.position = cursor
            while True:
                found = await store.changes(
                    self.platform_key, after=self.position, limit=_REPLAY_PAGE
                )
                await self._send_revisions(send, found)
                if len(found) < _REPLAY_PAGE:
                    return
        else:
            await self._begin_user(send)

    async def _begin_user(self, send: Send) -> None:
        store = self.store
        assert self.username is not None
        current, record = await self.policies.current_and(
            self.platform_key, self.username
        )
        cursor = self.cursor
        if cursor is not None and 0 <= cursor <= record.version:
            assert isinstance(store, HistoryReader)
            if await self._replay(send, store, cursor, record.version):
                return
        # No cursor, one older than the history kept, or one we never issued: the state now.
        hide = hidden(current.policy, self.is_admin)
        data = event_data(self.username, self.platform_key, record, hide, None, None)
        await self._send(send, _event("snapshot", event_id("user", record.version), data))
        self.position = record.version

    async def _replay(self, send: Send, store: HistoryReader, cursor: int, through: int) -> bool:
        """The user's changes after `cursor` up to `through`, a page at a time (a page is
        all the replay holds: a client that reads slowly pins one page, not the history);
        `False` when history no longer keeps the first of them."""
        assert self.username is not None
        self.position = cursor
        while self.position < through:
            first = self.position + 1
            page = await store.revisions(
                self.platform_key,
                self.username,
                before=min(first + _REPLAY_PAGE, through + 1),
                limit=_REPLAY_PAGE,
            )
            found = [r for r in reversed(page) if r.version >= first]
            if not found or found[0].version != first:
                if first == cursor + 1:
                    return False  # older than the history kept: a snapshot instead
                # Trimmed while replaying: what was missed is gone; a resume from the last
                # id sent gets the snapshot, never a gap.
                raise _Ended
            await self._send_revisions(send, [(self.username, r) for r in found])
        return True

    # --- changes -------------------------------------------------------------------------------

    async def _send_changes(self, send: Send) -> None:
        queue = self.subscription.queue
        batch = [queue.popleft() for _ in range(len(queue))]
        await self._send_revisions(send, batch)

    async def _send_revisions(self, send: Send, found: list[tuple[str, Revision]]) -> None:
        """Each change as its own event, sent once the client took the one before it."""
        if not found:
            return
        await self._refresh_view()
        hide: Policy | None = None
        if not self.is_admin:
            hide = hidden((await self.policies.current(self.platform_key)).policy, False)
        for username, revision in found:
            if self.kind == "user":
                if revision.version <= self.position:
                    continue  # already in the snapshot, or replayed
                position = revision.version
            else:
                position = revision.seq or 0
                if position <= self.position:
                    continue
            data = event_data(
                username,
                self.platform_key,
                _as_record(revision),
                hide,
                revision.actor,
                revision.operation,
            )
            await self._send(send, _event("change", event_id(self.kind, position), data))
            self.position = position
