"""The endpoint's OpenAPI 3.1 document, served by the app at `<mount>/openapi.json`.

`build` makes the document once per app, with the app's `Limits` written into the schemas, its
auth backend's scheme, and every error message taken from `errors`, as the endpoint answers it;
`render` adds the server URL, which is where the app is mounted (the request's `root_path`),
so the document is right wherever the host puts the endpoint.

Each resource describes itself in its own module, as a `Fragment` of paths and components
written from a `Context` (`base`): `metadata` (`/`), `policy`, `history` (with `/restore/`),
`events` and `users`; `components` holds what they share.  `build` puts them together.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

# The root's literal, not `importlib.metadata.version()`: that module costs 5 ms to import
# (a tenth of Starlette's own import) and read the same string from the installed metadata.
from .. import __version__
from ..auth import AuthScheme
from ..jsontext import dump
from ..limits import Limits
from ..policy import PolicyLimits
from . import events, history, metadata, policy, users
from .base import Context, Fragment
from .components import shared

__all__ = ["build", "render"]

# The resources, in the order of the document's paths.
_RESOURCES: tuple[Callable[[Context], Fragment], ...] = (
    metadata.fragment,
    policy.fragment,
    history.fragment,
    events.fragment,
    users.fragment,
)

# The order the document has always listed its components in, kept when they moved into one
# module per resource: clients compare served documents and schemathesis walks them in order.
# Only the first ones need listing; the rest follow in the order of `shared`, then `_RESOURCES`.
_ORDER: dict[str, tuple[str, ...]] = {
    "schemas": (
        "Metadata",
        "Record",
        "PatchRequest",
        "PutRequest",
        "OptionsBody",
        "QueryError",
        "ParseError",
        "ValidationError",
        "LimitExceeded",
        "ServerError",
        "Policy",
        "PolicyPutRequest",
        "PolicyPutResult",
        "PolicyValidationError",
        "KeysForbidden",
    ),
    "responses": (
        "Record",
        "NotModified",
        "BadRequest",
        "Unauthorized",
        "Forbidden",
        "PolicyForbidden",
        "PolicyBadRequest",
        "NotFound",
        "MethodNotAllowed",
        "PreconditionFailed",
        "ContentTooLarge",
        "UnsupportedMediaType",
        "ServerError",
        "ServiceUnavailable",
        "TooManyOwnStreams",
        "EventsUnavailable",
    ),
    "parameters": (
        "platform_key",
        "username",
        "IfMatch",
        "IfNoneMatch",
        "IfNoneMatchWrite",
        "dry_run",
        "cursor",
        "limit",
        "all_users",
        "last_event_id",
        "LastEventID",
        "history",
    ),
}


def build(
    limits: Limits, auth: AuthScheme | None = None, policy_limits: PolicyLimits | None = None
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the endpoint, for these limits and this auth scheme (default
    DRF's `Token`); `servers` is filled per request."""
    context = Context(limits, policy_limits or PolicyLimits(), auth or AuthScheme())
    fragments = [shared(context), *(resource(context) for resource in _RESOURCES)]
    paths: dict[str, Any] = {}
    for fragment in fragments:
        _add("paths", paths, fragment.paths)
    components = {section: _components(section, fragments) for section in _ORDER}
    schemes = context.auth.security_schemes
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "User Platform Metadata",
            "version": __version__,
            "description": "Per-user, per-platform metadata, as Django REST Framework served it.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            **components,
            "securitySchemes": {name: dict(scheme) for name, scheme in schemes.items()},
        },
        "security": [{name: []} for name in schemes],
    }


def render(document: dict[str, Any], root_path: str) -> bytes:
    """The document as JSON, with the server URL set to where the app is mounted."""
    server = root_path.rstrip("/") or "/"
    return dump({**document, "servers": [{"url": server}]}).encode()


def _components(section: str, fragments: list[Fragment]) -> dict[str, Any]:
    """One section of `components`: every fragment's, in the document's order."""
    merged: dict[str, Any] = {}
    for fragment in fragments:
        if unknown := set(fragment.components) - set(_ORDER):
            raise RuntimeError(f"an OpenAPI fragment defines unknown sections {sorted(unknown)}")
        _add(f"components.{section}", merged, fragment.components.get(section, {}))
    listed = _ORDER[section]
    missing = [name for name in listed if name not in merged]
    if missing:
        raise RuntimeError(f"no fragment defines components.{section} {missing}: update _ORDER")
    return {
        **{name: merged[name] for name in listed},
        **{name: value for name, value in merged.items() if name not in listed},
    }


def _add(where: str, into: dict[str, Any], items: Mapping[str, Any]) -> None:
    for name, value in items.items():
        if name in into:
            raise RuntimeError(f"two OpenAPI fragments define {where} {name!r}")
        into[name] = value
