"""`watch`: one watch's requests, its stream's parser (Server-Sent Events, as the WHATWG HTML
standard reads them) and when it reconnects, I/O-free."""

from __future__ import annotations

import random
from typing import cast

import httpx

from .calls import Call, Calls
from .errors import UnexpectedResponse, Unavailable
from .models import Change, EventName
from .parsing import parse_change
from .streams import Lines

__all__ = [
    "WATCH_BACKOFF_BASE",
    "WATCH_BACKOFF_CAP",
    "WATCH_READ_TIMEOUT",
    "WATCH_RETRY_AFTER_CAP",
    "Watch",
]

#: `watch`'s wait before reconnecting: `uniform(0.5, 1) * min(CAP, BASE * 2**attempt)`,
#: `attempt` counting the connections since one last delivered anything.
WATCH_BACKOFF_BASE = 0.25
WATCH_BACKOFF_CAP = 10.0
#: The longest `Retry-After` of a 503 (too many open streams) that `watch` waits.
WATCH_RETRY_AFTER_CAP = 60.0
#: Seconds of silence after which `watch` takes its connection for dead and reconnects: the
#: server sends a comment at least every 15 s.
WATCH_READ_TIMEOUT = 45.0

_EVENTS: frozenset[str] = frozenset(("snapshot", "change", "reset"))
#: The network failures `watch` reconnects after (not `UnsupportedProtocol` or
#: `LocalProtocolError`: those would fail the same way again).
_DROPPED = (
    httpx.NetworkError,
    httpx.TimeoutException,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
)


class Watch:
    """One `watch`: the request for each connection, the stream's parser (the Server-Sent
    Events format, as the WHATWG HTML standard reads it), and when to reconnect.

    The clients loop: send `call()` (streamed, with `timeout(...)`), check the answer with
    the call's `parse`, then call `connected` and give each chunk of the body to `feed`
    (yielding the changes it returns); when the connection ends, `delay` says whether to
    reconnect, and after how long.
    """

    def __init__(
        self,
        calls: Calls,
        platform_key: str,
        *,
        username: str | None,
        all_users: bool,
        last_event_id: str | None,
        reconnect: bool,
    ) -> None:
        self._calls = calls
        self.platform_key = platform_key
        self.username = username
        self.all_users = all_users
        #: The id of the last event received: sent as `Last-Event-ID` on reconnecting.
        self.last_event_id = last_event_id or None
        self.reconnect = reconnect
        #: The server's `retry:` field, in seconds, when it sent one.
        self.retry: float | None = None
        self.attempt = 0
        self._call(last_event_id)  # the arguments' errors at once, not at the first `next`
        self._start_connection()

    def _call(self, last_event_id: str | None) -> Call[None]:
        return self._calls.watch(
            self.platform_key,
            username=self.username,
            all_users=self.all_users,
            last_event_id=last_event_id,
        )

    def call(self) -> Call[None]:
        """The request for the next connection: resumes after the last event received."""
        return self._call(self.last_event_id)

    def timeout(self, configured: httpx.Timeout) -> httpx.Timeout:
        """The HTTP client's timeouts, with a read timeout long enough for the heartbeat."""
        read = configured.read
        return httpx.Timeout(
            connect=configured.connect,
            read=None if read is None else max(read, WATCH_READ_TIMEOUT),
            write=configured.write,
            pool=configured.pool,
        )

    def _start_connection(self) -> None:
        self._lines = Lines()
        self._id = self.last_event_id or ""
        self._event = ""
        self._data: list[str] = []

    def connected(self) -> None:
        """A connection answered 200 with a stream (`call().parse` let it through): parse
        its body from the start."""
        self._start_connection()

    def feed(self, chunk: bytes) -> list[Change]:
        changes = []
        for raw in self._lines.feed(chunk):
            self.attempt = 0  # the connection delivers: the next drop reconnects at once
            line = raw.decode("utf-8", "replace")
            if not line:
                change = self._dispatch()
                if change is not None:
                    changes.append(change)
                continue
            if line.startswith(":"):
                continue  # a comment: the server's keep-alive
            name, colon, value = line.partition(":")
            if colon and value.startswith(" "):
                value = value[1:]
            if name == "data":
                self._data.append(value)
            elif name == "event":
                self._event = value
            elif name == "id":
                if "\0" not in value:
                    self._id = value
            elif name == "retry":
                if value.isascii() and value.isdigit():
                    self.retry = int(value) / 1000
        return changes

    def _dispatch(self) -> Change | None:
        """The event the lines so far make; an event without data is none (the standard);
        an event type this client does not know is skipped, its id still kept."""
        event, data = self._event or "message", self._data
        self._event, self._data = "", []
        self.last_event_id = self._id or None
        text = "\n".join(data)
        if not text or event not in _EVENTS:
            return None
        return parse_change(cast(EventName, event), self._id, text, self.platform_key)

    def delay(self, error: BaseException | None) -> float | None:
        """Seconds to wait before reconnecting after a connection ended, by the server
        (`error` `None`) or by `error`; `None`: do not reconnect (re-raise `error`, or end
        the iteration when there is none).

        Refusals (401, 403, 404, 400) are raised; a 503 waits its `Retry-After`; a network
        error or timeout, a gateway's 5xx or a stream the server ended reconnect after a
        bounded, jittered backoff that starts again once a connection delivers.
        """
        if not self.reconnect:
            return None
        attempt, self.attempt = self.attempt, self.attempt + 1
        bound = min(WATCH_BACKOFF_CAP, WATCH_BACKOFF_BASE * 2.0**attempt)
        backoff = random.uniform(0.5, 1.0) * bound
        if self.retry is not None:
            backoff = max(backoff, min(self.retry, WATCH_BACKOFF_CAP))
        if error is None or isinstance(error, _DROPPED):
            return backoff
        if isinstance(error, Unavailable):
            if error.retry_after is not None:
                return min(error.retry_after, WATCH_RETRY_AFTER_CAP)
            return backoff
        if isinstance(error, UnexpectedResponse) and error.status_code >= 500:
            return backoff
        return None
