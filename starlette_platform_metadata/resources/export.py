"""The export's response (`GET <mount>/users/` with `Accept: application/x-ndjson`): the
NDJSON chunks `listing.export_chunks` reads, sent as the client takes them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator

from starlette.types import Message, Receive, Scope, Send

__all__ = ["EXPORT_HEADERS", "NDJSON", "ExportResponse", "wants_ndjson"]

logger = logging.getLogger("starlette_platform_metadata")

NDJSON = "application/x-ndjson"
USERS_ALLOW = "GET, POST, HEAD, OPTIONS"
# As `StreamingResponse(headers=..., media_type=NDJSON)` built them before: the same bytes.
EXPORT_HEADERS = [
    (b"vary", b"Accept, Authorization"),
    (b"allow", USERS_ALLOW.encode()),
    (b"content-type", NDJSON.encode()),
]


class ExportResponse:
    """The export's response: the messages `StreamingResponse` sent (the same headers, a
    body message per chunk, an empty last one), each send bounded by `send_timeout`.

    A client that stops reading makes a send wait for the socket to drain; past the timeout
    the response ends without its last message, so the client sees a cut body, never one that
    looks complete, and the server closes the connection.  The chunks' generator is closed
    then, or when the client leaves (a server's `send` to a client gone returns at once):
    what it held is freed, rather than held until the client leaves or the platform is read.
    """

    status_code = 200
    raw_headers = EXPORT_HEADERS

    def __init__(
        self, first: bytes | None, chunks: AsyncGenerator[bytes, None], send_timeout: float
    ) -> None:
        self.first = first
        self.chunks = chunks
        self.send_timeout = send_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()
        watcher = asyncio.get_running_loop().create_task(_watch(receive, gone))
        try:
            await self._send(
                send, {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
            )
            chunk, self.first = self.first, None
            while chunk is not None and not gone.is_set():
                await self._send(send, _body(chunk, more=True))
                # Not held while the next page is read: only what is being sent is.
                del chunk
                chunk = await anext(self.chunks, None)
            if not gone.is_set():
                await self._send(send, _body(b"", more=False))
        except TimeoutError:
            logger.info("export: ended, a chunk not taken within %s s", self.send_timeout)
        except OSError as exc:  # ASGI 2.4 servers raise it on a send to a client gone
            logger.info("export: ended: %r", exc)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await self.chunks.aclose()

    async def _send(self, send: Send, message: Message) -> None:
        async with asyncio.timeout(self.send_timeout):
            await send(message)


def _body(chunk: bytes, *, more: bool) -> Message:
    return {"type": "http.response.body", "body": chunk, "more_body": more}


async def _watch(receive: Receive, gone: asyncio.Event) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.set()


def wants_ndjson(accept: str | None) -> bool:
    """Whether `Accept` prefers NDJSON: it names `application/x-ndjson` with a quality above
    0 and at least that of `application/json` (a plain `*/*` gets the JSON page)."""
    if not accept:
        return False
    quality: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        quality[media.lower()] = max(q, quality.get(media.lower(), 0.0))
    ndjson = quality.get(NDJSON, 0.0)
    return ndjson > 0 and ndjson >= quality.get("application/json", 0.0)
