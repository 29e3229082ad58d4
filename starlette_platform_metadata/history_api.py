"""`<mount>/history/` and `<mount>/restore/`: a user's revisions, and undo (EXTENSIONS.md 2).

Same authentication, query parsing, error bodies and check order as the metadata endpoint:
history is readable by whoever may GET that metadata, and a restore is a PUT of an old
document by whoever may PUT it, under the same rules.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from starlette.datastructures import URL
from starlette.responses import Response
from starlette.types import Receive, Scope

from . import capabilities, errors
from .endpoint import Answer, MetadataEndpoint, _Answer, _hidden, _iso, _query_values
from .history import decode_cursor, encode_cursor, find_revision, restore_change
from .jsontext import dump
from .payload import _require_object
from .policy import Policy, member_view
from .stores.base import HistoryReader, Revision

__all__ = ["HistoryEndpoint", "RestoreEndpoint", "parse_limit", "revision_body"]

HISTORY_ALLOW = "GET, HEAD, OPTIONS"
RESTORE_ALLOW = "POST, OPTIONS"
#: `limit` of a history page: default and largest.
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
_DIGITS = re.compile(rb"\s*[+-]?[0-9]{1,18}\s*")


def parse_limit(values: dict[str, list[bytes]], default: int, maximum: int) -> int:
    """`limit` as DRF's IntegerField reads it (the last value counts); refused, not clamped."""
    given = values.get("limit")
    if not given:
        return default
    raw = given[-1]
    if not _DIGITS.fullmatch(raw):
        raise errors.validation_error({"limit": [errors.NOT_AN_INTEGER]})
    limit = int(raw)
    if limit < 1:
        raise errors.validation_error({"limit": [errors.INTEGER_TOO_SMALL.format(1)]})
    if limit > maximum:
        raise errors.validation_error({"limit": [errors.INTEGER_TOO_LARGE.format(maximum)]})
    return limit


def revision_body(revision: Revision, hide: Policy | None) -> dict[str, Any]:
    """A revision as the contract renders it; `hide`: leave its private keys out."""
    metadata = revision.metadata
    changed = list(revision.changed_keys)
    if hide is not None:
        metadata = member_view(hide, metadata)
        changed = [key for key in changed if not hide.is_private(key)]
    return {
        "version": revision.version,
        "operation": revision.operation,
        "actor": revision.actor,
        "at": _iso(revision.at)[1:-1],
        "metadata": metadata,
        "changed_keys": changed,
    }


def next_url(scope: Scope, cursor: str) -> str:
    """The request's own absolute URL with `cursor` replaced, every other parameter kept as
    the client sent it (DRF's `replace_query_param`)."""
    kept = [
        field
        for field in scope["query_string"].split(b"&")
        if field and field.partition(b"=")[0] != b"cursor"
    ]
    query = "&".join([quote(field, safe="=&%+/:,;@!$'()*~-._") for field in kept])
    query = (query + "&" if query else "") + f"cursor={cursor}"
    base = URL(scope={**scope, "query_string": b""})
    return str(base.replace(query=query))


class HistoryEndpoint(MetadataEndpoint):
    """GET a user's revisions, newest first, a page at a time."""

    allow = HISTORY_ALLOW
    methods = frozenset(HISTORY_ALLOW.split(", "))
    options_body = {
        "name": "Metadata History",
        "description": "The revisions of a user's metadata on a platform, newest first.",
        "renders": ["application/json"],
        "parses": ["application/json"],
    }

    async def _handle(self, scope: Scope, receive: Receive) -> Answer:
        try:
            _, identity = await self._start(scope, receive)
        except _Answer as answer:
            return answer.response
        platform_key, target = self._query(scope)
        username, is_admin = await self._authorize(identity, platform_key, target)
        values = _query_values(scope["query_string"])
        limit = parse_limit(values, DEFAULT_LIMIT, MAX_LIMIT)
        before: int | None = None
        cursors = values.get("cursor")
        if cursors:
            before = decode_cursor(cursors[-1].decode("latin-1"))
            if before is None:
                raise errors.invalid_cursor()
        store = self.store
        if not isinstance(store, HistoryReader):
            raise capabilities.missing(store, "revisions", "HistoryReader", "history/")
        # One more than a page: whether there is a next one, in the same indexed query.
        found = await store.revisions(platform_key, username, before=before, limit=limit + 1)
        page = found[:limit]
        hide = None
        if not is_admin:
            hide = _hidden(await self._policy(platform_key), True)
        body = {
            "next": next_url(scope, encode_cursor(page[-1].version)) if len(found) > limit else None,
            "results": [revision_body(revision, hide) for revision in page],
        }
        return Response(
            dump(body).encode(),
            headers={"Vary": "Authorization", "Allow": self.allow},
            media_type="application/json",
        )


class RestoreEndpoint(MetadataEndpoint):
    """POST `{"version": N}`: revision N's document as a new change (operation "restore")."""

    allow = RESTORE_ALLOW
    methods = frozenset(RESTORE_ALLOW.split(", "))
    options_body = {
        "name": "Metadata Restore",
        "description": "Write a kept revision's document as a new change.",
        "renders": ["application/json"],
        "parses": ["application/json"],
    }

    async def _handle(self, scope: Scope, receive: Receive) -> Answer:
        try:
            conn, identity = await self._start(scope, receive)
        except _Answer as answer:
            return answer.response
        platform_key, target = self._query(scope)
        username, is_admin = await self._authorize(identity, platform_key, target)
        conditions = self._conditions(conn)
        data = await self._body(conn, receive, self.limits.max_depth)
        version = _version(data)
        if not isinstance(self.store, HistoryReader):
            raise capabilities.missing(self.store, "revisions", "HistoryReader", "restore/")
        revision = await find_revision(self.store, platform_key, username, version)
        if revision is None:
            raise errors.revision_not_found()
        member = not is_admin
        policy = await self._policy(platform_key)
        change = restore_change(
            revision,
            policy=policy,
            member=member,
            actor=identity.username,
            conditions=conditions,
            max_bytes=self.limits.max_document_bytes,
            max_private_bytes=self.limits.max_private_bytes,
        )
        record = await self._update(platform_key, username, change)
        return self._ok(username, platform_key, record, _hidden(policy, member))


def _version(data: object) -> int:
    """`{"version": N}` as a DRF serializer with an IntegerField(min_value=1) reads it."""
    body = _require_object(data)
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
