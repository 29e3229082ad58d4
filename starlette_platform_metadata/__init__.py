"""Per-user, per-platform metadata for any ASGI application."""

from __future__ import annotations

from .app import PlatformMetadataApp
from .auth import AuthBackend, AuthScheme, Identity, PlatformAccess, token_from_header
from .changes import DocumentTooLarge, PreconditionFailed, Refusal
from .conditional import Conditions
from .errors import ApiError, AuthenticationFailed
from .exceptions import PlatformMetadataError
from .limits import Limits
from .middleware import PlatformMetadataMiddleware
from .starlette_auth import StarletteUserBackend, on_auth_error
from .stores import (
    EMPTY,
    Change,
    DatabaseStore,
    MemoryStore,
    Record,
    Store,
    StoreUnavailable,
    Write,
    sql_connection,
)

__version__ = "0.1.0"

__all__ = [
    "EMPTY",
    "ApiError",
    "AuthBackend",
    "AuthScheme",
    "AuthenticationFailed",
    "Change",
    "Conditions",
    "DatabaseStore",
    "DocumentTooLarge",
    "Identity",
    "Limits",
    "MemoryStore",
    "PlatformAccess",
    "PlatformMetadataApp",
    "PlatformMetadataError",
    "PlatformMetadataMiddleware",
    "PreconditionFailed",
    "Record",
    "Refusal",
    "StarletteUserBackend",
    "Store",
    "StoreUnavailable",
    "Write",
    "__version__",
    "on_auth_error",
    "sql_connection",
    "token_from_header",
]
