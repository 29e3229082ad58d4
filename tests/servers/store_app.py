"""An app factory for uvicorn subprocesses: the endpoint over a `DatabaseStore`.

    SPM_TEST_DATABASE_URL=sqlite:////tmp/x.db \
        python -m uvicorn tests.servers.store_app:create_app --factory --workers 2

(or a `postgresql://` URL, with `SPM_TEST_TABLE` naming a fresh table).

Every token `tok-<name>` authenticates `<name>`, a member of the platform `acme-corp` (an admin
when the name ends in `admin`).  Each response says which worker process served it in
`X-Worker-PID`, so a test can see that several workers took part.
"""

from __future__ import annotations

import os

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from starlette_platform_metadata import (
    AuthenticationFailed,
    DatabaseStore,
    Identity,
    PlatformAccess,
    PlatformMetadataMiddleware,
    token_from_header,
)

PLATFORM = "acme-corp"


class TokenPrefixAuth:
    """`tok-<name>` is `<name>`; everyone is a member of `acme-corp`."""

    async def authenticate(self, conn: HTTPConnection) -> Identity | None:
        key = token_from_header(conn)
        if key is None:
            return None
        if not key.startswith("tok-") or len(key) == 4:
            raise AuthenticationFailed("Invalid token.")
        return Identity(key[4:])

    async def access(
        self, identity: Identity, platform_key: str, target: str | None
    ) -> PlatformAccess:
        if platform_key != PLATFORM:
            return PlatformAccess(platform_exists=False)
        return PlatformAccess(
            platform_exists=True,
            is_member=True,
            is_admin=identity.username.endswith("admin"),
            target_is_member=target is not None,
        )


class Host:
    """The host app behind the middleware: 404 for every other path; closes the store at exit."""

    def __init__(self, store: DatabaseStore) -> None:
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await self.store.disconnect()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif scope["type"] == "http":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})


class WorkerPid:
    """Adds `X-Worker-PID` to every http response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.pid = str(os.getpid())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_pid(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("X-Worker-PID", self.pid)
            await send(message)

        await self.app(scope, receive, send_with_pid)


def create_app() -> ASGIApp:
    """Build the app from `SPM_TEST_DATABASE_URL`, `SPM_TEST_TABLE` and
    `SPM_TEST_BUSY_TIMEOUT` (seconds)."""
    store = DatabaseStore(
        os.environ["SPM_TEST_DATABASE_URL"],
        table=os.environ.get("SPM_TEST_TABLE", "platform_metadata"),
        busy_timeout=float(os.environ.get("SPM_TEST_BUSY_TIMEOUT", "5")),
    )
    return WorkerPid(PlatformMetadataMiddleware(Host(store), auth=TokenPrefixAuth(), store=store))
