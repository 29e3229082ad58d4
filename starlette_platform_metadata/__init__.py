"""Per-user, per-platform metadata for any ASGI application."""

from __future__ import annotations

from .app import PlatformMetadataApp
from .auth import AuthBackend, AuthScheme, Identity, PlatformAccess, token_from_header
from .changes import DocumentTooLarge, KeysForbidden, PreconditionFailed, Refusal, SchemaViolation
from .conditional import Conditions
from .errors import ApiError, AuthenticationFailed
from .exceptions import PlatformMetadataError
from .feed import Committed, Feed, OnChange
from .history import DEFAULT_HISTORY_PER_USER
from .limits import Limits
from .middleware import PlatformMetadataMiddleware
from .policy import DEFAULT_POLICY, Policy, PolicyInvalid, PolicyLimits, parse_policy
from .starlette_auth import StarletteUserBackend, on_auth_error
from .stores import (
    EMPTY,
    POLICY_USERNAME,
    Change,
    DatabaseStore,
    HistoryReader,
    MemoryStore,
    Record,
    ManyReader,
    RecordLister,
    Revision,
    Store,
    StoreUnavailable,
    Write,
    sql_connection,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_HISTORY_PER_USER",
    "DEFAULT_POLICY",
    "EMPTY",
    "POLICY_USERNAME",
    "ApiError",
    "AuthBackend",
    "AuthScheme",
    "AuthenticationFailed",
    "Change",
    "Committed",
    "Conditions",
    "DatabaseStore",
    "DocumentTooLarge",
    "Feed",
    "HistoryReader",
    "Identity",
    "KeysForbidden",
    "Limits",
    "MemoryStore",
    "OnChange",
    "PlatformAccess",
    "PlatformMetadataApp",
    "PlatformMetadataError",
    "PlatformMetadataMiddleware",
    "Policy",
    "PolicyInvalid",
    "PolicyLimits",
    "PreconditionFailed",
    "Record",
    "ManyReader",
    "RecordLister",
    "Refusal",
    "Revision",
    "SchemaViolation",
    "StarletteUserBackend",
    "Store",
    "StoreUnavailable",
    "Write",
    "__version__",
    "on_auth_error",
    "parse_policy",
    "sql_connection",
    "token_from_header",
]
