"""The root of every exception this package raises on purpose.

It sits below everything else (HTTP errors, stores, the write core), so that each layer can
derive its own exceptions from it without importing the layer above.
"""

from __future__ import annotations

__all__ = ["PlatformMetadataError"]


class PlatformMetadataError(Exception):
    """Root of every exception this package raises on purpose."""
