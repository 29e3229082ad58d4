"""`<mount>/users/`: a tenant admin's listing, export and import of a platform's records
(EXTENSIONS.md section 4).

Same authentication, query parsing, error bodies and check order as the metadata endpoint
(401, 405, 400 `platform_key`, 404 platform, then 403 for anyone but a tenant admin); the work
itself is `listing.py`'s, shared with the host's own code.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence

from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY
from starlette.requests import HTTPConnection
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope

from . import errors
from .auth import Identity, members_of
from .endpoint import MetadataEndpoint, _Answer, _query_values, render_record
from .errors import ApiError
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

USERS_ALLOW = "GET, POST, HEAD, OPTIONS"
NDJSON = "application/x-ndjson"


class UsersEndpoint(MetadataEndpoint):
    """GET a page of a platform's records (or, with `Accept: application/x-ndjson`, all of
    them as a stream); POST NDJSON to replace many users' documents at once."""

    allow = USERS_ALLOW
    methods = frozenset(USERS_ALLOW.split(", "))
    options_body = {
        "name": "Platform Users",
        "description": "A platform's stored metadata, for its tenant admins: list, export, import.",
        "renders": ["application/json", NDJSON],
        "parses": [NDJSON],
    }

    async def _handle(self, scope: Scope, receive: Receive) -> Response:
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
            chunks = export_chunks(store, platform_key, filter=filter, members=members)
            # The first chunk before the status: a store that fails at once is a 503, not
            # a 200 cut short.
            first = await anext(chunks, None)
            return StreamingResponse(_after(first, chunks), headers=headers, media_type=NDJSON)
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


async def _after(first: bytes | None, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first is None:
        return
    yield first
    async for chunk in rest:
        yield chunk


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
