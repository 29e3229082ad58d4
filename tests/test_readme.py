"""The README's custom `AuthBackend` example works as printed."""

from __future__ import annotations

import re
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


class TestReadmeStore(StoreContract, RecordsContract):
    """The README's complete small store passes the contract kit, as the README says."""

    @pytest.fixture
    def store(self) -> Any:
        return _readme_dict_store()


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
