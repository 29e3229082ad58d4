"""Show the endpoint in a FastAPI app's own OpenAPI document, and so in its `/docs`.

FastAPI documents its own routes only: a middleware, or a mounted ASGI app, is invisible to it.
`include_openapi` wraps the app's `openapi()` method, as FastAPI's docs recommend for
customising the document, and merges the endpoint's paths and components into what FastAPI
generates.  FastAPI is not imported here at run time: this module works on the app's
attributes and on plain dicts.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from starlette.routing import BaseRoute, Mount
from starlette.types import Receive, Scope, Send

from .app import PlatformMetadataApp
from .middleware import PlatformMetadataMiddleware

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["include_openapi", "merge_openapi"]

DEFAULT_PREFIX = "/api/core/users/platform-metadata"
DEFAULT_TAG = "platform-metadata"
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def include_openapi(
    app: FastAPI,
    metadata: PlatformMetadataApp | PlatformMetadataMiddleware | None = None,
    *,
    prefix: str | None = None,
    tag: str = DEFAULT_TAG,
) -> None:
    """Add the metadata endpoint to `app`'s OpenAPI document (`/openapi.json`, `/docs`).

    Args:
        app: the FastAPI app.
        metadata: the endpoint to document.  By default every `PlatformMetadataMiddleware`
            added with `app.add_middleware` and every `PlatformMetadataApp` mounted on `app`
            (also inside a `Mount` of routes), so call this after adding or mounting them.
        prefix: where `metadata` answers, for a `PlatformMetadataApp` passed in (default the
            contract's `/api/core/users/platform-metadata`); a middleware's or a mount's own
            path otherwise.
        tag: the tag the endpoint's operations are grouped under, unless they have their own.

    Raises:
        ValueError: nothing to document (no middleware or mount found, or `openapi=False`).
    """
    if metadata is None:
        found = list(_discover(app))
    else:
        found = [_source(metadata, prefix)]
    sources = [(path, document) for path, document in found if document is not None]
    if not sources:
        raise ValueError(
            "include_openapi found no PlatformMetadataMiddleware or PlatformMetadataApp "
            "serving an OpenAPI document on this app: add or mount it first (openapi=True)"
        )
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if not app.openapi_schema:
            document = generate()
            for path, ours in sources:
                document = merge_openapi(document, ours, prefix=path, tag=tag)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.openapi_schema = None  # built again, with ours, on the next request


def merge_openapi(
    document: dict[str, Any],
    metadata_document: dict[str, Any],
    *,
    prefix: str = DEFAULT_PREFIX,
    tag: str | None = DEFAULT_TAG,
) -> dict[str, Any]:
    """A copy of the host's OpenAPI `document` with the endpoint's in it, under `prefix`.

    `metadata_document` is `PlatformMetadataApp.openapi` (paths relative to where the app
    answers).  Each of its paths appears as `prefix + path`, replacing a host path of the same
    name (the endpoint answers there, not the host).  Its components join the host's; one whose
    name the host already uses for something else is renamed `PlatformMetadata<Name>`, with
    every reference to it.  Its top-level `security` moves onto each of its operations, so the
    host's stays the host's.  `tag` is given to operations without tags.
    """
    merged = copy.deepcopy(document)
    ours = copy.deepcopy(metadata_document)
    components: dict[str, dict[str, Any]] = merged.setdefault("components", {})
    renames = _renames(components, ours.get("components", {}))
    ours = _rewrite(ours, renames)
    for kind, entries in ours.get("components", {}).items():
        for name, value in entries.items():
            components.setdefault(kind, {})[renames.get((kind, name), name)] = value
    security = ours.get("security")
    if security is not None:
        security = [
            {renames.get(("securitySchemes", name), name): scopes for name, scopes in item.items()}
            for item in security
        ]
    paths: dict[str, Any] = merged.setdefault("paths", {})
    operation_ids = {
        operation.get("operationId")
        for item in paths.values()
        for method, operation in item.items()
        if method in _METHODS
    }
    base = "/" + prefix.strip("/") if prefix.strip("/") else ""
    for path, item in ours.get("paths", {}).items():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            if security is not None:
                operation.setdefault("security", security)
            if tag is not None:
                operation.setdefault("tags", [tag])
            operation_id = operation.get("operationId")
            if operation_id is not None:
                unique, n = operation_id, 1
                while unique in operation_ids:
                    n += 1
                    unique = f"{operation_id}_{n}"
                operation["operationId"] = unique
                operation_ids.add(unique)
        paths[base + path] = item
    _add_tags(merged, ours, tag)
    return merged


def _add_tags(merged: dict[str, Any], ours: dict[str, Any], tag: str | None) -> None:
    """Declare our tags at the top level, as FastAPI does for `openapi_tags`."""
    wanted = list(ours.get("tags", []))
    if tag is not None:
        info = ours.get("info", {})
        description = info.get("description") or info.get("title")
        wanted.append({"name": tag, **({"description": description} if description else {})})
    declared = merged.get("tags", [])
    names = {entry.get("name") for entry in declared}
    for entry in wanted:
        if entry["name"] not in names:
            declared.append(entry)
            names.add(entry["name"])
    if declared:
        merged["tags"] = declared


def _renames(
    host: dict[str, dict[str, Any]], ours: dict[str, dict[str, Any]]
) -> dict[tuple[str, str], str]:
    """New names for our components that the host already uses for something else.

    A component equal to the host's of the same name is shared, also under a name an earlier
    merge gave it (a second mount of the endpoint).  Renaming one rewrites references inside
    others, which may then differ from the host's: repeat until the names settle.
    """
    renames: dict[tuple[str, str], str] = {}
    for _ in range(1 + sum(len(entries) for entries in ours.values())):
        rewritten = _rewrite(ours, renames)
        settled: dict[tuple[str, str], str] = {}
        for kind, entries in rewritten.items():
            taken = host.get(kind, {})
            for name, value in entries.items():
                candidate, n = name, 0
                while (candidate in taken and taken[candidate] != value) or (
                    candidate != name and candidate in entries
                ):
                    n += 1
                    candidate = f"PlatformMetadata{name}{n if n > 1 else ''}"
                if candidate != name:
                    settled[(kind, name)] = candidate
        if settled == renames:
            break
        renames = settled
    return renames


def _rewrite(value: Any, renames: dict[tuple[str, str], str]) -> Any:
    """`value` with every `#/components/<kind>/<name>` reference renamed as `renames` says."""
    if isinstance(value, dict):
        result = {key: _rewrite(item, renames) for key, item in value.items()}
        ref = value.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/"):
            parts = ref.split("/")
            if len(parts) >= 4 and (parts[2], parts[3]) in renames:
                parts[3] = renames[(parts[2], parts[3])]
                result["$ref"] = "/".join(parts)
        return result
    if isinstance(value, list):
        return [_rewrite(item, renames) for item in value]
    return value


def _source(
    metadata: PlatformMetadataApp | PlatformMetadataMiddleware, prefix: str | None
) -> tuple[str, dict[str, Any] | None]:
    if isinstance(metadata, PlatformMetadataMiddleware):
        return prefix or metadata.path, metadata.metadata_app.openapi
    return prefix or DEFAULT_PREFIX, metadata.openapi


def _discover(app: FastAPI) -> Iterator[tuple[str, dict[str, Any] | None]]:
    for middleware in app.user_middleware:
        cls = middleware.cls
        if isinstance(cls, type) and issubclass(cls, PlatformMetadataMiddleware):
            # Built the way the app will build it, for its path and its document.
            args: tuple[Any, ...] = middleware.args
            kwargs: dict[str, Any] = middleware.kwargs
            built = cls(_unused, *args, **kwargs)
            yield _source(built, None)
    yield from _mounted(app.routes, "")


def _mounted(routes: list[BaseRoute], base: str) -> Iterator[tuple[str, dict[str, Any] | None]]:
    for route in routes:
        if isinstance(route, Mount):
            if isinstance(route.app, PlatformMetadataApp):
                yield base + route.path, route.app.openapi
            else:
                yield from _mounted(route.routes, base + route.path)


async def _unused(scope: Scope, receive: Receive, send: Send) -> None:  # pragma: no cover
    raise RuntimeError("only built to read its OpenAPI document")
