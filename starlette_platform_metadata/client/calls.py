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
from typing import Any, Generic, TypeVar, cast
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
    Change,
    EventName,
    ListedRecord,
    MetadataRecord,
    Page,
    PlatformPolicy,
    PolicyUpdate,
    PolicyViolation,
    Revision,
)

__all__ = [
    "DEFAULT_PATH",
    "Call",
    "Calls",
    "ExportReader",
    "Lines",
    "Watch",
    "document_copy",
    "encode",
    "new_document",
    "retry_delay",
]

T = TypeVar("T")

DEFAULT_PATH = "/api/core/users/platform-metadata/"

#: `update`'s backoff after a 412: full jitter, `uniform(0, min(CAP, BASE * 2**attempt))`.
BACKOFF_BASE = 0.01
BACKOFF_CAP = 0.5
#: The longest `Retry-After` of a 503 that `update` waits before trying again.
RETRY_AFTER_CAP = 5.0

_ETAG = re.compile(r'^(?:W/)?"([0-9]+)"$')

#: What `import_` takes: records (an export's, or any other) or `(username, metadata)` pairs.
ImportItem = ListedRecord | MetadataRecord | tuple[str, Mapping[str, Any]]

NDJSON = "application/x-ndjson"
EVENT_STREAM = "text/event-stream"

