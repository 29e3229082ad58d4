"""`<mount>/events/`: a user's (or, for tenant admins, a platform's) changes as Server-Sent
Events (EXTENSIONS.md section 3).

Our own small writer rather than sse-starlette: a stream here must subscribe to the hub
before its headers are sent (so it carries every change committed after them), replay from
history, re-check access, end on a full queue, on shutdown or on a send that stalls; the
event format itself is four lines.  docs/events.md says more.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
from typing import Literal

from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from . import capabilities, errors
from .auth import Identity
from .endpoint import (
    Answer,
    MetadataEndpoint,
    _Answer,
    _boolean,
    _hidden,
    _query_values,
    render_record,
)
from .errors import ApiError
from .events import EventHub, Subscription, TooManyStreams
from .jsontext import dump
from .policy import Policy, member_view
from .stores.base import ChangeReader, HistoryReader, Record, Revision, StoreUnavailable

__all__ = ["EventsEndpoint"]

logger = logging.getLogger("starlette_platform_metadata")

EVENTS_ALLOW = "GET, HEAD, OPTIONS"
_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"vary", b"Authorization"),
    # nginx and similar proxies buffer responses unless told not to.
    (b"x-accel-buffering", b"no"),
]
_CURSOR = re.compile(r"([vs])\.([0-9]{1,18})")
# Changes read from history per page of a replay: what a replay holds at a time is this many
# revisions (each at most `Limits.max_document_bytes`), whatever the client's pace.
_REPLAY_PAGE = 16

Kind = Literal["user", "platform"]


def _cursor(kind: Kind, position: int) -> str:
    """An event id: `v.<version>` on a one-user stream, `s.<seq>` on a platform's."""
    return f"{'v' if kind == 'user' else 's'}.{position}"


def _read_cursor(kind: Kind, text: str | None) -> int | None:
    """The position a client's cursor names on this kind of stream; -1 when it names none of
    ours (treated as older than any history: a snapshot or a reset); `None` without one."""
    if text is None:
        return None
    match = _CURSOR.fullmatch(text.strip())
    if match is None or match.group(1) != ("v" if kind == "user" else "s"):
        return -1
    return int(match.group(2))


def _event(name: str, event_id: str, data: bytes) -> bytes:
    return b"id: " + event_id.encode() + b"\nevent: " + name.encode() + b"\ndata: " + data + b"\n\n"


def _data(
    username: str,
    platform_key: str,
    record: Record,
    hide: Policy | None,
    actor: str | None,
    operation: str | None,
) -> bytes:
    """A GET's success body as this caller may see it, plus version, actor and operation."""
    if hide is not None and hide.may_hold_private(record.metadata_json):
        record = dataclasses.replace(
            record, metadata_json=dump(member_view(hide, record.metadata))
        )
    body = render_record(username, platform_key, record)
    extra = f',"version":{record.version},"actor":{dump(actor)},"operation":{dump(operation)}}}'
    return body[:-1] + extra.encode()


def _as_record(revision: Revision) -> Record:
    """The record a revision left (a delete's has no timestamps, as a GET of it shows)."""
    if revision.created_at is None:
        return Record("{}", revision.version, None, None)
    return Record(revision.metadata_json, revision.version, revision.created_at, revision.at)


class EventsEndpoint(MetadataEndpoint):
    """GET a stream of changes: one user's, or with `all_users=true` a platform's (admins)."""

    allow = EVENTS_ALLOW
    methods = frozenset(EVENTS_ALLOW.split(", "))
    options_body = {
        "name": "Metadata Events",
        "description": "Changes of users' metadata on a platform, as Server-Sent Events.",
        "renders": ["text/event-stream"],
        "parses": ["application/json"],
    }
    hub: EventHub

    async def _handle(self, scope: Scope, receive: Receive) -> Answer:
        try:
            conn, identity = await self._start(scope, receive)
        except _Answer as answer:
            return answer.response
        values = _query_values(scope["query_string"])
        platform_key, target = self._query(scope)
        all_users = _boolean(values, "all_users")
        if all_users and target is not None:
            raise errors.validation_error({"all_users": [errors.ALL_USERS_WITH_USERNAME]})
        if all_users:
            is_admin = await self._authorize_platform(identity, platform_key)
            username: str | None = None
        else:
            username, is_admin = await self._authorize(identity, platform_key, target)
        # Live changes are read from history.
        if not self.hub.available:
            raise capabilities.missing(self.store, "changes", "ChangeReader", "events/")
        if self.writer.keep == 0:
            raise capabilities.history_off("events/")
        if scope["method"] == "HEAD":
            return Response(headers={k.decode(): v.decode() for k, v in _HEADERS})
        header = conn.headers.get("last-event-id")
        if header is None:
            given = values.get("last_event_id")
            header = given[-1].decode("utf-8", "replace") if given else None
        kind: Kind = "user" if username is not None else "platform"
        cursor = _read_cursor(kind, header)
        try:
            subscription = await self.hub.subscribe(platform_key, username, identity.username)
        except TooManyStreams as refused:
            if refused.bound == "process":
                raise errors.too_many_streams() from None
            raise errors.stream_quota(refused.bound) from None
        stream = _Stream(self, conn, identity, subscription, target, is_admin, cursor)
        if username is None and cursor is None:
            # Before the headers go: the stream carries every change committed after them.
            try:
                stream.position = (await self.hub.position(platform_key))[0]
            except BaseException:
                self.hub.unsubscribe(subscription)
                raise
        return stream

    async def _authorize_platform(self, identity: Identity, platform_key: str) -> bool:
        """`all_users=true`: the platform exists and the caller is its tenant admin."""
        access = await self.auth.access(identity, platform_key, None)
        if not access.platform_exists:
            raise errors.platform_not_found()
        if not access.is_admin:
            raise errors.admin_only()
        return True

    async def view_now(
        self, conn: HTTPConnection, identity: Identity, platform_key: str, target: str | None,
        all_users: bool,
    ) -> bool | None:
        """The stream's request authorized again, as the request path authorizes it: the
        token, the same caller, the platform, the membership or admin role.  Whether the
        caller is a tenant admin now (which view its events take), or `None`: the stream
        must end."""
        try:
            again = await self._authenticate(conn)
            if again.username != identity.username:
                return None
            if all_users:
                return await self._authorize_platform(again, platform_key)
            return (await self._authorize(again, platform_key, target))[1]
        except ApiError:
            return None


