"""The one request builder and response parser both clients share.

Every client method is three steps: build a `Call` here (pure: method, URL, query, headers,
body), send it (the only step that differs between `MetadataClient` and
`AsyncMetadataClient`), and hand the response to the call's `parse`, which returns the result
or raises the refusal's exception.  The retry policy of `update` lives here too.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import random
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qsl, urlsplit

import httpx

from .. import __version__
from .errors import (
    MetadataClientError,
    PreconditionFailed,
    UnexpectedResponse,
    Unavailable,
    error_for,
    json_or_none,
)
from .models import (
    MetadataRecord,
    Page,
    PlatformPolicy,
    PolicyUpdate,
    PolicyViolation,
    Revision,
)

__all__ = ["DEFAULT_PATH", "Call", "Calls", "document_copy", "encode", "new_document", "retry_delay"]

T = TypeVar("T")

DEFAULT_PATH = "/api/core/users/platform-metadata/"

#: `update`'s backoff after a 412: full jitter, `uniform(0, min(CAP, BASE * 2**attempt))`.
BACKOFF_BASE = 0.01
BACKOFF_CAP = 0.5
#: The longest `Retry-After` of a 503 that `update` waits before trying again.
RETRY_AFTER_CAP = 5.0

_ETAG = re.compile(r'^(?:W/)?"([0-9]+)"$')


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

    # Still to come (issue 14), each one more builder here and a thin method per client:
    # - list_users: GET "users/" with `filter` (JSON) and `limit`, pages followed by
    #   `next_page` as history's are, results parsed with `parse_record`'s body reader.
    # - export: GET "users/" with `Accept: application/x-ndjson`; a streamed answer, so the
    #   clients need a streaming send beside `send`, yielding one record per line.
    # - import_: POST "users/" with `Content-Type: application/x-ndjson`, one
    #   `{"username", "metadata"}` per line; 400 `{"lines": {...}}` is a ValidationError.
    # - watch: GET "events/" as `text/event-stream` (streaming send again), reconnecting with
    #   `Last-Event-ID`; the event parser belongs here so both clients share it.

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
    ) -> Call[T]:
        params: tuple[tuple[str, str], ...] = (("platform_key", platform_key),)
        if username is not None:
            params += (("username", username),)
        headers = dict(self.headers)
        if if_match is not None:
            headers["If-Match"] = f'"{if_match}"' if isinstance(if_match, int) else if_match
        content = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            content = encode(body)
        return Call(method, self.url + resource, parse, params + extra, headers, content)


def encode(body: Any) -> bytes:
    """Compact UTF-8 JSON; NaN and infinities raise `ValueError` here, as the server would
    refuse them."""
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


# --- reading answers ---------------------------------------------------------------------


def _body(response: httpx.Response, status: int) -> dict[str, Any]:
    """The JSON object of a `status` answer; any other status raises its refusal."""
    if response.status_code != status:
        raise error_for(response)
    body = json_or_none(response)
    if not isinstance(body, dict):
        raise _unexpected(response)
    return body


def _unexpected(response: httpx.Response) -> UnexpectedResponse:
    return UnexpectedResponse(response.status_code, json_or_none(response), response.headers)


def _version(etag: str | None) -> int | None:
    match = _ETAG.match(etag or "")
    return int(match.group(1)) if match else None


def _datetime(value: Any) -> datetime | None:
    # RFC 3339 with `Z` and optional fractions: what `fromisoformat` reads since 3.11.
    return None if value is None else datetime.fromisoformat(value)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def _dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError("not an object")
    return value


def parse_record(response: httpx.Response) -> MetadataRecord:
    body = _body(response, 200)
    etag = response.headers.get("etag")
    version = _version(etag)
    try:
        if etag is None or version is None:
            raise ValueError("no ETag")
        return MetadataRecord(
            username=_str(body["username"]),
            platform_key=_str(body["platform_key"]),
            metadata=_dict(body["metadata"]),
            etag=etag,
            version=version,
            created_at=_datetime(body["created_at"]),
            updated_at=_datetime(body["updated_at"]),
        )
    except (KeyError, TypeError, ValueError):
        raise _unexpected(response) from None


def parse_no_content(response: httpx.Response) -> None:
    if response.status_code != 204:
        raise error_for(response)


def parse_revision(item: Any) -> Revision:
    return Revision(
        version=int(item["version"]),
        operation=_str(item["operation"]),
        actor=None if item["actor"] is None else _str(item["actor"]),
        at=datetime.fromisoformat(item["at"]),
        metadata=_dict(item["metadata"]),
        changed_keys=tuple(_str(key) for key in item["changed_keys"]),
    )


def parse_history(response: httpx.Response) -> Page[Revision]:
    body = _body(response, 200)
    try:
        results = tuple(parse_revision(item) for item in body["results"])
        following = body.get("next")
        if following is not None and not isinstance(following, str):
            raise TypeError("next")
        return Page(results, following)
    except (KeyError, TypeError, ValueError):
        raise _unexpected(response) from None


def _policy(body: dict[str, Any], etag: str | None) -> PlatformPolicy:
    private = body.get("private_keys")
    return PlatformPolicy(
        platform_key=_str(body["platform_key"]),
        protected_keys=tuple(_str(key) for key in body["protected_keys"]),
        private_keys=None if private is None else tuple(_str(key) for key in private),
        schema=body["schema"],
        version=int(body["version"]),
        updated_at=_datetime(body["updated_at"]),
        etag=etag,
        raw=body,
    )


def parse_policy(response: httpx.Response) -> PlatformPolicy:
    body = _body(response, 200)
    try:
        return _policy(body, response.headers.get("etag"))
    except (KeyError, TypeError, ValueError):
        raise _unexpected(response) from None


def parse_policy_update(response: httpx.Response) -> PolicyUpdate:
    body = _body(response, 200)
    try:
        count = body["violating_documents"]
        examples = tuple(
            PolicyViolation(_str(item["username"]), tuple(_str(e) for e in item["errors"]))
            for item in body["examples"]
        )
        return PolicyUpdate(
            policy=_policy(body, response.headers.get("etag")),
            violating_documents=None if count is None else int(count),
            examples=examples,
            raw=body,
        )
    except (KeyError, TypeError, ValueError):
        raise _unexpected(response) from None


# --- update(fn) ------------------------------------------------------------------------


def new_document(result: Mapping[str, Any] | None, given: dict[str, Any]) -> dict[str, Any]:
    """What `update` writes: `fn`'s result, or the copy it was given when it returned
    `None` (it edited that copy in place)."""
    return dict(given if result is None else result)


def document_copy(metadata: dict[str, Any]) -> dict[str, Any]:
    """A deep copy for `fn`: nothing it does can touch the record it came from."""
    return copy.deepcopy(metadata)


def retry_delay(error: MetadataClientError, attempt: int) -> float | None:
    """Seconds to wait before `update` tries again after `error` on try `attempt` (0 first),
    or `None` when `error` is not one to retry.

    A 412 means another writer came first: back off with full jitter, so racing writers
    spread out.  A 503 waits what `Retry-After` asks, bounded by `RETRY_AFTER_CAP`.
    """
    if isinstance(error, PreconditionFailed):
        return random.uniform(0.0, min(BACKOFF_CAP, BACKOFF_BASE * 2.0**attempt))
    if isinstance(error, Unavailable):
        if error.retry_after is not None:
            return min(error.retry_after, RETRY_AFTER_CAP)
        return min(BACKOFF_CAP, BACKOFF_BASE * 2.0**attempt)
    return None
