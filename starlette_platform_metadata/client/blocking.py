"""`MetadataClient`: the API over a blocking `httpx.Client`."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from .calls import DEFAULT_PATH, Call, Calls, ImportItem
from .errors import MetadataClientError, PreconditionFailed, Unavailable
from .models import (
    Change,
    ListedRecord,
    MetadataRecord,
    Page,
    PlatformPolicy,
    PolicyUpdate,
    Revision,
)

if TYPE_CHECKING:
    from .watching import Watch

# `update`, `export` and `watch` import their I/O-free halves (`updating`, `streams`,
# `watching`) when first called: loaded with the client, those three modules made its import
# 0.5 to 0.9 ms slower (of about 8 ms over httpx's; medians of 60 and 100 fresh imports),
# which a caller of `get` and `patch` alone never needs.

__all__ = ["MetadataClient"]

T = TypeVar("T")

#: How `update` and `watch` wait between tries (a module global so tests can record the
#: waits).
sleep = time.sleep


class MetadataClient:
    """The metadata API over HTTP, blocking.

    Args:
        base_url: the server's origin, `http://host:port`.
        token: the API token, sent as `Authorization: Token <token>`; `None` sends no
            `Authorization` (an injected client may carry its own credentials).
        http_client: an `httpx.Client` to send with, used as is and never closed here (a
            `starlette.testclient.TestClient` is one); by default the client makes its own
            and closes it in `close()`.
        path: where the endpoint is mounted on that origin.
        timeout: seconds, for the client made here.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        http_client: httpx.Client | None = None,
        path: str = DEFAULT_PATH,
        *,
        timeout: float = 10.0,
    ) -> None:
        self._calls = Calls(base_url, token, path)
        self._owned = http_client is None
        self._http = httpx.Client(timeout=timeout) if http_client is None else http_client

    @property
    def http_client(self) -> httpx.Client:
        return self._http

    def close(self) -> None:
        """Close the HTTP client if this client made it."""
        if self._owned:
            self._http.close()

    def __enter__(self) -> MetadataClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _send(self, call: Call[T]) -> T:
        response = self._http.request(
            call.method, call.url, params=call.params, headers=call.headers, content=call.content
        )
        return call.parse(response)

    @contextlib.contextmanager
    def _open(
        self, call: Call[None], timeout: httpx.Timeout | None = None
    ) -> Iterator[httpx.Response]:
        """A streamed answer, its body unread, once `call.parse` accepted its headers (a
        refusal's body is read first, for its exception)."""
        with self._http.stream(
            call.method,
            call.url,
            params=call.params,
            headers=call.headers,
            content=call.content,
            timeout=self._http.timeout if timeout is None else timeout,
        ) as response:
            if response.status_code != 200:
                response.read()
            call.parse(response)
            yield response

    def _pages(self, call: Call[Page[T]] | None) -> Generator[T, None, None]:
        while call is not None:
            page = self._send(call)
            yield from page.results
            call = self._calls.next_page(call, page)

    def get(self, platform_key: str, *, username: str | None = None) -> MetadataRecord:
        """The metadata of `username` (default: the caller) on `platform_key`."""
        return self._send(self._calls.get(platform_key, username=username))

    def patch(
        self,
        platform_key: str,
        metadata: Mapping[str, Any] | None = None,
        *,
        delete_keys: Iterable[str] = (),
        username: str | None = None,
        if_match: str | int | None = None,
    ) -> MetadataRecord:
        """Set the top-level keys of `metadata` and remove `delete_keys` (deletes first)."""
        call = self._calls.patch(
            platform_key, metadata, delete_keys=delete_keys, username=username, if_match=if_match
        )
        return self._send(call)

    def replace(
        self,
        platform_key: str,
        metadata: Mapping[str, Any],
        *,
        username: str | None = None,
        if_match: str | int | None = None,
    ) -> MetadataRecord:
        """Replace the whole document (PUT)."""
        call = self._calls.replace(platform_key, metadata, username=username, if_match=if_match)
        return self._send(call)

    def delete(
        self,
        platform_key: str,
        *,
        username: str | None = None,
        if_match: str | int | None = None,
        purge_history: bool = False,
    ) -> None:
        """Delete the document; with `purge_history`, every revision of it too (erasure)."""
        call = self._calls.delete(
            platform_key, username=username, if_match=if_match, purge_history=purge_history
        )
        self._send(call)

    def update(
        self,
        platform_key: str,
        fn: Callable[[dict[str, Any]], Mapping[str, Any] | None],
        *,
        username: str | None = None,
        retries: int = 10,
    ) -> MetadataRecord:
        """Read, change with `fn`, write back only if nothing changed meanwhile; repeat.

        `fn` gets a deep copy of the metadata and returns the new document (or `None` after
        editing its argument in place).  The write is a PUT with `If-Match`; a 412 (someone
        wrote first) reads again and calls `fn` again after a jittered backoff, a 503 after
        its `Retry-After`, at most `retries` times; then the last error is raised.  What
        `fn` raises propagates at once.
        """
        from .updating import Update

        cycle = Update(self._calls, platform_key, username=username, retries=retries)
        while True:
            try:
                current = self._send(cycle.read())
                given = cycle.given(current)
                return self._send(cycle.write(current, given, fn(given)))
            except (PreconditionFailed, Unavailable) as error:
                delay = cycle.delay(error)
                if delay is None:
                    raise
            sleep(delay)

    def get_policy(self, platform_key: str) -> PlatformPolicy:
        """The platform's policy (a member's view leaves `private_keys` out: `None`)."""
        return self._send(self._calls.get_policy(platform_key))

    def put_policy(
        self,
        platform_key: str,
        policy_document: Mapping[str, Any],
        *,
        if_match: str | int | None = None,
        dry_run: bool = False,
    ) -> PolicyUpdate:
        """Replace the policy (tenant admins); `dry_run` reports what it would refuse and
        saves nothing."""
        call = self._calls.put_policy(
            platform_key, policy_document, if_match=if_match, dry_run=dry_run
        )
        return self._send(call)

    def delete_policy(self, platform_key: str, *, if_match: str | int | None = None) -> None:
        """Back to the default policy (tenant admins)."""
        self._send(self._calls.delete_policy(platform_key, if_match=if_match))

    def history(
        self, platform_key: str, *, username: str | None = None, limit: int | None = None
    ) -> Generator[Revision, None, None]:
        """Every kept revision, newest first, fetched page by page (`limit` per page) as
        the iteration goes."""
        return self._pages(self._calls.history(platform_key, username=username, limit=limit))

    def restore(
        self,
        platform_key: str,
        version: int,
        *,
        username: str | None = None,
        if_match: str | int | None = None,
    ) -> MetadataRecord:
        """Write revision `version`'s document as a new change."""
        call = self._calls.restore(platform_key, version, username=username, if_match=if_match)
        return self._send(call)

    def list_users(
        self,
        platform_key: str,
        *,
        filter: Mapping[str, Any] | None = None,
        limit: int | None = None,
    ) -> Generator[ListedRecord, None, None]:
        """The stored records of the platform's members, by username (tenant admins), fetched
        page by page (`limit` per page, 1 to 1,000) as the iteration goes.  With `filter`,
        those whose top-level keys hold equal JSON values.  `ListedRecord`s: no version, which
        the listing does not carry."""
        return self._pages(self._calls.list_users(platform_key, filter=filter, limit=limit))

    def export(
        self, platform_key: str, *, filter: Mapping[str, Any] | None = None
    ) -> Generator[ListedRecord, None, None]:
        """Every record `list_users` would give, in one streamed NDJSON answer read line by
        line: memory holds one line, however large the platform (tenant admins)."""
        return self._export(self._calls.export(platform_key, filter=filter))

    def _export(self, call: Call[None]) -> Generator[ListedRecord, None, None]:
        from .streams import ExportReader

        with self._open(call) as response:
            reader = ExportReader(response)
            for chunk in response.iter_bytes():
                yield from reader.feed(chunk)
            yield from reader.end()

    def import_(
        self,
        platform_key: str,
        records: Iterable[ImportItem],
    ) -> int:
        """Replace each named user's document as a PUT would, all or nothing (tenant admins):
        `records` are records (an `export`'s `ListedRecord`s, `MetadataRecord`s) or
        `(username, metadata)` pairs.
        Returns how many were imported.  A bad line, an unknown user or a schema violation
        raises `ValidationError` (`errors["lines"]` by line number, from 1) with nothing
        written."""
        return self._send(self._calls.import_(platform_key, records))

    def watch(
        self,
        platform_key: str,
        *,
        username: str | None = None,
        all_users: bool = False,
        last_event_id: str | None = None,
        reconnect: bool = True,
    ) -> Generator[Change, None, None]:
        """Live changes, as they happen, for ever: the caller's (or `username`'s) record, or
        with `all_users` (tenant admins) every user's of the platform.

        A one-user stream starts with a `"snapshot"` (unless `last_event_id` resumes an
        earlier watch), then one `"change"` per change.  A dropped connection or a restarted
        server is reconnected with `Last-Event-ID` of the last event received, so nothing is
        missed and nothing comes twice; refusals (401, 403, 404, 400) are raised, a 503 is
        retried after its `Retry-After`.  With `reconnect=False` the iteration ends with the
        first connection.  Break out of the loop (or `close()` the iterator) to stop.
        """
        from .watching import Watch

        state = Watch(
            self._calls,
            platform_key,
            username=username,
            all_users=all_users,
            last_event_id=last_event_id,
            reconnect=reconnect,
        )
        return self._watch(state)

    def _watch(self, state: Watch) -> Generator[Change, None, None]:
        timeout = state.timeout(self._http.timeout)
        while True:
            try:
                with self._open(state.call(), timeout) as response:
                    state.connected()
                    for chunk in response.iter_bytes():
                        yield from state.feed(chunk)
            except (httpx.TransportError, MetadataClientError) as error:
                delay = state.delay(error)
                if delay is None:
                    raise
            else:
                delay = state.delay(None)
                if delay is None:
                    return
            sleep(delay)
