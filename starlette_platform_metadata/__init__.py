"""Per-user, per-platform metadata for any ASGI application."""

from __future__ import annotations

from .app import PlatformMetadataApp
from .auth import AuthBackend, Identity, PlatformAccess, token_from_header
from .errors import (
    ApiError,
    AuthenticationFailed,
    DocumentTooLarge,
    PlatformMetadataError,
    PreconditionFailed,
    StoreUnavailable,
)
from .limits import Limits
from .middleware import PlatformMetadataMiddleware
from .starlette_auth import StarletteUserBackend, on_auth_error
from .stores import ANY_RECORD, DatabaseStore, Expect, MemoryStore, Record, Store

__version__ = "0.1.0"

__all__ = [
    "ANY_RECORD",
    "ApiError",
    "AuthBackend",
    "AuthenticationFailed",
    "DatabaseStore",
    "DocumentTooLarge",
    "Expect",
    "Identity",
    "Limits",
    "MemoryStore",
    "PlatformAccess",
    "PlatformMetadataApp",
    "PlatformMetadataError",
    "PlatformMetadataMiddleware",
    "PreconditionFailed",
    "Record",
    "StarletteUserBackend",
    "Store",
    "StoreUnavailable",
    "__version__",
    "on_auth_error",
    "token_from_header",
]
