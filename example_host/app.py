"""The example host as a Starlette app: the metadata endpoint over the host's own users."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.routing import Mount

from starlette_platform_metadata import DatabaseStore, PlatformMetadataApp

from .auth import TokenAuthBackend
from .db import DEFAULT_URL, HostDB

__all__ = ["MOUNT_PATH", "create_app", "create_app_from_env"]

MOUNT_PATH = "/api/core/users/platform-metadata"


def create_app(database_url: str) -> Starlette:
    """The host app on `database_url`: host tables and metadata in the same database.

    Its lifespan connects both (creating missing tables) at startup and closes them at shutdown.
    """
    db = HostDB(database_url)
    store = DatabaseStore(database_url)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await db.connect()
        try:
            await store.connect()
            try:
                yield
            finally:
                await store.disconnect()
        finally:
            await db.disconnect()

    app = Starlette(
        routes=[Mount(MOUNT_PATH, app=PlatformMetadataApp(auth=TokenAuthBackend(db), store=store))],
        lifespan=lifespan,
    )
    app.state.db = db
    app.state.store = store
    return app


def create_app_from_env() -> Starlette:
    """`create_app($DATABASE_URL)`, for `uvicorn --factory` and its worker processes."""
    return create_app(os.environ.get("DATABASE_URL") or DEFAULT_URL)
