"""`DatabaseStore`: metadata in SQLite or PostgreSQL, named through `databases`; its engines
and the read SQL they share."""

from __future__ import annotations

from .store import DatabaseStore

__all__ = ["DatabaseStore"]