#: `watch`'s wait before reconnecting: `uniform(0.5, 1) * min(CAP, BASE * 2**attempt)`,
#: `attempt` counting the connections since one last delivered anything.
WATCH_BACKOFF_BASE = 0.25
WATCH_BACKOFF_CAP = 10.0
#: The longest `Retry-After` of a 503 (too many open streams) that `watch` waits.
WATCH_RETRY_AFTER_CAP = 60.0
#: Seconds of silence after which `watch` takes its connection for dead and reconnects: the
#: server sends a comment at least every 15 s.
WATCH_READ_TIMEOUT = 45.0


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
        call = self._call(
            "GET", "users/", platform_key, None, _opened(NDJSON), extra=_filter_param(filter)
        )
        return dataclasses.replace(call, headers={**call.headers, "Accept": NDJSON})

    def import_(
        self,
        platform_key: str,
        records: Iterable[ImportItem],
    ) -> Call[int]:
        call = self._call("POST", "users/", platform_key, None, parse_imported)
        headers = {**call.headers, "Content-Type": NDJSON}
        return dataclasses.replace(call, headers=headers, content=import_body(records))

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
        opened = _opened(EVENT_STREAM)
        call = self._call("GET", "events/", platform_key, username, opened, extra=extra)
        headers = {**call.headers, "Accept": EVENT_STREAM, "Cache-Control": "no-store"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        return dataclasses.replace(call, headers=headers)

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


def _listed(body: Any) -> ListedRecord:
    """A success body as a record (`KeyError`, `TypeError` or `ValueError` when it is not
    one)."""
    return ListedRecord(
        username=_str(body["username"]),
        platform_key=_str(body["platform_key"]),
        metadata=_dict(body["metadata"]),
        created_at=_datetime(body["created_at"]),
        updated_at=_datetime(body["updated_at"]),
    )


def _record(body: Any, etag: str, version: int) -> MetadataRecord:
    listed = _listed(body)
    return MetadataRecord(
        username=listed.username,
        platform_key=listed.platform_key,
        metadata=listed.metadata,
        etag=etag,
        version=version,
        created_at=listed.created_at,
        updated_at=listed.updated_at,
    )


def parse_record(response: httpx.Response) -> MetadataRecord:
    body = _body(response, 200)
    etag = response.headers.get("etag")
    version = _version(etag)
    try:
        if etag is None or version is None:
            raise ValueError("no ETag")
        return _record(body, etag, version)
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


def _page(response: httpx.Response, item: Callable[[Any], T]) -> Page[T]:
    body = _body(response, 200)
    try:
        results = tuple(item(each) for each in body["results"])
        following = body.get("next")
        if following is not None and not isinstance(following, str):
            raise TypeError("next")
        return Page(results, following)
    except (KeyError, TypeError, ValueError):
        raise _unexpected(response) from None


def parse_history(response: httpx.Response) -> Page[Revision]:
    return _page(response, parse_revision)


def parse_listing(response: httpx.Response) -> Page[ListedRecord]:
    """A page of `users/`: success bodies, which carry no version."""
    return _page(response, _listed)


def parse_imported(response: httpx.Response) -> int:
    body = _body(response, 200)
    imported = body.get("imported")
    if not isinstance(imported, int) or isinstance(imported, bool):
        raise _unexpected(response)
    return imported


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


# --- streamed answers: export and watch -----------------------------------------------------


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


def _opened(media_type: str) -> Callable[[httpx.Response], None]:
    """The `parse` of a streamed call, given its response once the headers are in: returns
    when it is the stream asked for; raises the refusal's exception otherwise (the client
    has read the body of anything but a 200 before)."""

    def parse(response: httpx.Response) -> None:
        if response.status_code != 200:
            raise error_for(response)
        given = response.headers.get("content-type", "").partition(";")[0].strip().lower()
        if given != media_type:
            # A 200 that is not the stream (a proxy's page): its body is left unread.
            raise UnexpectedResponse(200, None, response.headers)

    return parse


_EOL = re.compile(rb"\r\n|\r|\n")


class Lines:
    """Bytes in, whole lines out, split at CR, LF and CRLF only.

    Not `httpx`'s `iter_lines`: that splits as `str.splitlines` does, also at U+0085, U+2028
    and the other separators JSON text may hold unescaped inside a string.
    """

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._after_cr = False

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._after_cr and chunk[:1] == b"\n":
            chunk = chunk[1:]  # the LF of a CRLF split between chunks
        self._after_cr = chunk[-1:] == b"\r"
        lines = []
        start = 0
        for match in _EOL.finditer(chunk):
            self._parts.append(chunk[start : match.start()])
            lines.append(b"".join(self._parts))
            self._parts = []
            start = match.end()
        if start < len(chunk):
            self._parts.append(chunk[start:])
        return lines

    def rest(self) -> bytes:
        """What came after the last line end (an unterminated last line), emptied."""
        rest = b"".join(self._parts)
        self._parts = []
        return rest


class ExportReader:
    """Reads an export's NDJSON body, chunk by chunk, into records: memory holds one line."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._lines = Lines()

    def feed(self, chunk: bytes) -> list[ListedRecord]:
        return [self._record(line) for line in self._lines.feed(chunk) if line.strip()]

    def end(self) -> list[ListedRecord]:
        rest = self._lines.rest()
        return [self._record(rest)] if rest.strip() else []

    def _record(self, line: bytes) -> ListedRecord:
        try:
            return _listed(json.loads(line))
        except (KeyError, TypeError, ValueError):  # UnicodeDecodeError is a ValueError
            raise UnexpectedResponse(200, None, self._response.headers) from None


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


def parse_change(event: EventName, event_id: str, data: str, platform_key: str) -> Change:
    """One event's data as a `Change`; data off the contract is `UnexpectedResponse`."""
    try:
        body = _dict(json.loads(data))
        if event == "reset":
            return Change(event, event_id, platform_key, None, {}, None, None, None, None, None)
        actor, operation, version = body["actor"], body["operation"], body["version"]
        if not isinstance(version, int) or isinstance(version, bool):
            raise TypeError("version")
        record = _listed(body)
        return Change(
            event=event,
            id=event_id,
            platform_key=record.platform_key,
            username=record.username,
            metadata=record.metadata,
            version=version,
            actor=None if actor is None else _str(actor),
            operation=None if operation is None else _str(operation),
            created_at=record.created_at,
            updated_at=record.updated_at,
        )
    except (KeyError, TypeError, ValueError):
        raise UnexpectedResponse(200, {"event": event, "id": event_id, "data": data}) from None
