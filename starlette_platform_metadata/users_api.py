"""`<mount>/users/`: a tenant admin's listing, export and import of a platform's records
(EXTENSIONS.md section 4).

Same authentication, query parsing, error bodies and check order as the metadata endpoint
(401, 405, 400 `platform_key`, 404 platform, then 403 for anyone but a tenant admin); the work
itself is `listing.py`'s, shared with the host's own code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Collection, Sequence

from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from . import errors
from .auth import Identity, members_of
from .endpoint import Answer, MetadataEndpoint, _Answer, _query_values, render_record
from .errors import ApiError
from .events import EventSettings
from .history_api import next_url, parse_limit
from .jsontext import dump
from .listing import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    ImportRefused,
    Members,
    decode_cursor,
    encode_cursor,
    export_chunks,
    import_ndjson,
    parse_filter,
    read_page,
)
from .payload import read_body
from .stores.base import ManyWriter, RecordLister

__all__ = ["NDJSON", "UsersEndpoint"]

logger = logging.getLogger("starlette_platform_metadata")

USERS_ALLOW = "GET, POST, HEAD, OPTIONS"
NDJSON = "application/x-ndjson"
# As `StreamingResponse(headers=..., media_type=NDJSON)` built them before: the same bytes.
_EXPORT_HEADERS = [
    (b"vary", b"Accept, Authorization"),
    (b"allow", USERS_ALLOW.encode()),
    (b"content-type", NDJSON.encode()),
]


class UsersEndpoint(MetadataEndpoint):
    """GET a page of a platform's records (or, with `Accept: application/x-ndjson`, all of
    them as a stream); POST NDJSON to replace many users' documents at once."""

    allow = USERS_ALLOW
    methods = frozenset(USERS_ALLOW.split(", "))
    #: Seconds an export's client may take to accept one chunk; the app sets the events'
    #: `send_timeout`, the same promise for the other long response.
    send_timeout: float = EventSettings().send_timeout
    options_body = {
        "name": "Platform Users",
        "description": "A platform's stored metadata, for its tenant admins: list, export, import.",
        "renders": ["application/json", NDJSON],
        "parses": [NDJSON],
    }

    async def _handle(self, scope: Scope, receive: Receive) -> Answer:
        try:
            conn, identity = await self._start(scope, receive)
        except _Answer as answer:
            return answer.response
        values = _query_values(scope["query_string"])
        platform_key = self._platform_key(values)
        access = await self.auth.access(identity, platform_key, None)
        if not access.platform_exists:
            raise errors.platform_not_found()
        if not access.is_admin:
            raise errors.admin_only()
        store = self.store
        if not isinstance(store, RecordLister):
            raise errors.not_found()
        members = self._members(identity, platform_key)
        if scope["method"] == "POST":
            return await self._import(conn, receive, platform_key, identity, members)
        given = values.get("filter")
        filter = parse_filter(given[-1], self.limits) if given else None
        headers = {"Vary": "Accept, Authorization", "Allow": self.allow}
        if _wants_ndjson(conn.headers.get("accept")):
            chunks = export_chunks(
                store, platform_key, filter=filter, members=members, limits=self.limits
            )
            # The first chunk before the status: a store that fails at once is a 503, not
            # a 200 cut short.
            first = await anext(chunks, None)
            return _Export(first, chunks, self.send_timeout)
        limit = parse_limit(values, DEFAULT_LIMIT, MAX_LIMIT)
        after: str | None = None
        cursors = values.get("cursor")
        if cursors:
            after = decode_cursor(cursors[-1].decode("latin-1"))
            if after is None:
                raise errors.invalid_cursor()
        page = await read_page(
            store, platform_key, after=after, limit=limit, filter=filter, members=members
        )
        following = None if page.after is None else next_url(scope, encode_cursor(page.after))
        body = b"".join(
            (
                b'{"next":',
                dump(following).encode(),
                b',"results":[',
                b",".join(render_record(name, platform_key, record) for name, record in page.results),
                b"]}",
            )
        )
        return Response(body, headers=headers, media_type="application/json")

    def _members(self, identity: Identity, platform_key: str) -> Members:
        auth = self.auth

        async def members(usernames: Sequence[str]) -> Collection[str]:
            return await members_of(auth, identity, platform_key, usernames)

        return members

    async def _import(
        self,
        conn: HTTPConnection,
        receive: Receive,
        platform_key: str,
        identity: Identity,
        members: Members,
    ) -> Response:
        if not isinstance(self.store, ManyWriter):
            raise errors.not_found()
        limit = self.limits.max_import_bytes
        host_limit = conn.scope.get(MAX_BODY_SIZE_SCOPE_KEY)
        if isinstance(host_limit, int) and host_limit < limit:
            limit = host_limit
        try:
            body = await read_body(receive, conn.headers.get("content-length"), limit)
        except ApiError as exc:
            if exc.status_code == 413:
                raise errors.import_too_large(limit) from None
            raise
        content_type = conn.headers.get("content-type", "")
        if content_type.partition(";")[0].strip().lower() != NDJSON:
            raise errors.unsupported_media_type(content_type)
        try:
            imported = await import_ndjson(
                body,
                platform_key=platform_key,
                writer=self.writer,
                policies=self.policies,
                limits=self.limits,
                actor=identity.username,
                members=members,
            )
        except ImportRefused as exc:
            raise errors.import_refused(exc.lines) from None
        return Response(
            dump({"imported": imported}).encode(),
            headers={"Allow": self.allow},
            media_type="application/json",
        )


class _Export:
    """The export's response: the messages `StreamingResponse` sent (the same headers, a
    body message per chunk, an empty last one), each send bounded by `send_timeout`.

    A client that stops reading makes a send wait for the socket to drain; past the timeout
    the response ends without its last message, so the client sees a cut body, never one that
    looks complete, and the server closes the connection.  The chunks' generator is closed
    then, or when the client leaves (a server's `send` to a client gone returns at once):
    what it held is freed, rather than held until the client leaves or the platform is read.
    """

    status_code = 200
    raw_headers = _EXPORT_HEADERS

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


def _wants_ndjson(accept: str | None) -> bool:
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
