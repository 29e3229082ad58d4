"""The example host's `backup`, `dump` and `load` commands (in process, through `main`).

A host moved from one database to the other keeps everything: its platforms, users and
memberships, every token that worked (as hashes), and every metadata record, former members'
included; dumped again, the copy is the same bytes.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from databases import DatabaseURL

from example_host.__main__ import main

from .conftest import DATABASE_KINDS, POSTGRES_URL, URL
from .test_example_host import started
from .test_example_host_redaction import admin

P = "acme-corp"
META = URL + f"?platform_key={P}"


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A fresh database of each kind, by kind: two SQLite files, and a new PostgreSQL
    database (dropped afterwards) when there is one."""
    urls = {"sqlite": f"sqlite:///{tmp_path / 'a.db'}", "sqlite2": f"sqlite:///{tmp_path / 'b.db'}"}
    name = f"host_{uuid.uuid4().hex[:12]}"
    if POSTGRES_URL is not None:
        asyncio.run(admin(f"CREATE DATABASE {name}"))
        urls["postgresql"] = str(DatabaseURL(POSTGRES_URL).replace(database=name))
    try:
        yield urls
    finally:
        if POSTGRES_URL is not None:
            asyncio.run(admin(f"DROP DATABASE {name} WITH (FORCE)"))


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


async def write(url: str, token: str, document: dict[str, object]) -> None:
    async with started(url) as (_, client):
        response = await client.put(
            META, json={"metadata": document}, headers={"Authorization": f"Token {token}"}
        )
        assert response.status_code == 200, response.text


async def read(url: str, token: str) -> tuple[int, object]:
    async with started(url) as (_, client):
        response = await client.get(META, headers={"Authorization": f"Token {token}"})
        return response.status_code, response.json()


PAIRS = [("sqlite", "postgresql"), ("postgresql", "sqlite")] if POSTGRES_URL else [
    ("sqlite", "sqlite2")
]


@pytest.mark.parametrize(("source", "target"), PAIRS)
def test_dump_and_load_move_a_host_and_its_tokens_between_databases(
    source: str, target: str, fresh: dict[str, str], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src, dst = fresh[source], fresh[target]
    assert cli(capsys, "add-platform", P, "--database", src)[0] == 0
    john = cli(capsys, "add-user", "john_doe", "--platform", P, "--database", src)[1].strip()
    boss = cli(capsys, "add-user", "boss", "--platform", P, "--admin", "--database", src)[1]
    asyncio.run(write(src, john, {"theme": "dark"}))
    asyncio.run(write(src, boss.strip(), {"role": "boss"}))
    assert cli(capsys, "remove-user", "john_doe", "--platform", P, "--database", src)[0] == 0

    first, second = tmp_path / "first.dump", tmp_path / "second.dump"
    status, _, err = cli(capsys, "dump", str(first), "--database", src)
    assert status == 0 and "dumped" in err
    status, _, err = cli(capsys, "load", str(first), "--database", dst)
    assert status == 0 and "loaded" in err
    assert cli(capsys, "dump", str(second), "--database", dst)[0] == 0
    assert second.read_bytes() == first.read_bytes()
    # The former member's record is in it; the admin's old token works on the new database.
    assert b'"username":"john_doe"' in first.read_bytes()
    assert b'{\\"theme\\":\\"dark\\"}' in first.read_bytes()
    moved = asyncio.run(read(dst, boss.strip()))
    assert moved == asyncio.run(read(src, boss.strip())) and moved[0] == 200
    # john's token still authenticates (401 for an unknown one): he is just not a member.
    assert asyncio.run(read(dst, john))[0] == 403
    # New rows get new ids after the loaded ones (PostgreSQL's identity sequences moved on).
    assert cli(capsys, "add-platform", "second", "--database", dst)[0] == 0
    assert cli(capsys, "add-user", "newbie", "--platform", "second", "--database", dst)[0] == 0


@pytest.mark.parametrize("kind", DATABASE_KINDS)
def test_load_refuses_a_database_with_data_unless_replace(
    kind: str, fresh: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = fresh[kind]
    cli(capsys, "add-platform", P, "--database", url)
    dump = tmp_path / "x.dump"
    assert cli(capsys, "dump", str(dump), "--database", url)[0] == 0
    status, _, err = cli(capsys, "load", str(dump), "--database", url)
    assert status == 1 and "already holds data" in err and "nothing was loaded" in err
    status, _, err = cli(capsys, "dump", str(dump), "--database", url)
    assert status == 1 and "already exists" in err
    assert cli(capsys, "load", str(dump), "--replace", "--database", url)[0] == 0
    again = tmp_path / "again.dump"
    assert cli(capsys, "dump", str(again), "--database", url)[0] == 0
    assert again.read_bytes() == dump.read_bytes()


@pytest.mark.parametrize("kind", DATABASE_KINDS)
def test_a_truncated_dump_loads_nothing(
    kind: str, fresh: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = fresh["sqlite2"]
    cli(capsys, "add-platform", P, "--database", source)
    cli(capsys, "add-user", "john_doe", "--platform", P, "--database", source)
    dump = tmp_path / "x.dump"
    cli(capsys, "dump", str(dump), "--database", source)
    cut = tmp_path / "cut.dump"
    cut.write_bytes(dump.read_bytes()[:-10])
    status, _, err = cli(capsys, "load", str(cut), "--database", fresh[kind])
    assert status == 1 and "cut short" in err and "nothing was loaded" in err
    empty = tmp_path / "empty.dump"
    assert cli(capsys, "dump", str(empty), "--database", fresh[kind])[0] == 0
    assert empty.read_bytes().count(b"\n") == 2  # the header and the end: no row


def test_backup_copies_a_sqlite_host_whole(
    fresh: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = fresh["sqlite"]
    cli(capsys, "add-platform", P, "--database", url)
    token = cli(capsys, "add-user", "john_doe", "--platform", P, "--database", url)[1].strip()
    asyncio.run(write(url, token, {"theme": "dark"}))
    copy = tmp_path / "copy.db"
    status, _, err = cli(capsys, "backup", str(copy), "--database", url)
    assert status == 0 and "Backed up" in err
    with sqlite3.connect(copy) as check:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    restored = asyncio.run(read(f"sqlite:///{copy}", token))
    assert restored == asyncio.run(read(url, token)) and restored[0] == 200
    status, _, err = cli(capsys, "backup", str(copy), "--database", url)
    assert status == 1 and "already exists" in err


@pytest.mark.skipif(POSTGRES_URL is None, reason="TEST_POSTGRES_URL is not set (CI sets it)")
def test_backup_on_postgresql_points_at_pg_dump(
    fresh: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = cli(capsys, "backup", str(tmp_path / "x"), "--database", fresh["postgresql"])
    assert status == 2 and "pg_dump" in err and "docs/operations.md" in err
    assert not (tmp_path / "x").exists()
