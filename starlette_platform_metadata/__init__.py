"""Per-user, per-platform metadata for any ASGI application.

The public API is `__all__`, listed with a line each in docs/api.md, "Python API".  Its names
load on first use (PEP 562): importing the package, or its client subpackage, loads neither
the server's modules nor Starlette until a name is asked for, and no database driver loads
until a `DatabaseStore` is built.  Everything else is importable from its own module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import PlatformMetadataApp
    from .auth import AuthBackend, AuthScheme, Identity, PlatformAccess, token_from_header
    from .changes import DocumentTooLarge, Refusal, SchemaViolation
    from .errors import AuthenticationFailed, AuthUnavailable
    from .events import EventSettings
    from .exceptions import PlatformMetadataError
    from .feed import Committed, OnChange
    from .health import Health
    from .limits import Limits
    from .listing import ImportRefused
    from .metrics import Metrics
    from .middleware import PlatformMetadataMiddleware
    from .policy import Policy, PolicyInvalid, PolicyLimits
    from .starlette_auth import StarletteUserBackend, on_auth_error
    from .stores.base import (
        ChangeReader,
        GuardedWriter,
        GuardMoved,
        HealthChecker,
        HistoryReader,
        ManyReader,
        ManyWriter,
        Record,
        RecordLister,
        Revision,
        SchemaMismatch,
        Store,
        StoreUnavailable,
    )
    from .stores.memory import MemoryStore
    from .stores.sql import DatabaseStore

__version__ = "0.1.0"

__all__ = [
    "AuthBackend",
    "AuthScheme",
    "AuthUnavailable",
    "AuthenticationFailed",
    "ChangeReader",
    "Committed",
    "DatabaseStore",
    "DocumentTooLarge",
    "EventSettings",
    "Health",
    "GuardMoved",
    "GuardedWriter",
    "HealthChecker",
    "HistoryReader",
    "Identity",
    "ImportRefused",
    "Limits",
    "ManyReader",
    "ManyWriter",
    "MemoryStore",
    "Metrics",
    "OnChange",
    "PlatformAccess",
    "PlatformMetadataApp",
    "PlatformMetadataError",
    "PlatformMetadataMiddleware",
    "Policy",
    "PolicyInvalid",
    "PolicyLimits",
    "Record",
    "RecordLister",
    "Refusal",
    "Revision",
    "SchemaMismatch",
    "SchemaViolation",
    "StarletteUserBackend",
    "Store",
    "StoreUnavailable",
    "__version__",
    "on_auth_error",
    "token_from_header",
]

# Where each name of `__all__` lives (a module of this package), for `__getattr__`.
_HOMES = {
    "app": ("PlatformMetadataApp",),
    "auth": ("AuthBackend", "AuthScheme", "Identity", "PlatformAccess", "token_from_header"),
    "changes": ("DocumentTooLarge", "Refusal", "SchemaViolation"),
    "errors": ("AuthenticationFailed", "AuthUnavailable"),
    "events": ("EventSettings",),
    "exceptions": ("PlatformMetadataError",),
    "feed": ("Committed", "OnChange"),
    "health": ("Health",),
    "limits": ("Limits",),
    "listing": ("ImportRefused",),
    "metrics": ("Metrics",),
    "middleware": ("PlatformMetadataMiddleware",),
    "policy": ("Policy", "PolicyInvalid", "PolicyLimits"),
    "starlette_auth": ("StarletteUserBackend", "on_auth_error"),
    "stores.base": (
        "ChangeReader",
        "GuardMoved",
        "GuardedWriter",
        "HealthChecker",
        "HistoryReader",
        "ManyReader",
        "ManyWriter",
        "Record",
        "RecordLister",
        "Revision",
        "SchemaMismatch",
        "Store",
        "StoreUnavailable",
    ),
    "stores.memory": ("MemoryStore",),
    "stores.sql": ("DatabaseStore",),
}
_HOME = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next lookup is an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
