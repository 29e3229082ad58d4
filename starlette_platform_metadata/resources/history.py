"""`<mount>/history/` and `<mount>/restore/`: a user's revisions, and undo (EXTENSIONS.md 2).

History is readable by whoever may GET that metadata; a restore is a PUT of an old document
by whoever may PUT it, under the same rules.  Two plain classes over the same request path.
"""

from __future__ import annotations

import re

from .. import capabilities, errors
from ..cursors import next_url, page_cursor, read_history_cursor
from ..history import find_revision, restore_change
from ..openapi import history as history_openapi
from ..payload import require_object
from ..policy import Policy
from ..resource import Request
from ..responses import Answer, json_response
from ..stores.base import Change, HistoryReader
from ..views import hidden, record_response, revision_body
from .metadata import current_policy, decide_and_write

__all__ = ["HistoryResource", "RestoreResource"]

HISTORY_ALLOW = "GET, HEAD, OPTIONS"
RESTORE_ALLOW = "POST, OPTIONS"
#: `limit` of a history page: default and largest.
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
_DIGITS = re.compile(rb"\s*[+-]?[0-9]{1,18}\s*")


class HistoryResource:
    """GET a user's revisions, newest first, a page at a time."""

    #: Its part of the OpenAPI document (`openapi.history`), beside its handlers.
    openapi = staticmethod(history_openapi.fragment)
    allow = HISTORY_ALLOW
    options: dict[str, object] = {
        "name": "Metadata History",
        "description": "The revisions of a user's metadata on a platform, newest first.",
        "renders": ["application/json"],
        "parses": ["application/json"],
    }
    query_names = frozenset((b"platform_key", b"username", b"cursor", b"limit"))

    async def get(self, request: Request) -> Answer:
        grant = await request.authorize("user", *request.query.target())
        assert grant.username is not None
        limit = request.query.limit(DEFAULT_LIMIT, MAX_LIMIT)
        before = request.query.cursor(read_history_cursor)
        store = request.services.store
        if not isinstance(store, HistoryReader):
            raise capabilities.missing(store, "revisions", "HistoryReader", "history/")
        # One more than a page: whether there is a next one, in the same indexed query.
        found = await store.revisions(
            grant.platform_key, grant.username, before=before, limit=limit + 1
        )
        page = found[:limit]
        hide = None
        if not grant.is_admin:
            hide = hidden(await current_policy(request, grant.platform_key), False)
        following = None
        if len(found) > limit:
            following = next_url(request.scope, page_cursor("v", page[-1].version))
        body = {
            "next": following,
            "results": [revision_body(revision, hide) for revision in page],
        }
        return json_response(body, {"Vary": "Authorization", "Allow": HISTORY_ALLOW})


class RestoreResource:
    """POST `{"version": N}`: revision N's document as a new change (operation "restore")."""

    #: Its part of the OpenAPI document (`openapi.history`), beside its handlers.
    openapi = staticmethod(history_openapi.fragment)
    allow = RESTORE_ALLOW
    options: dict[str, object] = {
        "name": "Metadata Restore",
        "description": "Write a kept revision's document as a new change.",
        "renders": ["application/json"],
        "parses": ["application/json"],
    }
    query_names = frozenset((b"platform_key", b"username"))

    async def post(self, request: Request) -> Answer:
        grant = await request.authorize("user", *request.query.target())
        assert grant.username is not None
        conditions = request.conditions()
        version = _version(await request.json())
        store = request.services.store
        if not isinstance(store, HistoryReader):
            raise capabilities.missing(store, "revisions", "HistoryReader", "restore/")
        revision = await find_revision(store, grant.platform_key, grant.username, version)
        if revision is None:
            raise errors.revision_not_found()
        limits = request.services.limits

        def decide(policy: Policy | None) -> Change:
            return restore_change(
                revision,
                policy=policy,
                member=not grant.is_admin,
                actor=request.identity.username,
                conditions=conditions,
                max_bytes=limits.max_document_bytes,
                max_private_bytes=limits.max_private_bytes,
            )

        record, policy = await decide_and_write(
            request, grant.platform_key, grant.username, decide
        )
        return record_response(
            grant.username,
            grant.platform_key,
            record,
            hidden(policy, grant.is_admin),
            b"GET, PUT, PATCH, DELETE, HEAD, OPTIONS",
        )


def _version(data: object) -> int:
    """`{"version": N}` as a DRF serializer with an IntegerField(min_value=1) reads it."""
    body = require_object(data)
    if "version" not in body:
        raise errors.validation_error({"version": [errors.REQUIRED]})
    value = body["version"]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, str) and _DIGITS.fullmatch(value.encode()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.validation_error({"version": [errors.NOT_AN_INTEGER]})
    if value < 1:
        raise errors.validation_error({"version": [errors.INTEGER_TOO_SMALL.format(1)]})
    return value
