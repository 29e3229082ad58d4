"""`<mount>/users/`: a tenant admin's listing, export and import of a platform's records
(EXTENSIONS.md section 4).

Same authentication, query parsing, error bodies and check order as the metadata resource
(401, 405, 400 `platform_key`, 404 platform, then 403 for anyone but a tenant admin); the work
itself is `listing.py`'s, shared with the host's own code.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from .. import capabilities, errors
from ..auth import members_of
from ..cursors import next_url, page_cursor, read_listing_cursor
from ..errors import ApiError
from ..jsontext import dump
from ..listing import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    ImportRefused,
    Members,
    export_chunks,
    import_ndjson,
    parse_filter,
    read_page,
)
from ..openapi import users as users_openapi
from ..payload import read_body
from ..request import Grant, body_limit
from ..resource import Request
from ..responses import Answer, json_response, render_record
from ..stores.base import ManyWriter, RecordLister
from .export import NDJSON, USERS_ALLOW, ExportResponse, wants_ndjson

__all__ = ["UsersResource"]


class UsersResource:
    """GET a page of a platform's records (or, with `Accept: application/x-ndjson`, all of
    them as a stream); POST NDJSON to replace many users' documents at once."""

    #: Its part of the OpenAPI document (`openapi.users`), beside its handlers.
    openapi = staticmethod(users_openapi.fragment)
    allow = USERS_ALLOW
    options: dict[str, object] = {
        "name": "Platform Users",
        "description": "A platform's stored metadata, for its tenant admins: list, export, import.",
        "renders": ["application/json", NDJSON],
        "parses": [NDJSON],
    }
    query_names = frozenset((b"platform_key", b"filter", b"cursor", b"limit"))

    async def get(self, request: Request) -> Answer:
        grant = await request.authorize("platform", request.query.platform_key())
        store = request.services.store
        if not isinstance(store, RecordLister):
            raise capabilities.missing(store, "records", "RecordLister", "users/")
        members = _members(request, grant)
        limits = request.services.limits
        given = request.query.last("filter")
        filter = parse_filter(given, limits) if given is not None else None
        if wants_ndjson(request.conn.headers.get("accept")):
            chunks = export_chunks(
                store, grant.platform_key, filter=filter, members=members, limits=limits
            )
            # The first chunk before the status: a store that fails at once is a 503, not
            # a 200 cut short.
            first = await anext(chunks, None)
            return ExportResponse(first, chunks, request.services.hub.settings.send_timeout)
        limit = request.query.limit(DEFAULT_LIMIT, MAX_LIMIT)
        after = request.query.cursor(read_listing_cursor)
        page = await read_page(
            store, grant.platform_key, after=after, limit=limit, filter=filter, members=members
        )
        following = None
        if page.after is not None:
            following = next_url(request.scope, page_cursor("u", page.after))
        records = [render_record(name, grant.platform_key, record) for name, record in page.results]
        body = b"".join(
            (b'{"next":', dump(following).encode(), b',"results":[', b",".join(records), b"]}")
        )
        return json_response(body, {"Vary": "Accept, Authorization", "Allow": USERS_ALLOW})

    async def post(self, request: Request) -> Answer:
        grant = await request.authorize("platform", request.query.platform_key())
        services = request.services
        store = services.store
        if not isinstance(store, RecordLister):
            raise capabilities.missing(store, "records", "RecordLister", "users/")
        members = _members(request, grant)
        if not isinstance(store, ManyWriter):
            raise capabilities.missing(store, "update_many", "ManyWriter", "users/ import")
        limit = body_limit(request.conn, services.limits.max_import_bytes)
        headers = request.conn.headers
        try:
            body = await read_body(request.receive, headers.get("content-length"), limit)
        except ApiError as exc:
            if exc.status_code == 413:
                raise errors.import_too_large(limit) from None
            raise
        content_type = headers.get("content-type", "")
        if content_type.partition(";")[0].strip().lower() != NDJSON:
            raise errors.unsupported_media_type(content_type)
        try:
            imported = await import_ndjson(
                body,
                platform_key=grant.platform_key,
                writer=services.writer,
                policies=services.policies,
                limits=services.limits,
                actor=request.identity.username,
                members=members,
            )
        except ImportRefused as exc:
            raise errors.import_refused(exc.lines) from None
        return json_response({"imported": imported}, {"Allow": USERS_ALLOW})


def _members(request: Request, grant: Grant) -> Members:
    auth, identity, platform_key = request.services.auth, request.identity, grant.platform_key

    async def members(usernames: Sequence[str]) -> Collection[str]:
        return await members_of(auth, identity, platform_key, usernames)

    return members
