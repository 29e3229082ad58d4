"""`DRFTokenBackend` against a real Django project (tests/django_project.py), migrated by
Django on SQLite and PostgreSQL, with the metadata middleware in front of Django's ASGI app
served by uvicorn: the same tokens, the same database, the same URL space as Django's views."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from databases import DatabaseURL
from starlette.applications import Starlette
from starlette.routing import Mount

from starlette_platform_metadata import (
    Identity,
    MemoryStore,
    PlatformAccess,
    PlatformMetadataApp,
)
from starlette_platform_metadata.drf_auth import DRFTokenBackend

from . import django_project
from .conftest import DATABASE_KINDS, POSTGRES_URL, URL
from .issuer import free_port
from .test_example_host import stop, wait_for

ACME = URL + "?platform_key=acme-corp"


def on_postgres(statement: str) -> None:
    """One statement on the test cluster's maintenance database."""
    import asyncpg

    async def run() -> None:
        assert POSTGRES_URL is not None
        admin = await asyncpg.connect(POSTGRES_URL)
        try:
            await admin.execute(statement)
        finally:
            await admin.close()

    asyncio.run(run())


class Project:
    """A Django project, migrated, with its users' DRF tokens by username."""

    def __init__(self, folder: Path, database_url: str, keys: dict[str, str]) -> None:
        self.folder, self.database_url = folder, database_url
        self.keys = keys or django_project.create(folder, database_url)

    def token(self, username: str) -> dict[str, str]:
        return {"Authorization": f"Token {self.keys[username]}"}


@pytest.fixture(scope="module", params=DATABASE_KINDS)
def project(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Project]:
    """The project on a new SQLite file, or a new PostgreSQL database dropped afterwards."""
    folder = tmp_path_factory.mktemp(f"django-{request.param}")
    if request.param == "sqlite":
        yield Project(folder, f"sqlite:///{folder / 'db.sqlite3'}", {})
        return
    assert POSTGRES_URL is not None
    name = f"django_{uuid.uuid4().hex[:12]}"
    on_postgres(f"CREATE DATABASE {name}")
    try:
        yield Project(folder, str(DatabaseURL(POSTGRES_URL).replace(database=name)), {})
    finally:
        on_postgres(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def base(project: Project) -> Iterator[str]:
    """uvicorn serving the project's ASGI module: the middleware in front of Django."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "dproj.asgi:application", "--port", str(port),
         "--log-level", "warning"],
        cwd=project.folder, env=django_project.environment(project.folder, project.database_url),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            httpx.get(url + "/api/whoami/", timeout=1)
        except httpx.HTTPError:
            return False
        return True

    try:
        wait_for(up, 60, "uvicorn with Django", proc)
        yield url
    finally:
        stop(proc)


@pytest.fixture
def http(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=10) as client:
        yield client


@pytest.mark.slow
def test_a_drf_token_reads_and_writes_in_front_of_django(http: httpx.Client, project: Project) -> None:
    """The member's DRF token works on the metadata endpoint and on Django's own DRF view."""
    alice = project.token("alice")
    written = http.patch(ACME, json={"metadata": {"theme": "dark"}}, headers=alice)
    assert written.status_code == 200, written.text
    assert http.get(ACME, headers=alice).json()["metadata"] == {"theme": "dark"}
    whoami = http.get("/api/whoami/", headers=alice)
    assert (whoami.status_code, whoami.json()) == (200, {"username": "alice"})


@pytest.mark.slow
def test_platform_access_comes_from_the_projects_tenancy_tables(
    http: httpx.Client, project: Project
) -> None:
    """Admins reach members of their platform; members reach only themselves; a platform
    the user is not on is 403, one that does not exist 404."""
    http.put(ACME, json={"metadata": {"x": 1}}, headers=project.token("bob"))
    boss = http.get(ACME + "&username=bob", headers=project.token("boss"))
    assert (boss.status_code, boss.json()["metadata"]) == (200, {"x": 1})
    assert http.get(ACME + "&username=nobody", headers=project.token("boss")).status_code == 404
    assert http.get(ACME + "&username=bob", headers=project.token("alice")).status_code == 403
    beta = http.get(URL + "?platform_key=beta", headers=project.token("alice"))
    assert (beta.status_code, beta.json()) == (403, {"error": "You are not a member of this platform"})
    assert http.get(URL + "?platform_key=nope", headers=project.token("alice")).status_code == 404


@pytest.mark.slow
@pytest.mark.parametrize(
    ("authorization", "detail"),
    [
        (None, "Authentication credentials were not provided."),
        ("Token", "Invalid token header. No credentials provided."),
        ("Token 0123456789abcdef0123456789abcdef01234567", "Invalid token."),
        ("carl", "User inactive or deleted."),
        ("dave", "Invalid token."),
    ],
)
def test_refusals_are_drfs_own(
    http: httpx.Client, project: Project, authorization: str | None, detail: str
) -> None:
    """As DRF answers: an inactive user (carl) is "User inactive or deleted.", a deleted one
    (dave, whose token Django deleted with him) "Invalid token."; nothing is written."""
    if authorization in project.keys:
        authorization = f"Token {project.keys[authorization]}"
    headers = {} if authorization is None else {"Authorization": authorization}
    response = http.put(ACME, json={"metadata": {"a": 1}}, headers=headers)
    assert response.status_code == 401
    assert response.content == ('{"detail":"%s"}' % detail).encode()
    assert response.headers["www-authenticate"] == "Token"
    if authorization and authorization.split()[-1] in project.keys.values():
        django_says = http.get("/api/whoami/", headers=headers)
        assert django_says.status_code == 401 and django_says.json()["detail"] == detail


@pytest.mark.anyio
async def test_access_from_a_host_function_and_the_backend_never_imports_django(
    project: Project,
) -> None:
    """`access=` an async function instead of SQL: it gets the user's id as `identity.id`.
    And the backend, in this process, has loaded no Django module."""
    asked: list[tuple[Any, str, str | None]] = []

    async def access(identity: Identity, platform_key: str, target: str | None) -> PlatformAccess:
        asked.append((identity.id, platform_key, target))
        return PlatformAccess(platform_exists=True, is_member=True)

    backend = DRFTokenBackend(project.database_url, access=access)
    app = Starlette(routes=[Mount(URL.rstrip("/"), app=PlatformMetadataApp(auth=backend, store=MemoryStore()))])
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as client:
            response = await client.get(ACME, headers=project.token("alice"))
            assert response.status_code == 200, response.text
            assert response.json()["username"] == "alice"
    finally:
        await backend.disconnect()
    assert len(asked) == 1 and isinstance(asked[0][0], int) and asked[0][1:] == ("acme-corp", None)
    assert not [name for name in sys.modules if name == "django" or name.startswith("django.")]


def test_configuration_refuses_sql_that_is_not_a_name() -> None:
    """Table and column names are spliced into SQL: only plain names are taken."""
    for option in ({"user_table": "auth_user; DROP TABLE x"}, {"username_column": "a b"},
                   {"token_table": "t--"}):  # fmt: skip
        with pytest.raises(ValueError, match="plain SQL name"):
            DRFTokenBackend("sqlite:///x.db", access_query="SELECT 1", **option)
    with pytest.raises(ValueError, match="either"):
        DRFTokenBackend("sqlite:///x.db")
