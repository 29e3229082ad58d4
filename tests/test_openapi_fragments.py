"""Each resource's OpenAPI fragment stands on its own: it refers only to its own components and
to the shared ones, and the served document is the fragments put together."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from starlette_platform_metadata import openapi
from starlette_platform_metadata.auth import AuthScheme
from starlette_platform_metadata.limits import Limits
from starlette_platform_metadata.openapi import events, history, metadata, policy, users
from starlette_platform_metadata.openapi.base import Context, Fragment
from starlette_platform_metadata.openapi.components import shared
from starlette_platform_metadata.policy import PolicyLimits

CONTEXT = Context(Limits(), PolicyLimits(), AuthScheme())
RESOURCES: dict[str, Callable[[Context], Fragment]] = {
    "metadata": metadata.fragment,
    "policy": policy.fragment,
    "history": history.fragment,
    "events": events.fragment,
    "users": users.fragment,
}


def refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        if isinstance(value.get("$ref"), str):
            yield value["$ref"]
        for item in value.values():
            yield from refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from refs(item)


def defined(*fragments: Fragment) -> set[str]:
    return {
        f"#/components/{section}/{name}"
        for fragment in fragments
        for section, items in fragment.components.items()
        for name in items
    }


@pytest.mark.parametrize("name", RESOURCES)
def test_a_resource_fragment_refers_only_to_its_own_and_the_shared_components(name: str) -> None:
    fragment = RESOURCES[name](CONTEXT)
    found = set(refs(dict(fragment.paths))) | set(refs(dict(fragment.components)))
    assert found and found <= defined(fragment, shared(CONTEXT))


def test_the_shared_components_refer_only_to_themselves() -> None:
    assert set(refs(dict(shared(CONTEXT).components))) <= defined(shared(CONTEXT))


def test_the_document_is_the_fragments_together_each_name_defined_once() -> None:
    document = openapi.build(CONTEXT.limits)
    fragments = [shared(CONTEXT), *(resource(CONTEXT) for resource in RESOURCES.values())]
    assert list(document["paths"]) == [path for f in fragments for path in f.paths]
    names = [
        f"#/components/{section}/{item}"
        for f in fragments
        for section, items in f.components.items()
        for item in items
    ]
    assert len(names) == len(set(names))
    served = {
        f"#/components/{section}/{item}"
        for section, items in document["components"].items()
        if section != "securitySchemes"
        for item in items
    }
    assert served == set(names)


def test_every_served_resource_carries_the_fragment_that_documents_its_path() -> None:
    """Each resource class points at its own fragment, whose paths are the ones the app
    routes to that resource, and the document holds them all."""
    from starlette_platform_metadata import PlatformMetadataApp
    from starlette_platform_metadata.app import RESOURCES as NAMES
    from starlette_platform_metadata.stores import MemoryStore

    from .conftest import FakeAuth

    app = PlatformMetadataApp(auth=FakeAuth(), store=MemoryStore())
    document = openapi.build(Limits(), AuthScheme(), PolicyLimits())
    for name in ("", *NAMES):
        served = app._routes[f"/{name}/" if name else "/"]  # noqa: SLF001 - the routing table
        fragment = served.resource.openapi(CONTEXT)  # type: ignore[attr-defined]
        path = f"/{name}/" if name else "/"
        assert path in fragment.paths, (name, list(fragment.paths))
        for documented in fragment.paths:
            assert document["paths"][documented] == fragment.paths[documented]
