"""The TypeScript client (`clients/js`): its committed build is what its sources build to, its
unit tests pass, its wire types are the served OpenAPI document's, and its integration suite
passes against `python -m example_host serve` (which the suite starts and restarts itself).

These need node and npm (`.ci/run` installs Debian's when missing): without them the tests
fail under CI and are skipped elsewhere, as the browser tests do without Chromium.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from example_host.app import create_app

from .conftest import URL

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "clients" / "js"

pytestmark = pytest.mark.slow


def npm(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """`npm ARGS` in clients/js; its output, or the test fails with it."""
    result = subprocess.run(
        ["npm", *args],
        cwd=CLIENT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    assert result.returncode == 0, f"npm {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def node_modules() -> Iterator[None]:
    """node and npm, and the dev dependencies as package-lock.json pins them (`npm ci`, when
    they are not installed yet)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        if os.environ.get("CI"):
            pytest.fail("node and npm are needed: apt-get install nodejs npm (.ci/run does)")
        pytest.skip("node and npm not found: apt-get install nodejs npm (CI does)")
    if not (CLIENT / "node_modules" / "typescript" / "package.json").exists():
        npm("ci", "--no-audit", "--no-fund")
    yield


def build_into(folder: Path) -> None:
    npm("exec", "--", "tsc", "-p", "tsconfig.json", "--outDir", str(folder))


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_committed_build_is_what_the_sources_build_to(node_modules: None, tmp_path: Path) -> None:
    """clients/js/dist is committed (the demo serves it to users without node): it must be
    byte for byte what `npm run build` makes of src/ now."""
    build_into(tmp_path / "dist")
    built, committed = files(tmp_path / "dist"), files(CLIENT / "dist")
    assert built.keys() == committed.keys()
    stale = [name for name in built if built[name] != committed[name]]
    assert stale == [], f"run `npm run build` in clients/js and commit dist/: {stale}"


def test_the_demo_serves_the_committed_build() -> None:
    """The demo's client is the committed build itself (a link in the checkout), not a copy
    that could drift."""
    served = ROOT / "example_host" / "web" / "client"
    assert served.resolve() == (CLIENT / "dist").resolve()
    assert not (ROOT / "example_host" / "web" / "api.js").exists()
    assert not (ROOT / "example_host" / "web" / "sse.js").exists()


def test_the_unit_tests_pass(node_modules: None) -> None:
    """`npm test`: the SSE parser and the client against a fake fetch."""
    output = npm("test")
    assert "# fail 0" in output and "# tests 0" not in output


def served_openapi(tmp_path: Path) -> Any:
    """The OpenAPI document the example host serves."""

    async def fetch() -> httpx.Response:
        app = create_app(f"sqlite:///{tmp_path / 'openapi.db'}")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.get(URL + "openapi.json")

    response = anyio.run(fetch)
    assert response.status_code == 200
    return response.json()


def wire_types(document: object, folder: Path) -> str:
    """src/wire.ts as scripts/wire-types.mjs generates it from `document`."""
    source = folder / "openapi.json"
    source.write_text(json.dumps(document))
    result = subprocess.run(
        ["node", "scripts/wire-types.mjs", str(source)],
        cwd=CLIENT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_wire_types_are_generated_from_the_served_openapi_document(
    node_modules: None, tmp_path: Path
) -> None:
    """src/wire.ts, through which the client reads every body, is what the generator makes of
    the OpenAPI document the example host serves now: a field the server adds, drops or
    renames fails here until the types are generated again."""
    document = served_openapi(tmp_path)
    generated = wire_types(document, tmp_path)
    assert generated == (CLIENT / "src" / "wire.ts").read_text(), (
        "regenerate: node scripts/wire-types.mjs <served openapi.json> > src/wire.ts, then npm run build"
    )


def test_a_field_the_server_renames_stops_the_client_from_building(
    node_modules: None, tmp_path: Path
) -> None:
    """The check has teeth: with `platform_key` of a record renamed in the document, the
    generated types differ and the client's sources no longer compile against them."""
    document = served_openapi(tmp_path)
    record = document["components"]["schemas"]["Record"]
    record["properties"]["platformKey"] = record["properties"].pop("platform_key")
    record["required"] = ["platformKey" if n == "platform_key" else n for n in record["required"]]
    renamed = wire_types(document, tmp_path)
    assert renamed != (CLIENT / "src" / "wire.ts").read_text()
    copy = tmp_path / "client"
    shutil.copytree(CLIENT / "src", copy / "src")
    shutil.copy(CLIENT / "tsconfig.json", copy)
    (copy / "src" / "wire.ts").write_text(renamed)
    tsc = CLIENT / "node_modules" / "typescript" / "bin" / "tsc"
    result = subprocess.run(
        ["node", str(tsc), "-p", str(copy / "tsconfig.json"), "--noEmit"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode != 0
    assert "platform_key" in result.stdout, result.stdout


def test_the_integration_suite_passes_against_a_served_example_host(node_modules: None) -> None:
    """`npm run test:integration`: every call against `python -m example_host serve`, 8
    clients' concurrent updates ending exact, and a watch resuming across a host restart."""
    output = npm("run", "test:integration", env={"PYTHON": sys.executable}, timeout=240)
    assert "# fail 0" in output and "# tests 0" not in output
