"""A small real host for `starlette_platform_metadata`: its own platforms, users, memberships
and API tokens, with the metadata endpoint mounted at `/api/core/users/platform-metadata/`.

    python -m example_host serve
"""

from __future__ import annotations

from .app import MOUNT_PATH, create_app, create_app_from_env
from .auth import TokenAuthBackend
from .db import HostDB, UnknownPlatform

__all__ = [
    "MOUNT_PATH",
    "HostDB",
    "TokenAuthBackend",
    "UnknownPlatform",
    "create_app",
    "create_app_from_env",
]
