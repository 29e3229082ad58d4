"""Every command of docs/operations.md runs, as written.

Each shell block of the guide says which databases it runs on (`<!-- runs on: sqlite,
postgresql -->` just before it; a block without one fails this test).  The blocks of one
section run in order, in bash with `-euo pipefail`, in a fresh folder holding a SQLite
database with a platform, a user and a document (`example_host.db`), and with the guide's
variables set: `BACKUPS`, `OLD_TOKEN` (that user's token) and, on PostgreSQL, `DATABASE_URL`
(a new database, filled the same way, except where the section moves data into an empty
one).  The commands check themselves (`cmp`, `list-users` of the restored platform): any
failure is a non-zero exit.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from databases import DatabaseURL

from example_host.db import HostDB
from starlette_platform_metadata import DatabaseStore
from starlette_platform_metadata.stores.base import Record, Write, utcnow

from .conftest import POSTGRES_URL
from .test_example_host_redaction import admin

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "operations.md"
KINDS = ("sqlite", "postgresql")
#: Sections whose PostgreSQL database starts empty: they load into it.
EMPTY_POSTGRES = {"Moving from SQLite to PostgreSQL"}

_BLOCK = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<lang>[a-z]*)\n(?P<code>.*?)^(?P=indent)```$", re.MULTILINE | re.DOTALL
)
_RUNS_ON = re.compile(r"<!-- runs on: ([a-z, ]+) -->\s*$")


@dataclass(frozen=True)
class Block:
    section: str
    kinds: tuple[str, ...]
    code: str


def blocks(text: str) -> list[Block]:
    """The shell blocks of `text`, each with its section and the databases it runs on."""
    found = []
    for match in _BLOCK.finditer(text):
        if match["lang"] not in ("sh", "bash", "console", "shell"):
            continue
        before = text[: match.start()]
        section = re.findall(r"^## (.+)$", before, re.MULTILINE)[-1]
        tag = _RUNS_ON.search(before.rstrip(" \t"))
        assert tag is not None, f"a shell block of '{section}' says nowhere what it runs on"
        kinds = tuple(kind.strip() for kind in tag[1].split(","))
        assert set(kinds) <= set(KINDS), kinds
        code = "\n".join(line.removeprefix(match["indent"]) for line in match["code"].splitlines())
        found.append(Block(section, kinds, code))
    return found


BLOCKS = blocks(GUIDE.read_text())
RUNS = [
    (section, kind)
    for section in dict.fromkeys(block.section for block in BLOCKS)
    for kind in KINDS
    if any(b.section == section and kind in b.kinds for b in BLOCKS)
    and (kind == "sqlite" or POSTGRES_URL is not None)
]


def test_the_guide_has_commands_for_both_databases() -> None:
    """The parser found the guide's blocks: backup, dump and load, pg_dump, tokens."""
    text = "\n".join(block.code for block in BLOCKS)
    for command in ("example_host backup", "example_host dump", "example_host load",
                    "pg_dump", "pg_restore", "pg_basebackup", "revoke-token", "add-user"):
        assert command in text, command
    assert {kind for block in BLOCKS for kind in block.kinds} == set(KINDS)


async def fill(url: str) -> str:
    """A platform, a member with a token (returned), and a document with history."""
    async with HostDB(url) as db:
        await db.add_platform("acme-corp")
        token = await db.add_user("john_doe", "acme-corp")
    async with DatabaseStore(url) as store:
        now = utcnow()
        await store.update(
            "acme-corp",
            "john_doe",
            lambda current: Write(Record('{"theme":"dark"}', 1, now, now), "put", "john_doe"),
        )
    return token


def pg_bindir() -> str:
    found = subprocess.run(
        [str(ROOT / "scripts" / "pg-cluster"), "bindir"], capture_output=True, text=True, check=False
    )
    assert found.returncode == 0, "PostgreSQL's binaries are not installed (scripts/pg-cluster)"
    return found.stdout.strip()


@pytest.fixture
def postgres_database() -> Iterator[str]:
    assert POSTGRES_URL is not None
    name = f"ops_{uuid.uuid4().hex[:12]}"
    asyncio.run(admin(f"CREATE DATABASE {name}"))
    try:
        yield str(DatabaseURL(POSTGRES_URL).replace(database=name))
    finally:
        asyncio.run(admin(f"DROP DATABASE {name} WITH (FORCE)"))


@pytest.mark.slow
@pytest.mark.parametrize(("section", "kind"), RUNS, ids=[f"{s}-{k}" for s, k in RUNS])
def test_every_command_of_the_guide_runs(
    section: str, kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    folder = tmp_path / "work"
    backups = tmp_path / "backups"
    folder.mkdir()
    backups.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    path = [str(Path(sys.executable).parent), env.get("PATH", "")]
    env.update(PYTHONPATH=str(ROOT), BACKUPS=str(backups))
    token = asyncio.run(fill(f"sqlite:///{folder / 'example_host.db'}"))
    if kind == "postgresql":
        url = request.getfixturevalue("postgres_database")
        if section not in EMPTY_POSTGRES:
            token = asyncio.run(fill(url))
        env["DATABASE_URL"] = url
        path.insert(1, pg_bindir())
    env.update(PATH=os.pathsep.join(path), OLD_TOKEN=token)
    for block in BLOCKS:
        if block.section != section or kind not in block.kinds:
            continue
        ran = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block.code],
            check=False,
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert ran.returncode == 0, f"{block.code}\n--- stdout\n{ran.stdout}\n--- stderr\n{ran.stderr}"


@pytest.mark.anyio
async def test_the_documented_dump_format_is_what_a_dump_writes(tmp_path: Path) -> None:
    """The guide's example dump loads, and dumps again to exactly its own bytes."""
    from example_host.backup import HOST_TABLES
    from starlette_platform_metadata import dumps

    section = GUIDE.read_text().split("### The dump format", 1)[1]
    example = section.split("```json\n", 1)[1].split("```", 1)[0].encode()
    url = f"sqlite:///{tmp_path / 'format.db'}"
    async with HostDB(url), DatabaseStore(url) as store:
        await dumps.load(store, io.BytesIO(example), tables=HOST_TABLES)
        out = io.BytesIO()
        await dumps.dump(store, out, tables=HOST_TABLES)
    assert out.getvalue() == example
