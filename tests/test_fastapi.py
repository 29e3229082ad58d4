"""`include_openapi`: the endpoint in a FastAPI app's own OpenAPI document, beside its routes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.routing import Mount

from starlette_platform_metadata import (
    MemoryStore,
    PlatformMetadataApp,
    PlatformMetadataMiddleware,
)
from starlette_platform_metadata.fastapi import include_openapi, merge_openapi

from .conftest import URL, FakeAuth

pytestmark = pytest.mark.anyio

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


class Item(BaseModel):
    name: str


def host() -> FastAPI:
    """A FastAPI app with a route of its own whose body brings FastAPI's `ValidationError`."""
    api = FastAPI()

    @api.post("/items/{item_id}")
    async def update_item(item_id: int, item: Item) -> Item:
        return item

    return api


def metadata_app(auth: FakeAuth | None = None, **kwargs: Any) -> PlatformMetadataApp:
    return PlatformMetadataApp(auth=auth or FakeAuth(), store=MemoryStore(), **kwargs)


def refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref" and isinstance(item, str):
                yield item
            else:
                yield from refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from refs(item)


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def assert_complete(document: dict[str, Any]) -> None:
    """Every reference resolves, every security requirement names a scheme, and every
    operation id is unique."""
    for ref in refs(document):
        resolve(document, ref)
    schemes = document.get("components", {}).get("securitySchemes", {})
    operation_ids: list[str] = []
    for item in document["paths"].values():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            for requirement in operation.get("security", []):
                assert set(requirement) <= set(schemes)
            if "operationId" in operation:
                operation_ids.append(operation["operationId"])
    assert len(operation_ids) == len(set(operation_ids))


async def test_the_middleware_shows_in_the_apps_openapi_json_beside_its_routes() -> None:
    """After `add_middleware` and `include_openapi`, `/openapi.json` has the app's own path and
    every path of the endpoint's document under the middleware's path, complete and tagged."""
    api = host()
    api.add_middleware(PlatformMetadataMiddleware, auth=FakeAuth(), store=MemoryStore())
    include_openapi(api)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api), base_url="http://testserver"
    ) as client:
        document = (await client.get("/openapi.json")).json()
    ours = metadata_app().openapi
    assert ours is not None
    assert "/items/{item_id}" in document["paths"]
    for path, item in ours["paths"].items():
        merged = document["paths"][URL.rstrip("/") + path]
        assert {m for m in item if m in METHODS} == {m for m in merged if m in METHODS}
    assert {"get", "put", "patch", "delete"} <= set(document["paths"][URL])
    assert_complete(document)
    assert {"name": "platform-metadata"}.items() <= document["tags"][0].items()
    assert document["paths"][URL]["get"]["tags"] == ["platform-metadata"]
    assert document["paths"][URL]["patch"]["security"] == [{"TokenAuth": []}]
    assert "security" not in document  # the host's own routes stay unauthenticated
    assert "servers" not in document


def test_a_component_name_the_host_uses_is_renamed_with_its_references() -> None:
    """FastAPI's `ValidationError` stays FastAPI's; ours becomes `PlatformMetadataValidationError`
    and the endpoint's 400 refers to it."""
    api = host()
    api.add_middleware(PlatformMetadataMiddleware, auth=FakeAuth(), store=MemoryStore())
    include_openapi(api)
    document = api.openapi()
    schemas = document["components"]["schemas"]
    assert set(schemas["ValidationError"]["properties"]) >= {"loc", "msg", "type"}
    ours = metadata_app().openapi
    assert ours is not None
    assert schemas["PlatformMetadataValidationError"] == ours["components"]["schemas"][
        "ValidationError"
    ]
    bad_request = str(document["components"]["responses"]["BadRequest"])
    assert "#/components/schemas/PlatformMetadataValidationError" in bad_request
    assert "#/components/schemas/ValidationError'" not in bad_request
    assert schemas["Record"] == ours["components"]["schemas"]["Record"]
    assert_complete(document)


def test_a_security_scheme_the_host_defines_otherwise_is_renamed_in_requirements() -> None:
    """A host scheme of the same name keeps it; our operations require ours, renamed."""
    host_document = {
        "openapi": "3.1.0",
        "info": {"title": "host", "version": "1"},
        "paths": {},
        "components": {"securitySchemes": {"TokenAuth": {"type": "http", "scheme": "basic"}}},
    }
    ours = metadata_app().openapi
    assert ours is not None
    merged = merge_openapi(host_document, ours)
    schemes = merged["components"]["securitySchemes"]
    assert schemes["TokenAuth"] == {"type": "http", "scheme": "basic"}
    assert schemes["PlatformMetadataTokenAuth"] == ours["components"]["securitySchemes"][
        "TokenAuth"
    ]
    assert merged["paths"][URL]["get"]["security"] == [{"PlatformMetadataTokenAuth": []}]
    assert host_document["components"]["securitySchemes"] == {
        "TokenAuth": {"type": "http", "scheme": "basic"}
    }  # the host's document itself is not changed
    assert_complete(merged)


