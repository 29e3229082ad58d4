"""History against `python -m example_host serve`, a real server, on SQLite and PostgreSQL, as
outside clients run it: concurrent writes leave gapless revisions, and a `kill -9` in the middle
of a stream of writes leaves every acknowledged write with its revision."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import URL
from .hosts import follow_pages, served, tokens
from .test_example_host import auth, database_url

__all__ = ["database_url"]  # the fixture, imported to be used here

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

P = "acme-corp"
HISTORY = URL + "history/"


async def all_revisions(client: httpx.AsyncClient, headers: dict[str, str]) -> list[Any]:
    """Every page, by following `next` (an absolute URL) to the end."""
    return await follow_pages(client, f"{HISTORY}?platform_key={P}&limit=100", headers)


async def test_ninety_concurrent_writes_leave_ninety_gapless_revisions(
    database_url: str, tmp_path: Path
) -> None:
    with served(database_url, tmp_path) as (base, _, printed):
        john = auth(tokens(printed)["john_doe"])
        limits = httpx.Limits(max_connections=90)
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:

            async def write(n: int) -> int:
                response = await client.patch(
                    URL, params={"platform_key": P}, json={"metadata": {f"k{n}": n}}, headers=john
                )
                assert response.status_code == 200, response.text
                return int(response.headers["ETag"].strip('"'))

            versions = await asyncio.gather(*(write(n) for n in range(90)))
            assert sorted(versions) == list(range(1, 91))
            revisions = await all_revisions(client, john)
            assert [r["version"] for r in revisions] == list(range(90, 0, -1))
            by_version = {r["version"]: r for r in revisions}
            for n, version in enumerate(versions):
                assert by_version[version]["changed_keys"] == [f"k{n}"]
                assert by_version[version]["operation"] == "patch"
                assert by_version[version]["actor"] == "john_doe"
            assert by_version[90]["metadata"] == {f"k{n}": n for n in range(90)}


async def test_kill_9_during_writes_loses_no_acknowledged_revision(
    database_url: str, tmp_path: Path
) -> None:
    acknowledged: list[int] = []
    with served(database_url, tmp_path, "--history-per-user", "100000") as (base, proc, printed):
        john = auth(tokens(printed)["john_doe"])
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:

            async def writer(w: int) -> None:
                n = 0
                while True:
                    n += 1
                    try:
                        response = await client.patch(
                            URL,
                            params={"platform_key": P},
                            json={"metadata": {f"w{w}": n}},
                            headers=john,
                        )
                    except httpx.HTTPError:
                        return  # the server is gone: this write was never acknowledged
                    if response.status_code == 200:
                        acknowledged.append(int(response.headers["ETag"].strip('"')))

            tasks = [asyncio.create_task(writer(w)) for w in range(8)]
            while len(acknowledged) < 200:
                await asyncio.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
    assert len(acknowledged) >= 200
    with served(database_url, tmp_path) as (base, _, printed):
        assert tokens(printed) == {}  # no demo users the second time
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            revisions = await all_revisions(client, john)
            record = await client.get(URL, params={"platform_key": P}, headers=john)
    versions = [r["version"] for r in revisions]
    newest = int(record.headers["ETag"].strip('"'))
    # Every change has its revision and every revision its change: 1..newest, no gap.
    assert versions == list(range(newest, 0, -1))
    assert set(acknowledged) <= set(versions)
    assert revisions[0]["metadata"] == record.json()["metadata"]
