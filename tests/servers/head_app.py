"""A tiny app behind `BoundedHttpToolsProtocol` with a short head timeout, for
tests/test_uvicorn_http.py:

    python -m uvicorn tests.servers.head_app:app \
        --http tests.servers.head_app:QuickHeadProtocol --h11-max-incomplete-event-size 1024

`/sleep` answers after 1 s (longer than the head timeout); every request answers its method,
path, body length and arrival stamp as JSON.
"""

from __future__ import annotations

import asyncio
import json

from starlette.types import Receive, Scope, Send

from starlette_platform_metadata.arrivals import arrival
from starlette_platform_metadata.uvicorn_http import BoundedHttpToolsProtocol


class QuickHeadProtocol(BoundedHttpToolsProtocol):
    head_timeout = 0.5


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    if scope["path"] == "/sleep":
        await asyncio.sleep(1.0)
    answer = {"method": scope["method"], "path": scope["path"], "body": size}
    body = json.dumps(answer | {"arrival": arrival(scope)}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