def test_merge_is_generic_over_the_documents_paths() -> None:
    """A path the endpoint's document gains (as history and restore did) appears under the prefix
    with its own tags, and operation ids stay unique."""
    ours = metadata_app().openapi
    assert ours is not None
    extended = {
        **ours,
        "paths": {
            **ours["paths"],
            "/future/": {"get": {"operationId": "future", "tags": ["future"], "responses": {}}},
        },
        "tags": [{"name": "future"}],
    }
    host_document = {
        "openapi": "3.1.0",
        "info": {"title": "host", "version": "1"},
        "paths": {"/h": {"get": {"operationId": "future", "responses": {}}}},
    }
    merged = merge_openapi(host_document, extended, prefix="/prefs/")
    operation = merged["paths"]["/prefs/future/"]["get"]
    assert operation["tags"] == ["future"]
    assert operation["operationId"] == "future_2"
    assert {"future", "platform-metadata"} <= {tag["name"] for tag in merged["tags"]}
    assert set(merged["paths"]) == {"/h"} | {"/prefs" + path for path in extended["paths"]}
    assert_complete(merged)


def test_mounted_apps_are_found_under_their_mount_paths() -> None:
    """`app.mount` and a `Mount` of routes: each endpoint under its full path; two endpoints
    with the same limits share their components."""
    api = host()
    api.mount(URL.rstrip("/"), metadata_app())
    api.router.routes.append(Mount("/tenants", routes=[Mount("/prefs", app=metadata_app())]))
    include_openapi(api)
    document = api.openapi()
    assert {URL, URL + "policy/", "/tenants/prefs/", "/tenants/prefs/policy/"} <= set(
        document["paths"]
    )
    schemas = document["components"]["schemas"]
    assert not any(name.startswith("PlatformMetadataRecord") for name in schemas)
    assert_complete(document)


def test_an_app_passed_in_is_documented_at_the_prefix_given() -> None:
    """`include_openapi(api, app, prefix=...)` documents that app there, and nothing else."""
    api = host()
    api.add_middleware(PlatformMetadataMiddleware, auth=FakeAuth(), store=MemoryStore())
    app = metadata_app()
    assert app.openapi is not None
    include_openapi(api, app, prefix="/prefs")
    paths = set(api.openapi()["paths"])
    assert paths == {"/items/{item_id}"} | {"/prefs" + path for path in app.openapi["paths"]}


def test_a_middleware_path_of_its_own_is_the_prefix() -> None:
    """The middleware's `path=` is where its operations appear."""
    api = host()
    api.add_middleware(
        PlatformMetadataMiddleware, auth=FakeAuth(), store=MemoryStore(), path="/me/settings/"
    )
    include_openapi(api)
    assert "/me/settings/" in api.openapi()["paths"]
    middleware = PlatformMetadataMiddleware(
        host(), auth=FakeAuth(), store=MemoryStore(), path="/x"
    )
    api = host()
    include_openapi(api, middleware)
    assert "/x/policy/" in api.openapi()["paths"]


def test_a_document_built_before_is_built_again_with_the_endpoint() -> None:
    """FastAPI caches its document; `include_openapi` drops a cached one."""
    api = host()
    api.add_middleware(PlatformMetadataMiddleware, auth=FakeAuth(), store=MemoryStore())
    assert URL not in api.openapi()["paths"]
    include_openapi(api)
    assert URL in api.openapi()["paths"]
    assert api.openapi() is api.openapi()


@pytest.mark.parametrize("openapi", [True, False])
def test_nothing_to_document_is_an_error_at_once(openapi: bool) -> None:
    """No middleware or mount, or only ones with `openapi=False`: `ValueError` when called,
    not a broken `/docs` later."""
    api = host()
    if not openapi:
        api.add_middleware(
            PlatformMetadataMiddleware, auth=FakeAuth(), store=MemoryStore(), openapi=False
        )
    with pytest.raises(ValueError, match="add or mount it first"):
        include_openapi(api)


def test_importing_the_package_does_not_import_fastapi() -> None:
    """FastAPI is a test dependency only: the package and this module load without it."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['fastapi'] = None\n"
        "import starlette_platform_metadata, starlette_platform_metadata.fastapi\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
