"""uvicorn's httptools protocol with the bounds a public server needs (docs/serving.md).

httptools parses fast but enforces no limit on a request's head: llhttp hands complete header
fields to the protocol only once they end, buffering them whole, so one endless header (or a
head sent a byte a minute) holds memory or a connection for as long as the client likes.
uvicorn's h11 protocol bounds the size (``h11_max_incomplete_event_size``) at about half the
throughput.  This subclass keeps httptools' parser and adds, per connection:

- a size cap on each request line + headers, counted on the bytes as they arrive, before the
  parser buffers them (uvicorn's own ``h11_max_incomplete_event_size`` setting, 16 KiB by
  default): past it the client gets 431 and the connection closes;
- a time limit for a request's head (``head_timeout``, 10 s, from the connection's opening or
  from the head's first byte, checked by one sweep per server every second): a client that sends no request, or sends its head too slowly,
  loses the connection (408 once it sent part of a head), so slow clients cannot hold every
  slot of ``limit_concurrency``;
- JSON bodies on the answers it makes itself (the 400 for a malformed request too);
- an arrival stamp in each request's scope (`arrivals.stamp`, when its first bytes are parsed),
  so an auth backend can share one read among the requests that arrived before it.

Use it with ``uvicorn.run(app, http=BoundedHttpToolsProtocol)``, or from the command line
``uvicorn --http starlette_platform_metadata.uvicorn_http:BoundedHttpToolsProtocol``.
It subclasses uvicorn's ``HttpToolsProtocol`` through the callbacks httptools defines
(``on_message_begin``, ``on_headers_complete``, ``on_message_complete``) and the protocol
methods asyncio defines; tests/test_uvicorn_http.py pins the behaviour on the uvicorn
installed.
"""

from __future__ import annotations

import asyncio
from collections.abc import MutableSet
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from .arrivals import stamp
from .errors import HEAD_TIMEOUT, HEAD_TOO_LARGE, MALFORMED_REQUEST

# h11's own default, which uvicorn passes on as h11_max_incomplete_event_size.
DEFAULT_MAX_HEAD_BYTES = 16 * 1024
# The ends of a head: CRLF CRLF, or the bare LF LF that llhttp also accepts.
HEAD_ENDS = (b"\r\n\r\n", b"\n\n")
REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def head_end(data: bytes, start: int, stop: int) -> bool:
    """Whether a head ends within data[start:stop]."""
    return any(data.find(end, start, stop) != -1 for end in HEAD_ENDS)


# The running sweeps, by the server's set of connections: one timer per server, not one per
# request (a timer armed and cancelled for every request cost 5-8 % of a bare route's rate).
# A scheduled sweep holds its set, so no other set can take its id while the entry stands.
sweeps: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.TimerHandle]] = {}


def sweep(loop: asyncio.AbstractEventLoop, connections: MutableSet[Any], every: float) -> None:
    """Close the connections whose request head is overdue; run again in `every` seconds
    while the server has connections."""
    now = loop.time()
    for connection in list(connections):
        if isinstance(connection, BoundedHttpToolsProtocol) and connection.head_overdue(now):
            connection.head_timed_out()
    if connections:
        sweeps[id(connections)] = loop, loop.call_later(every, sweep, loop, connections, every)
    else:
        sweeps.pop(id(connections), None)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """httptools with the request head bounded in size and time (see the module docstring)."""

    head_timeout: float = 10.0

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.max_head_bytes = config.h11_max_incomplete_event_size or DEFAULT_MAX_HEAD_BYTES
        self.in_head = True  # the next bytes belong to a request's head
        self.head_bytes = 0  # of the head in progress, counted before the parser sees them
        self.head_crossed = False  # a head ended (or a message did) inside the last feed
        self.head_tail = b""  # the last bytes of a head in progress: an end split over reads
        # loop.time() when the head in progress began (or the connection opened), None when
        # no head is due: the server's sweep closes the connection once it is too old.
        self.head_since: float | None = None

    # asyncio's protocol methods

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.head_since = self.loop.time()
        running = sweeps.get(id(self.connections))
        if running is None or running[0].is_closed():  # closed: a server stopped mid-sweep
            every = min(1.0, self.head_timeout / 4)
            later = self.loop.call_later(every, sweep, self.loop, self.connections, every)
            sweeps[id(self.connections)] = self.loop, later

    def connection_lost(self, exc: Exception | None) -> None:
        self.head_since = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.in_head and self.head_bytes + len(data) > self.max_head_bytes:
            # Over the cap unless this head ends within it (what follows is a body, or the
            # next request): look for its end in the budget left, the last bytes included.
            tail = self.head_tail
            budget = self.max_head_bytes - self.head_bytes
            if not head_end(tail + data[: budget + 1], 0, len(tail) + budget + 1):
                self.refuse(431, HEAD_TOO_LARGE)
                return
        self.head_crossed = False
        super().data_received(data)
        if not self.in_head or self.transport.is_closing():
            return
        if self.head_crossed:
            # A new head began inside this read, after the end of another message: its bytes
            # here are at most one read, counted from the next one on.
            self.head_bytes = 0
            self.head_tail = b""
        else:
            self.head_bytes += len(data)
            self.head_tail = (self.head_tail + data)[-3:]

    # httptools' parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        stamp(self.scope)  # type: ignore[arg-type]
        self.in_head = True
        if self.head_since is None:
            self.head_since = self.loop.time()

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.head_crossed = True
        self.head_bytes = 0
        self.head_tail = b""
        self.head_since = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.in_head = True  # whatever comes next starts a head (its timer starts with it)
        self.head_crossed = True

    # the answers it makes itself

    def send_400_response(self, msg: str) -> None:
        self.refuse(400, MALFORMED_REQUEST)

    def head_overdue(self, now: float) -> bool:
        return self.head_since is not None and now - self.head_since > self.head_timeout

    def head_timed_out(self) -> None:
        self.head_since = None
        if self.transport.is_closing():
            return
        if self.head_bytes or self.head_tail:
            self.refuse(408, HEAD_TIMEOUT)
        else:
            self.transport.close()  # nothing sent: nothing to answer

    def refuse(self, status: int, body: bytes) -> None:
        """Answer `status` with a JSON `body` and close: the connection's state is unknown.
        While an earlier (pipelined) request's response is still being written, an answer
        would land inside it: then the connection only closes."""
        self.head_since = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()
            return
        head = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS[status])]
        head.extend(b"%s: %s\r\n" % pair for pair in self.server_state.default_headers)
        head.append(b"content-type: application/json\r\n")
        head.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)
        self.transport.close()
