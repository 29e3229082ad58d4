"""The example host never prints a database password (issue 22): `serve`'s hint, the CLI's
errors, and the one helper both use."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from databases import DatabaseURL

from example_host.redact import redact_message, redact_url

from .conftest import DATABASE_KINDS, POSTGRES_URL
from .hosts import served
from .test_example_host import run_cli

SECRET = "s3cret-Pw"


@pytest.fixture(params=DATABASE_KINDS)
def password_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database named by a URL that carries a password: a new PostgreSQL database
    (its server's own password), or a SQLite file (SQLite ignores the credentials of
    `sqlite://user:pass@/file.db`, a path relative to the working folder: the test's)."""
    if request.param == "sqlite":
        yield f"sqlite://operator:{SECRET}@/host.db"
        return
    assert POSTGRES_URL is not None
    name = f"host_{uuid.uuid4().hex[:12]}"
    asyncio.run(admin(f"CREATE DATABASE {name}"))
    try:
        yield str(DatabaseURL(POSTGRES_URL).replace(database=name))
    finally:
        asyncio.run(admin(f"DROP DATABASE {name} WITH (FORCE)"))


async def admin(statement: str) -> None:
    import asyncpg

    assert POSTGRES_URL is not None
    connection = await asyncpg.connect(POSTGRES_URL)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def password(url: str) -> str:
    secret = DatabaseURL(url).password
    assert secret
    return secret


@pytest.mark.slow
def test_serve_hint_on_a_database_with_data_never_prints_the_password(
    password_url: str, tmp_path: Path
) -> None:
    """On a database that already has platforms, `serve` prints `add-user` commands with
    `--database`: the URL is there with its password masked, `user:***@`."""
    created = run_cli("add-platform", "acme-corp", "--database", password_url, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    with served(password_url, tmp_path) as (_base, _proc, printed):
        pass
    assert "add-user" in printed and password(password_url) not in printed
    user = DatabaseURL(password_url).username
    assert f"--database '{password_url.split('://')[0]}://{user}:***@" in printed


def test_an_unsupported_database_url_is_refused_without_its_password(tmp_path: Path) -> None:
    """The usage error that quotes an unsupported URL masks its password."""
    url = f"mysql://app:{SECRET}@db.example:3306/app"
    result = run_cli("add-platform", "x", "--database", url, cwd=tmp_path)
    assert result.returncode == 2
    assert SECRET not in result.stderr + result.stdout
    assert "mysql://app:***@db.example:3306/app" in result.stderr


@pytest.mark.parametrize(
    "url, shown",
    [
        ("postgresql://app:secret@db:5432/app", "postgresql://app:***@db:5432/app"),
        ("postgresql://app:p%40ss@db/app?max_size=4", "postgresql://app:***@db/app?max_size=4"),
        # An unescaped `@` or `/` in the password: masked whole, not cut where a parser would.
        ("postgresql://app:pa@s/s@db/app", "postgresql://app:***@db/app"),
        (
            "postgresql://db/app?user=app&password=secret&sslpassword=key&ssl=true",
            "postgresql://db/app?user=app&password=***&sslpassword=***&ssl=true",
        ),
        ("postgresql://app@db/app", "postgresql://app@db/app"),
        ("sqlite:///example_host.db", "sqlite:///example_host.db"),
        ("app:secret@db/app", "app:***@db/app"),
    ],
)
def test_redact_url_masks_every_password_and_keeps_the_rest(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_message_masks_the_url_and_its_password_quoted_in_an_error() -> None:
    url = "postgresql://app:p%40ssword@db/app?sslpassword=keypass"
    message = f"cannot connect to {url}: password 'p@ssword' refused, key 'keypass'"
    assert redact_message(message, url) == (
        "cannot connect to postgresql://app:***@db/app?sslpassword=***: "
        "password '***' refused, key '***'"
    )
