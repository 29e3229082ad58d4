"""The README's examples work as printed: each tested block is run here (or in the test file
its marker names)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from starlette_platform_metadata.testing import RecordsContract, StoreContract

pytestmark = pytest.mark.anyio

README = Path(__file__).parent.parent / "README.md"


def readme_example() -> str:
    text = README.read_text()
    marker = text.index("<!-- tested: tests/test_readme.py runs this block -->")
    match = re.search(r"```python\n(.*?)```", text[marker:], re.S)
    assert match is not None
    return match.group(1)


async def test_readme_custom_auth_example_serves_the_contract(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example app authenticates, enforces membership and admin rules, and stores data."""
    monkeypatch.chdir(tmp_path)  # its SQLite file lands in a temporary folder
    namespace: dict[str, Any] = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)
    app = namespace["app"]
    john = {"Authorization": "Token 9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"}
    admin = {"Authorization": "Token 1f0e4f2a9d2c4b7e8a6d5c3b2a1f0e9d8c7b6a5f"}
    url = "/api/core/users/platform-metadata/?platform_key=acme-corp"
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as client:
            response = await client.patch(url, json={"metadata": {"theme": "dark"}}, headers=john)
            assert response.status_code == 200
            response = await client.get(url + "&username=john_doe", headers=admin)
            assert response.json()["metadata"] == {"theme": "dark"}
            response = await client.get(url + "&username=acme_admin", headers=john)
            assert response.status_code == 403
            response = await client.get(url, headers={"Authorization": "Token wrong"})
            assert response.json() == {"detail": "Invalid token."}
            response = await client.get(url.replace("acme-corp", "nope"), headers=john)
            assert response.status_code == 404
    assert (tmp_path / "metadata.db").exists()


def readme_block(marker: str) -> str:
    """The first python block after `marker` in the README."""
    text = README.read_text()
    match = re.search(r"```python\n(.*?)```", text[text.index(marker) :], re.S)
    assert match is not None
    return match.group(1)


@asynccontextmanager
async def after_first_example(
    marker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[dict[str, Any]]:
    """The namespace of the first example followed by the block after `marker`, as a reader
    who pastes both into one module gets it; its store is closed afterwards."""
    monkeypatch.chdir(tmp_path)  # the SQLite file lands in a temporary folder
    namespace: dict[str, Any] = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)
    exec(compile(readme_block(marker), "README.md", "exec"), namespace)
    try:
        yield namespace
    finally:
        await namespace["store"].disconnect()


JOHN = {"Authorization": "Token 9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"}


async def test_readme_starlette_user_backend_example_serves_the_contract(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The `StarletteUserBackend` block runs as printed: the host's own Starlette backend
    authenticates, bad credentials get the contract's 401 JSON, no credentials its 401."""
    marker = "<!-- tested: tests/test_readme.py runs this block after the first one (its tables"
    url = "/api/core/users/platform-metadata/?platform_key=acme-corp"
    async with after_first_example(marker, tmp_path, monkeypatch) as namespace, httpx.AsyncClient(
        transport=httpx.ASGITransport(app=namespace["app"]), base_url="http://testserver"
    ) as client:
        response = await client.put(url, json={"metadata": {"theme": "dark"}}, headers=JOHN)
        assert (response.status_code, response.json()["username"]) == (200, "john_doe")
        response = await client.get(url + "&username=acme_admin", headers=JOHN)
        assert response.status_code == 403
        response = await client.get(url, headers={"Authorization": "Token wrong"})
        assert (response.status_code, response.json()) == (401, {"detail": "Invalid token."})
        assert response.headers["www-authenticate"] == "Token"
        response = await client.get(url)
        assert response.json() == {"detail": "Authentication credentials were not provided."}


FASTAPI_MARKER = "<!-- tested: tests/test_readme.py runs this FastAPI block"


async def test_readme_fastapi_example_shows_the_endpoint_in_docs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The FastAPI block: the app's `/openapi.json` lists the endpoint's operations beside the
    app's own route, `/docs` answers, and both the endpoint and the route serve."""
    async with after_first_example(
        FASTAPI_MARKER, tmp_path, monkeypatch
    ) as namespace, httpx.AsyncClient(
        transport=httpx.ASGITransport(app=namespace["api"]), base_url="http://testserver"
    ) as client:
        document = (await client.get("/openapi.json")).json()
        ours = document["paths"]["/api/core/users/platform-metadata/"]
        assert {"get", "put", "patch", "delete"} <= set(ours)
        assert ours["get"]["tags"] == ["platform-metadata"]
        assert "/api/core/users/platform-metadata/policy/" in document["paths"]
        assert "/items/{item_id}" in document["paths"]
        assert "TokenAuth" in document["components"]["securitySchemes"]
        docs = await client.get("/docs")
        assert docs.status_code == 200 and "/openapi.json" in docs.text
        assert (await client.get("/items/3")).json() == {"item_id": 3}
        url = "/api/core/users/platform-metadata/?platform_key=acme-corp"
        response = await client.get(url, headers=JOHN)
        assert (response.status_code, response.json()["username"]) == (200, "john_doe")


async def test_readme_cors_set_up_passes_a_browser_preflight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the README's `cors=`, a preflight (no credentials) is 200 with the CORS headers a
    browser checks, and the real cross-origin request carries `Access-Control-Allow-Origin`
    and lets the script read its `ETag`."""
    origin = {"Origin": "https://app.example.com"}
    url = "/api/core/users/platform-metadata/?platform_key=acme-corp"
    async with after_first_example(
        FASTAPI_MARKER, tmp_path, monkeypatch
    ) as namespace, httpx.AsyncClient(
        transport=httpx.ASGITransport(app=namespace["api"]), base_url="http://testserver"
    ) as client:
        preflight = await client.options(
            url,
            headers={
                **origin,
                "Access-Control-Request-Method": "PATCH",
                "Access-Control-Request-Headers": "authorization, content-type, if-match",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
        assert "PATCH" in preflight.headers["access-control-allow-methods"]
        allowed = preflight.headers["access-control-allow-headers"].lower()
        assert {"authorization", "content-type", "if-match"} <= set(allowed.split(", "))
        response = await client.patch(
            url, json={"metadata": {"a": 1}}, headers={**origin, **JOHN, "If-Match": '"0"'}
        )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://app.example.com"
        assert "ETag" in response.headers["access-control-expose-headers"]
        response = await client.get(url, headers={**origin, **JOHN})
        assert response.headers["access-control-allow-origin"] == "https://app.example.com"
        other = await client.get(url, headers={"Origin": "https://evil.example", **JOHN})
        assert "access-control-allow-origin" not in other.headers


async def test_readme_append_tag_loop_loses_no_tag_under_contention(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's conditional read-modify-write loop, run by ten clients at once against
    the first example, keeps every tag."""
    import anyio

    marker = "<!-- tested: tests/test_readme.py runs this loop"
    url = "/api/core/users/platform-metadata/?platform_key=acme-corp"
    async with after_first_example(marker, tmp_path, monkeypatch) as namespace:
        app, append_tag = namespace["app"], namespace["append_tag"]
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=JOHN
        ) as client:
            async with anyio.create_task_group() as tasks:
                for n in range(10):
                    tasks.start_soon(append_tag, client, url, f"t{n}")
            tags = (await client.get(url)).json()["metadata"]["tags"]
    assert sorted(tags) == sorted(f"t{n}" for n in range(10))


