"""The admin listing, export and import against `python -m example_host serve`, a real
server, on SQLite and PostgreSQL, as outside clients use them; and the `export` / `import`
commands on the same databases."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import URL
from .test_example_host import auth, database_url, run_cli
from .hosts import follow_pages, served, tokens

__all__ = ["database_url"]  # the fixture, imported to be used here

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

P = "acme-corp"
USERS = URL + "users/"
NDJSON = "application/x-ndjson"


def add_users(database: str, tmp_path: Path, names: list[str]) -> None:
    listing = tmp_path / "users.txt"
    listing.write_text("".join(f"{name}\n" for name in names))
    done = run_cli("add-users", "--platform", P, str(listing), "--database", database, cwd=tmp_path)
    assert done.returncode == 0, done.stderr


async def walk(client: httpx.AsyncClient, headers: dict[str, str], limit: int) -> list[Any]:
    return await follow_pages(client, f"{USERS}?platform_key={P}&limit={limit}", headers)


async def export(client: httpx.AsyncClient, headers: dict[str, str]) -> list[Any]:
    response = await client.get(
        USERS, params={"platform_key": P}, headers={**headers, "Accept": NDJSON}
    )
    assert response.status_code == 200 and response.headers["content-type"] == NDJSON
    return [json.loads(line) for line in response.content.splitlines()]


async def test_import_page_under_writes_export_and_round_trip(
    database_url: str, tmp_path: Path
) -> None:
    names = [f"user{i:03d}" for i in range(60)]
    with served(database_url, tmp_path) as (base, _, printed):
        admin = auth(tokens(printed)["acme_admin"])
        add_users(database_url, tmp_path, names)
        lines = [{"username": n, "metadata": {"i": i, "plan": ["free", "pro"][i % 2]}}
                 for i, n in enumerate(names)]  # fmt: skip
        body = "".join(json.dumps(line) + "\n" for line in lines)
        headers = {**admin, "Content-Type": NDJSON}
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            refused = await client.post(
                USERS, params={"platform_key": P}, content=body + '{"username": "nobody"}\n',
                headers=headers,
            )
            assert refused.status_code == 400
            assert refused.json() == {"lines": {"61": ["metadata: This field is required."]}}
            assert await walk(client, admin, 100) == []
            imported = await client.post(
                USERS, params={"platform_key": P}, content=body, headers=headers
            )
            assert (imported.status_code, imported.json()) == (200, {"imported": 60})

            stop = asyncio.Event()

            async def churn() -> int:
                n = 0
                while not stop.is_set():
                    n += 1
                    target = names[n % len(names)]
                    response = await client.patch(
                        URL, params={"platform_key": P, "username": target},
                        json={"metadata": {"w": n}}, headers=admin,
                    )
                    assert response.status_code == 200, response.text
                return n

            writer = asyncio.create_task(churn())
            try:
                listed = await walk(client, admin, 7)
            finally:
                stop.set()
                writes = await writer
            assert writes > 0
            assert [r["username"] for r in listed] == names
            pros = await client.get(
                USERS, params={"platform_key": P, "filter": '{"plan": "pro"}', "limit": "1000"},
                headers=admin,
            )
            assert [r["metadata"]["i"] for r in pros.json()["results"]] == list(range(1, 60, 2))

            first = await export(client, admin)
            assert [r["username"] for r in first] == names
            # An export's lines are import lines as they are (other fields are ignored).
            again = await client.post(
                USERS, params={"platform_key": P},
                content=b"".join(json.dumps(r).encode() + b"\n" for r in first), headers=headers,
            )
            assert again.json() == {"imported": 60}
            second = await export(client, admin)
            assert [r["metadata"] for r in second] == [r["metadata"] for r in first]

            removed = run_cli(
                "remove-user", "user005", "--platform", P, "--database", database_url,
                cwd=tmp_path,
            )
            assert removed.returncode == 0, removed.stderr
            listed = await walk(client, admin, 1000)
            assert "user005" not in [r["username"] for r in listed] and len(listed) == 59
            john = auth(tokens(printed)["john_doe"])
            member = await client.get(USERS, params={"platform_key": P}, headers=john)
            assert member.status_code == 403

        # The commands, on the same data: the same lines as the HTTP export.
        exported = run_cli("export", "--platform", P, "--database", database_url, cwd=tmp_path)
        assert exported.returncode == 0, exported.stderr
        assert [json.loads(line) for line in exported.stdout.splitlines()] == [
            r for r in second if r["username"] != "user005"
        ]


async def test_the_commands_round_trip_into_an_empty_database(
    database_url: str, tmp_path: Path
) -> None:
    """`import` of a file (all or nothing, each bad line named), `export` of it; an export
    imported into a fresh database gives back the same documents."""
    (tmp_path / "a").mkdir()
    assert run_cli("add-platform", P, "--database", database_url, cwd=tmp_path).returncode == 0
    add_users(database_url, tmp_path / "a", ["amy", "bob"])
    data = tmp_path / "in.ndjson"
    data.write_text(
        '{"username": "amy", "metadata": {"n": 1.0, "s": "\\u00e9"}}\n'
        '{"username": "bob", "metadata": {"tags": ["x", {"y": null}]}}\n'
    )
    bad = tmp_path / "bad.ndjson"
    bad.write_text('{"username": "amy", "metadata": {}}\n{"username": "cid", "metadata": {}}\n')
    refused = run_cli("import", "--platform", P, str(bad), "--database", database_url, cwd=tmp_path)
    assert refused.returncode == 1
    assert "line 2: User not found" in refused.stderr
    done = run_cli("import", "--platform", P, str(data), "--database", database_url, cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, "imported 2\n"), done.stderr
    first = run_cli("export", "--platform", P, "--database", database_url, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert [json.loads(line)["metadata"] for line in lines] == [
        {"n": 1.0, "s": "é"},
        {"tags": ["x", {"y": None}]},
    ]
    assert '"n":1.0' in lines[0]

    fresh = str(tmp_path / "fresh.db")
    url = f"sqlite:///{fresh}"
    assert run_cli("add-platform", P, "--database", url, cwd=tmp_path).returncode == 0
    add_users(url, tmp_path / "a", ["amy", "bob"])
    backup = tmp_path / "backup.ndjson"
    backup.write_text(first.stdout)
    loaded = run_cli("import", "--platform", P, str(backup), "--database", url, cwd=tmp_path)
    assert loaded.returncode == 0, loaded.stderr
    again = run_cli("export", "--platform", P, "--database", url, cwd=tmp_path)
    assert [json.loads(line)["metadata"] for line in again.stdout.splitlines()] == [
        json.loads(line)["metadata"] for line in lines
    ]
    assert '"n":1.0' in again.stdout.splitlines()[0]