class _SendFailed(Exception):
    """The client did not take an event in time, or its connection is gone."""


class _Ended(Exception):
    """The stream must end cleanly: the caller may no longer read it, or it can no longer
    carry every change (the client resumes with its last id)."""


class _Stream:
    """The response: headers at once, then events until something ends it."""

    status_code = 200
    raw_headers = _HEADERS

    def __init__(
        self,
        endpoint: EventsEndpoint,
        conn: HTTPConnection,
        identity: Identity,
        subscription: Subscription,
        target: str | None,
        is_admin: bool,
        cursor: int | None,
    ) -> None:
        self.endpoint = endpoint
        self.conn = conn
        self.identity = identity
        self.subscription = subscription
        self.target = target
        # The view events take: derived again before every batch of changes (`_authorize`).
        self.is_admin = is_admin
        self.cursor = cursor
        self.platform_key = subscription.platform_key
        self.username = subscription.username
        self.kind: Kind = "user" if self.username is not None else "platform"
        # Last delivered: a version (one user) or a seq (platform); nothing at or below it is
        # sent again.
        self.position = 0
        self.disconnected = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub = self.endpoint.hub
        watcher = asyncio.get_running_loop().create_task(self._watch(receive))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
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
            async with asyncio.timeout(self.endpoint.hub.settings.send_timeout):
                await send({"type": "http.response.body", "body": body, "more_body": more})
        except (TimeoutError, OSError) as exc:
            raise _SendFailed(repr(exc)) from None

    async def _run(self, send: Send) -> None:
        settings = self.endpoint.hub.settings
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
        is_admin = await self.endpoint.view_now(
            self.conn, self.identity, self.platform_key, self.target, self.kind == "platform"
        )
        if is_admin is None:
            raise _Ended
        self.is_admin = is_admin

    # --- what a stream starts with -------------------------------------------------------------

    async def _begin(self, send: Send) -> None:
        """The snapshot, the replay or the reset the stream starts with."""
        store = self.endpoint.store
        if self.kind == "platform":
            assert isinstance(store, ChangeReader)
            cursor = self.cursor
            if cursor is None:
                return  # `position` was read before the headers were sent
            seq, horizon = await store.position(self.platform_key)
            if cursor < horizon or cursor > seq:
                await self._send(send, _event("reset", _cursor("platform", seq), b"{}"))
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
        store = self.endpoint.store
        assert self.username is not None
        current, record = await self.endpoint.policies.current_and(
            self.platform_key, self.username
        )
        cursor = self.cursor
        if cursor is not None and 0 <= cursor <= record.version:
            assert isinstance(store, HistoryReader)
            if await self._replay(send, store, cursor, record.version):
                return
        # No cursor, one older than the history kept, or one we never issued: the state now.
        policy = None if current.policy.is_default else current.policy
        hide = _hidden(policy, not self.is_admin)
        data = _data(self.username, self.platform_key, record, hide, None, None)
        await self._send(send, _event("snapshot", _cursor("user", record.version), data))
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
            policy = (await self.endpoint.policies.current(self.platform_key)).policy
            hide = _hidden(None if policy.is_default else policy, True)
        for username, revision in found:
            if self.kind == "user":
                if revision.version <= self.position:
                    continue  # already in the snapshot, or replayed
                event_id = _cursor("user", revision.version)
                position = revision.version
            else:
                position = revision.seq or 0
                if position <= self.position:
                    continue
                event_id = _cursor("platform", position)
            data = _data(
                username,
                self.platform_key,
                _as_record(revision),
                hide,
                revision.actor,
                revision.operation,
            )
            await self._send(send, _event("change", event_id, data))
            self.position = position