def test_readme_store_seam_runs_and_names_the_package_fields() -> None:
    """The "Writing a store" seam block runs as printed, and every field it shows is a field
    of the package's own `Record` and `Write`."""
    import dataclasses

    from starlette_platform_metadata.stores import Record, Write

    block = readme_block("<!-- tested: tests/test_readme.py runs this seam")
    namespace: dict[str, Any] = {}
    exec(compile(block, "README.md", "exec"), namespace)
    for name, ours in (("Record", Record), ("Write", Write)):
        shown = {field.name for field in dataclasses.fields(namespace[name])}
        assert shown <= {field.name for field in dataclasses.fields(ours)}, name


def readme_store() -> str:
    text = README.read_text()
    marker = text.index("<!-- tested: tests/test_readme.py runs this store")
    match = re.search(r"```python\n(.*?)```", text[marker:], re.S)
    assert match is not None
    return match.group(1)


def _readme_dict_store() -> Any:
    namespace: dict[str, Any] = {}
    exec(compile(readme_store(), "README.md", "exec"), namespace)
    return namespace["DictStore"]()


def _readme_test_class() -> type:
    namespace: dict[str, Any] = {}
    exec(compile(readme_store(), "README.md", "exec"), namespace)
    block = readme_block("<!-- tested: tests/test_readme.py collects this class")
    exec(compile(block, "README.md", "exec"), namespace)
    test_class: type = namespace["TestDictStore"]
    assert issubclass(test_class, StoreContract) and issubclass(test_class, RecordsContract)
    return test_class


# The README's complete small store passes the contract kit, run by the README's own test
# class, as printed: pytest collects it here.
TestReadmeStore = _readme_test_class()


async def test_the_readme_store_serves_the_endpoint() -> None:
    """Plugged into the app, the README's store answers the contract over HTTP."""
    from starlette_platform_metadata import PlatformMetadataApp, Store

    from .conftest import FakeAuth

    store = _readme_dict_store()
    assert isinstance(store, Store)
    auth = FakeAuth()
    john = auth.add("acme-corp", "john_doe")
    app = PlatformMetadataApp(auth=auth, store=store)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        path = "/?platform_key=acme-corp"
        put = await client.put(path, json={"metadata": {"a": 1}}, headers=john)
        assert (put.status_code, put.headers["etag"]) == (200, '"1"')
        stale = await client.patch(
            path, json={"metadata": {"b": 2}}, headers={**john, "If-Match": '"0"'}
        )
        assert (stale.status_code, stale.headers["etag"]) == (412, '"1"')
        deleted = await client.delete(path, headers=john)
        assert deleted.status_code == 204
        after = await client.get(path, headers=john)
        assert (after.json()["metadata"], after.headers["etag"]) == ({}, '"2"')
