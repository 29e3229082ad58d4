"""The request builder both clients share.

Every client method is three steps: build a `Call` here (pure: method, URL, query, headers,
body), send it (the only step that differs between `MetadataClient` and
`AsyncMetadataClient`), and hand the response to the call's `parse` (`parsing.py`), which
returns the result or raises the refusal's exception.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qsl, urlsplit

import httpx

from .. import __version__
from .errors import UnexpectedResponse
from .models import ListedRecord, MetadataRecord, Page, PlatformPolicy, PolicyUpdate, Revision
from .parsing import (
    opened,
    parse_history,
    parse_imported,
    parse_listing,
    parse_no_content,
    parse_policy,
    parse_policy_update,
    parse_record,
)

__all__ = [
    "DEFAULT_PATH",
    "EVENT_STREAM",
    "NDJSON",
    "Call",
    "Calls",
    "ImportItem",
    "encode",
    "import_body",
]

T = TypeVar("T")

DEFAULT_PATH = "/api/core/users/platform-metadata/"

NDJSON = "application/x-ndjson"
EVENT_STREAM = "text/event-stream"

#: What `import_` takes: records (an export's, or any other) or `(username, metadata)` pairs.
ImportItem = ListedRecord | MetadataRecord | tuple[str, Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request, ready to send, and how to read its answer."""

    method: str
    url: str
    parse: Callable[[httpx.Response], T]
    params: tuple[tuple[str, str], ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    content: bytes | None = None


class Calls:
    """Builds every request of the API for one endpoint and one set of credentials."""

    def __init__(self, base_url: str, token: str | None, path: str = DEFAULT_PATH) -> None:
        inner = path.strip("/")
        self.url = base_url.rstrip("/") + ("/" + inner + "/" if inner else "/")
        self.headers: dict[str, str] = {
            "Accept": "application/json",
            "User-Agent": f"starlette-platform-metadata-client/{__version__}",
        }
        if token is not None:
            self.headers["Authorization"] = f"Token {token}"

    # --- the metadata (API.md) -----------------------------------------------------------

    def get(self, platform_key: str, *, username: str | None) -> Call[MetadataRecord]:
        return self._call("GET", "", platform_key, username, parse_record)

    def patch(
        self,
        platform_key: str,
        metadata: Mapping[str, Any] | None,
        *,
        delete_keys: Iterable[str],
        username: str | None,
        if_match: str | int | None,
    ) -> Call[MetadataRecord]:
        if isinstance(delete_keys, str):
            raise TypeError("delete_keys must be an iterable of keys, not one string")
        body: dict[str, Any] = {}
        if metadata is not None:
            body["metadata"] = dict(metadata)
        keys = list(delete_keys)
        if keys:
            body["delete_keys"] = keys
        return self._call(
            "PATCH", "", platform_key, username, parse_record, body=body, if_match=if_match
        )

    def replace(
        self,
        platform_key: str,
        metadata: Mapping[str, Any],
        *,
        username: str | None,
        if_match: str | int | None,
    ) -> Call[MetadataRecord]:
        body = {"metadata": dict(metadata)}
        return self._call(
            "PUT", "", platform_key, username, parse_record, body=body, if_match=if_match
        )

    def delete(
        self,
        platform_key: str,
        *,
        username: str | None,
        if_match: str | int | None,
        purge_history: bool,
    ) -> Call[None]:
        extra = (("history", "purge"),) if purge_history else ()
        return self._call(
            "DELETE", "", platform_key, username, parse_no_content, if_match=if_match, extra=extra
        )

    # --- the platform policy (EXTENSIONS.md section 1) ------------------------------------

    def get_policy(self, platform_key: str) -> Call[PlatformPolicy]:
        return self._call("GET", "policy/", platform_key, None, parse_policy)

    def put_policy(
        self,
        platform_key: str,
        policy_document: Mapping[str, Any],
        *,
        if_match: str | int | None,
        dry_run: bool,
    ) -> Call[PolicyUpdate]:
        return self._call(
            "PUT",
            "policy/",
            platform_key,
            None,
            parse_policy_update,
            body=dict(policy_document),
            if_match=if_match,
            extra=(("dry_run", "true"),) if dry_run else (),
        )

    def delete_policy(self, platform_key: str, *, if_match: str | int | None) -> Call[None]:
        return self._call(
            "DELETE", "policy/", platform_key, None, parse_no_content, if_match=if_match
        )

    # --- history and restore (EXTENSIONS.md section 2) ------------------------------------

    def history(
        self, platform_key: str, *, username: str | None, limit: int | None
    ) -> Call[Page[Revision]]:
        extra = (("limit", str(limit)),) if limit is not None else ()
        return self._call("GET", "history/", platform_key, username, parse_history, extra=extra)

    def restore(
        self,
        platform_key: str,
        version: int,
        *,
        username: str | None,
        if_match: str | int | None,
    ) -> Call[MetadataRecord]:
        body = {"version": version}
        return self._call(
            "POST", "restore/", platform_key, username, parse_record, body=body, if_match=if_match
        )

    # --- listing, export, import (EXTENSIONS.md section 4) -----------------------------------

    def list_users(
        self, platform_key: str, *, filter: Mapping[str, Any] | None, limit: int | None
    ) -> Call[Page[ListedRecord]]:
        extra = _filter_param(filter)
        if limit is not None:
            extra += (("limit", str(limit)),)
        return self._call("GET", "users/", platform_key, None, parse_listing, extra=extra)

    def export(self, platform_key: str, *, filter: Mapping[str, Any] | None) -> Call[None]:
        """A streamed answer: send it with the client's `stream`, then read its body with
        `ExportReader`."""
        return self._call(
            "GET",
            "users/",
            platform_key,
            None,
            opened(NDJSON),
            extra=_filter_param(filter),
            headers={"Accept": NDJSON},
        )

    def import_(self, platform_key: str, records: Iterable[ImportItem]) -> Call[int]:
        return self._call(
            "POST",
            "users/",
            platform_key,
            None,
            parse_imported,
            headers={"Content-Type": NDJSON},
            content=import_body(records),
        )

    # --- live changes (EXTENSIONS.md section 3) ---------------------------------------------

    def watch(
        self,
        platform_key: str,
        *,
        username: str | None,
        all_users: bool,
        last_event_id: str | None,
    ) -> Call[None]:
        """One connection of a watch (`Watch.call` makes the next ones): a streamed answer,
        read with `Watch.feed`."""
        if all_users and username is not None:
            raise ValueError("give either username or all_users, not both")
        extra = (("all_users", "true"),) if all_users else ()
        headers = {"Accept": EVENT_STREAM, "Cache-Control": "no-store"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        stream = opened(EVENT_STREAM)
        return self._call(
            "GET", "events/", platform_key, username, stream, extra=extra, headers=headers
        )

    def next_page(self, call: Call[Page[T]], page: Page[T]) -> Call[Page[T]] | None:
        """The request for the page after `page`, or `None` on the last page.

        Only `next`'s query is taken (its cursor, and whatever else the server carried over),
        sent to this client's own URL: a `next` naming another host, or the address the
        server sees behind a proxy, never receives the token.
        """
        if page.next is None:
            return None
        params = dict(call.params)
        params.update(parse_qsl(urlsplit(page.next).query, keep_blank_values=True))
        following = tuple(params.items())
        if following == call.params:
            raise UnexpectedResponse(200, {"next": page.next}, {})  # the same page again
        return dataclasses.replace(call, params=following)

    def _call(
        self,
        method: str,
        resource: str,
        platform_key: str,
        username: str | None,
        parse: Callable[[httpx.Response], T],
        *,
        body: Any = None,
        if_match: str | int | None = None,
        extra: tuple[tuple[str, str], ...] = (),
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
    ) -> Call[T]:
        """`body` is sent as JSON; `content` as it is, typed by the `headers` given."""
        params: tuple[tuple[str, str], ...] = (("platform_key", platform_key),)
        if username is not None:
            params += (("username", username),)
        sent = {**self.headers, **(headers or {})}
        if if_match is not None:
            sent["If-Match"] = f'"{if_match}"' if isinstance(if_match, int) else if_match
        if body is not None:
            sent["Content-Type"] = "application/json"
            content = encode(body)
        return Call(method, self.url + resource, parse, params + extra, sent, content)


def encode(body: Any) -> bytes:
    """Compact UTF-8 JSON; NaN and infinities raise `ValueError` here, as the server would
    refuse them."""
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def _filter_param(filter: Mapping[str, Any] | None) -> tuple[tuple[str, str], ...]:
    if filter is None:
        return ()
    if not isinstance(filter, Mapping):
        raise TypeError("filter must be a mapping of top-level keys to values")
    return (("filter", encode(dict(filter)).decode()),)


def import_body(records: Iterable[ImportItem]) -> bytes:
    """The NDJSON body of an import: `{"username": ..., "metadata": {...}}` per line."""
    lines = []
    username: object
    metadata: object
    for item in records:
        if isinstance(item, (ListedRecord, MetadataRecord)):
            username, metadata = item.username, item.metadata
        elif isinstance(item, tuple) and len(item) == 2:
            username, metadata = item
        else:
            raise TypeError("records must be records or (username, metadata) pairs")
        if not isinstance(username, str) or not isinstance(metadata, Mapping):
            raise TypeError("records must be records or (username, metadata) pairs")
        lines.append(encode({"username": username, "metadata": dict(metadata)}) + b"\n")
    return b"".join(lines)
