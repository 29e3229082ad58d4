"""`AsyncMetadataClient`: the API over an `httpx.AsyncClient`."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
)
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

__all__ = ["AsyncMetadataClient"]

T = TypeVar("T")


async def sleep(seconds: float) -> None:
    """How `update` and `watch` wait between tries (a module global so tests can record the
    waits)."""
    # asyncio loads here, inside an event loop that has loaded it already, not when the client
    # is imported: httpx imports without it, and it was 40 % of what the client added to
    # httpx's import time (benchmarks/imports.py).
    import asyncio

    await asyncio.sleep(seconds)


Document = Mapping[str, Any] | None


class AsyncMetadataClient:
    """The metadata API over HTTP, async; the same methods as `MetadataClient`, awaited.

    Args:
        http_client: an `httpx.AsyncClient` to send with, used as is and never closed here
            (in tests: `httpx.AsyncClient(transport=httpx.ASGITransport(app))`); by default
            the client makes its own and closes it in `aclose()`.

    The other arguments are `MetadataClient`'s.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        path: str = DEFAULT_PATH,
        *,
        timeout: float = 10.0,
    ) -> None:
        self._calls = Calls(base_url, token, path)
        self._owned = http_client is None
        self._http = httpx.AsyncClient(timeout=timeout) if http_client is None else http_client

    @property
    def http_client(self) -> httpx.AsyncClient:
        return self._http

    async def aclose(self) -> None:
        """Close the HTTP client if this client made it."""
        if self._owned:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncMetadataClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _send(self, call: Call[T]) -> T:
        response = await self._http.request(
            call.method, call.url, params=call.params, headers=call.headers, content=call.content
        )
        return call.parse(response)

    @contextlib.asynccontextmanager
    async def _open(
        self, call: Call[None], timeout: httpx.Timeout | None = None
    ) -> AsyncIterator[httpx.Response]:
        """A streamed answer, its body unread, once `call.parse` accepted its headers (a
        refusal's body is read first, for its exception)."""
        async with self._http.stream(
            call.method,
            call.url,
            params=call.params,
            headers=call.headers,
            content=call.content,
            timeout=self._http.timeout if timeout is None else timeout,
        ) as response:
            if response.status_code != 200:
                await response.aread()
            call.parse(response)
            yield response

    async def _pages(self, call: Call[Page[T]] | None) -> AsyncGenerator[T, None]:
        while call is not None:
            page = await self._send(call)
            for item in page.results:
                yield item
            call = self._calls.next_page(call, page)

    async def get(self, platform_key: str, *, username: str | None = None) -> MetadataRecord:
        """The metadata of `username` (default: the caller) on `platform_key`."""
        return await self._send(self._calls.get(platform_key, username=username))

    async def patch(
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
        return await self._send(call)

    async def replace(
        self,
        platform_key: str,
        metadata: Mapping[str, Any],
        *,
        username: str | None = None,
        if_match: str | int | None = None,
    ) -> MetadataRecord:
        """Replace the whole document (PUT)."""
        call = self._calls.replace(platform_key, metadata, username=username, if_match=if_match)
        return await self._send(call)

    async def delete(
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
        await self._send(call)

    async def update(
        self,
        platform_key: str,
        fn: Callable[[dict[str, Any]], Document | Awaitable[Document]],
        *,
        username: str | None = None,
        retries: int = 10,
    ) -> MetadataRecord:
        """Read, change with `fn`, write back only if nothing changed meanwhile; repeat.

        As `MetadataClient.update`; `fn` may also be a coroutine function.
        """
        from .updating import Update

        cycle = Update(self._calls, platform_key, username=username, retries=retries)
        while True:
            try:
                current = await self._send(cycle.read())
                given = cycle.given(current)
                result = fn(given)
                if inspect.isawaitable(result):
                    result = await result
                return await self._send(cycle.write(current, given, result))
            except (PreconditionFailed, Unavailable) as error:
                delay = cycle.delay(error)
                if delay is None:
                    raise
            await sleep(delay)

    async def get_policy(self, platform_key: str) -> PlatformPolicy:
        """The platform's policy (a member's view leaves `private_keys` out: `None`)."""
        return await self._send(self._calls.get_policy(platform_key))

    async def put_policy(
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
        return await self._send(call)

    async def delete_policy(self, platform_key: str, *, if_match: str | int | None = None) -> None:
        """Back to the default policy (tenant admins)."""
        await self._send(self._calls.delete_policy(platform_key, if_match=if_match))

    def history(
        self, platform_key: str, *, username: str | None = None, limit: int | None = None
    ) -> AsyncGenerator[Revision, None]:
        """Every kept revision, newest first, fetched page by page (`limit` per page) as
        the iteration goes: `async for revision in client.history(...)`."""
        return self._pages(self._calls.history(platform_key, username=username, limit=limit))

    async def restore(
        self,
        platform_key: str,
        version: int,
        *,
        username: str | None = None,
        if_match: str | int | None = None,
    ) -> MetadataRecord:
        """Write revision `version`'s document as a new change."""
        call = self._calls.restore(platform_key, version, username=username, if_match=if_match)
        return await self._send(call)

    def list_users(
        self,
        platform_key: str,
        *,
        filter: Mapping[str, Any] | None = None,
        limit: int | None = None,
    ) -> AsyncGenerator[ListedRecord, None]:
        """As `MetadataClient.list_users`: `async for record in client.list_users(...)`."""
        return self._pages(self._calls.list_users(platform_key, filter=filter, limit=limit))

    def export(
        self, platform_key: str, *, filter: Mapping[str, Any] | None = None
    ) -> AsyncGenerator[ListedRecord, None]:
        """As `MetadataClient.export`: one streamed NDJSON answer, read line by line."""
        return self._export(self._calls.export(platform_key, filter=filter))

    async def _export(self, call: Call[None]) -> AsyncGenerator[ListedRecord, None]:
        from .streams import ExportReader

        async with self._open(call) as response:
            reader = ExportReader(response)
            async for chunk in response.aiter_bytes():
                for record in reader.feed(chunk):
                    yield record
            for record in reader.end():
                yield record

    async def import_(
        self,
        platform_key: str,
        records: Iterable[ImportItem],
    ) -> int:
        """As `MetadataClient.import_`: returns how many records were imported."""
        return await self._send(self._calls.import_(platform_key, records))

    def watch(
        self,
        platform_key: str,
        *,
        username: str | None = None,
        all_users: bool = False,
        last_event_id: str | None = None,
        reconnect: bool = True,
    ) -> AsyncGenerator[Change, None]:
        """As `MetadataClient.watch`: `async for change in client.watch(...)`.  To stop
        early, `break` inside `async with contextlib.aclosing(client.watch(...)) as changes`
        (or cancel the task), so the connection closes at once."""
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

    async def _watch(self, state: Watch) -> AsyncGenerator[Change, None]:
        timeout = state.timeout(self._http.timeout)
        while True:
            try:
                async with self._open(state.call(), timeout) as response:
                    state.connected()
                    async for chunk in response.aiter_bytes():
                        for change in state.feed(chunk):
                            yield change
            except (httpx.TransportError, MetadataClientError) as error:
                delay = state.delay(error)
                if delay is None:
                    raise
            else:
                delay = state.delay(None)
                if delay is None:
                    return
            await sleep(delay)
