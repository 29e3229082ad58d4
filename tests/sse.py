"""A Server-Sent Events reader for tests, and a real server for the apps under test.

httpx's ASGI transport buffers a whole response, so streams are tested over real HTTP: a
uvicorn server in the test's own event loop, on a free port of 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp


@dataclass
class Event:
    id: str | None
    event: str
    data: dict[str, Any]


@contextlib.asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[str]:
    """`app` served by uvicorn in this loop; yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # A graceful stop: connections still streaming end (their clients are gone by then) and
    # are closed, rather than left for the garbage collector (a ResourceWarning).
    config = uvicorn.Config(
        app, port=port, log_level="warning", lifespan="off", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


class Stream:
    """An open event stream: `next()` returns its next event (comments are counted)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()
        self.comments = 0
        self.ended = False

    async def next(self, timeout: float = 5.0) -> Event:
        async with asyncio.timeout(timeout):
            fields: dict[str, str] = {}
            async for line in self._lines:
                if line == "":
                    if fields:
                        return Event(fields.get("id"), fields.get("event", "message"),
                                     json.loads(fields.get("data", "null")))
                    continue
                if line.startswith(":"):
                    self.comments += 1
                    continue
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
            self.ended = True
            raise EOFError("the stream ended")

    async def events(self, count: int, timeout: float = 5.0) -> list[Event]:
        return [await self.next(timeout) for _ in range(count)]

    async def wait_end(self, timeout: float = 5.0) -> list[Event]:
        """Read until the server ends the stream; the events read meanwhile."""
        seen = []
        with contextlib.suppress(EOFError):
            while True:
                seen.append(await self.next(timeout))
        return seen


@contextlib.asynccontextmanager
async def stream(
    client: httpx.AsyncClient, url: str, headers: dict[str, str]
) -> AsyncIterator[Stream]:
    async with client.stream("GET", url, headers=headers) as response:
        if response.status_code != 200:
            await response.aread()
        yield Stream(response)
