"""A typed client for the metadata API: `MetadataClient` (blocking) and
`AsyncMetadataClient` (async), both on `httpx` (the `client` extra).

Both share one request builder and response parser (`calls.py`), so they send the same
requests and raise the same exceptions; see docs/client.md.
"""

from __future__ import annotations

from ._async import AsyncMetadataClient
from ._sync import MetadataClient
from .calls import DEFAULT_PATH
from .errors import (
    MetadataClientError,
    NotAuthenticated,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    PreconditionFailed,
    UnexpectedResponse,
    Unavailable,
    ValidationError,
)
from .models import (
    Change,
    ListedRecord,
    MetadataRecord,
    PlatformPolicy,
    PolicyUpdate,
    PolicyViolation,
    Revision,
)

__all__ = [
    "DEFAULT_PATH",
    "AsyncMetadataClient",
    "Change",
    "ListedRecord",
    "MetadataClient",
    "MetadataClientError",
    "MetadataRecord",
    "NotAuthenticated",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "PlatformPolicy",
    "PolicyUpdate",
    "PolicyViolation",
    "PreconditionFailed",
    "Revision",
    "UnexpectedResponse",
    "Unavailable",
    "ValidationError",
]
