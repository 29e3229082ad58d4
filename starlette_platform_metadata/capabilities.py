"""A resource whose store lacks the optional methods it needs: a clear 404, and one log line.

The optional store capabilities (stores/base.py: `HistoryReader`, `ChangeReader`,
`RecordLister`, `ManyWriter`) are found with `isinstance` on each request.  A resource that
needs a missing one answers 404 with a body saying what is not available (a client learns
it is the server's setup, not its request), and the operator reads, once per process, which
method the store lacks.
"""

from __future__ import annotations

import logging

from . import errors
from .errors import ApiError

__all__ = ["history_off", "missing"]

logger = logging.getLogger("starlette_platform_metadata")

# (store class, method) already logged: one line per process, not one per request.
_logged: set[tuple[str, str]] = set()


def missing(store: object, method: str, capability: str, resource: str) -> ApiError:
    """The answer to a request for `resource`, which needs `store.<method>` (`capability`)."""
    name = type(store).__qualname__
    if (name, method) not in _logged:
        _logged.add((name, method))
        logger.warning(
            "%s has no %s() (%s): %s answers 404", name, method, capability, resource
        )
    return errors.not_available(resource)


def history_off(resource: str) -> ApiError:
    """`resource` reads history, which `history_per_user=0` turned off."""
    if ("history_per_user", resource) not in _logged:
        _logged.add(("history_per_user", resource))
        logger.warning("history_per_user=0: %s answers 404 (it reads history)", resource)
    return errors.not_available(resource)
