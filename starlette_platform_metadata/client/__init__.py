"""A typed client for the metadata API: `MetadataClient` (blocking) and
`AsyncMetadataClient` (async), both on `httpx` (the `client` extra).

Both are thin shells over one I/O-free core, so they send the same requests and raise the
same exceptions: `calls.py` builds the requests, `parsing.py` reads the answers, `streams.py`
splits streamed bodies into lines and an export's into records, `watching.py` and
`updating.py` decide when `watch` reconnects and `update` tries again.  See docs/client.md.
"""

from __future__ import annotations

from .asynchronous import AsyncMetadataClient
from .blocking import MetadataClient
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
