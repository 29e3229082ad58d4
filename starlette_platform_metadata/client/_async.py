"""`AsyncMetadataClient`: the API over an `httpx.AsyncClient`."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import httpx

from . import calls
from .calls import DEFAULT_PATH, Call
from .errors import PreconditionFailed, Unavailable
from .models import MetadataRecord, Page, PlatformPolicy, PolicyUpdate, Revision

__all__ = ["AsyncMetadataClient"]

T = TypeVar("T")

#: How `update` waits between tries (a module global so tests can record the waits).
sleep = asyncio.sleep

Document = Mapping[str, Any] | None


class AsyncMetadataClient:
    """The metadata API over HTTP, async; the same methods as `MetadataClient`, awaited.

    Args:
        base_url: the server's origin, `http://host:port`.
        token: the API token, sent as `Authorization: Token <token>`; `None` sends no
            `Authorization` (an injected client may carry its own credentials).
        http_client: an `httpx.AsyncClient` to send with, used as is and never closed here
            (in tests: `httpx.AsyncClient(transport=httpx.ASGITransport(app))`); by default
            the client makes its own and closes it in `aclose()`.
        path: where the endpoint is mounted on that origin.
        timeout: seconds, for the client made here.
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
        self._calls = calls.Calls(base_url, token, path)
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
        attempt = 0
        while True:
            try:
                current = await self.get(platform_key, username=username)
                given = calls.document_copy(current.metadata)
                result = fn(given)
                if inspect.isawaitable(result):
                    result = await result
                document = calls.new_document(result, given)
                return await self.replace(
                    platform_key, document, username=username, if_match=current.etag
                )
            except (PreconditionFailed, Unavailable) as error:
                delay = calls.retry_delay(error, attempt)
                if attempt >= retries or delay is None:
                    raise
                attempt += 1
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

    async def history(
        self, platform_key: str, *, username: str | None = None, limit: int | None = None
    ) -> AsyncIterator[Revision]:
        """Every kept revision, newest first, fetched page by page (`limit` per page) as
        the iteration goes: `async for revision in client.history(...)`."""
        call: Call[Page[Revision]] | None = self._calls.history(
            platform_key, username=username, limit=limit
        )
        while call is not None:
            page = await self._send(call)
            for revision in page.results:
                yield revision
            call = self._calls.next_page(call, page)

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
