"""What an import loads, each in a fresh interpreter (this one has loaded everything already):
the package and its public names load no database driver, the client loads none of the
server, and a `DatabaseStore` loads `databases` when it is built, and works."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

DRIVERS = ("sqlalchemy", "databases", "asyncpg", "aiosqlite")
#: The only modules of ours the client may load: the package root (lazy, it imports nothing of
#: the server), the exception root (it imports nothing at all), and the client itself.
CLIENT_MAY_LOAD = ("starlette_platform_metadata", "starlette_platform_metadata.exceptions")


def loaded_after(code: str) -> set[str]:
    """The top-level and package modules in `sys.modules` after running `code` afresh."""
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    modules: list[str] = json.loads(out.splitlines()[-1])
    return set(modules)


def among(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    """Which of `packages` (top-level names) `modules` holds."""
    return sorted({name.partition(".")[0] for name in modules} & set(packages))


def test_importing_the_package_loads_no_database_driver() -> None:
    assert among(loaded_after("import starlette_platform_metadata"), DRIVERS) == []


def test_every_public_name_resolves_without_a_database_driver() -> None:
    """The app, the middleware and both stores' classes: still no SQLAlchemy, no asyncpg."""
    modules = loaded_after("from starlette_platform_metadata import *")
    assert "starlette_platform_metadata.stores.sql" in modules  # DatabaseStore was resolved
    assert among(modules, DRIVERS) == []


def test_the_client_loads_neither_starlette_nor_the_server() -> None:
    modules = loaded_after("import starlette_platform_metadata.client")
    assert "httpx" in modules
    assert among(modules, ("starlette", *DRIVERS)) == []
    ours = {m for m in modules if m.partition(".")[0] == "starlette_platform_metadata"}
    client = {m for m in ours if m.startswith("starlette_platform_metadata.client")}
    assert sorted(ours - client - set(CLIENT_MAY_LOAD)) == []


def test_a_database_store_loads_databases_when_built_and_works(tmp_path: Path) -> None:
    """Building the store is what loads `databases`; the store then connects, writes and reads
    as before (the suite covers the rest of its use)."""
    code = f"""
import asyncio, json, sys
from starlette_platform_metadata import DatabaseStore
from starlette_platform_metadata.changes import replace
before = "databases" in sys.modules
store = DatabaseStore({f"sqlite:///{tmp_path / 'store.db'}"!r})
built = "databases" in sys.modules

async def use():
    async with store:
        await store.update("acme-corp", "john_doe", replace({{"theme": "dark"}}))
        record = await store.get("acme-corp", "john_doe")
    return record.metadata, record.version

print(json.dumps([before, built, *asyncio.run(use())]))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    assert json.loads(out) == [False, True, {"theme": "dark"}, 1]
