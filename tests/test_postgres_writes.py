"""PostgreSQL's write path (stores/sql/postgres.py): read, change, compare-and-set in two round
trips; writers of one row in a process take turns; a write that loses a race to another process
takes the locked path.  Two `DatabaseStore`s on one table stand for two processes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from starlette_platform_metadata import DatabaseStore, PlatformMetadataApp
from starlette_platform_metadata.stores.sql.postgres import PostgresEngine

from .conftest import POSTGRES_URL, URL, FakeAuth
from .test_concurrency import assert_all_landed, patch_distinct_keys

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(POSTGRES_URL is None, reason="needs TEST_POSTGRES_URL"),
]
ACME = URL + "?platform_key=acme-corp"


@pytest.fixture
async def two_processes() -> AsyncIterator[tuple[list[httpx.AsyncClient], FakeAuth]]:
    """Two apps, each with its own `DatabaseStore` (pool, listener, turns) on one table."""
    assert POSTGRES_URL is not None
    table = f"t_{uuid.uuid4().hex[:12]}"
    auth = FakeAuth()
    stores = [DatabaseStore(POSTGRES_URL, table=table) for _ in range(2)]
    clients = [
        httpx.AsyncClient(
            transport=httpx.ASGITransport(
                app=Starlette(
                    routes=[Mount(URL.rstrip("/"), app=PlatformMetadataApp(auth=auth, store=s))]
                )
            ),
            base_url="http://testserver",
        )
        for s in stores
    ]
    yield clients, auth
    for client in clients:
        await client.aclose()
    for store in stores:
        await store.disconnect()


@pytest.fixture
def locked_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The usernames whose write took the locked path."""
    calls: list[str] = []
    original = PostgresEngine._locked_transaction

    async def spy(self: PostgresEngine, platform_key: str, username: str, change: Any) -> Any:
        calls.append(username)
        return await original(self, platform_key, username, change)

    monkeypatch.setattr(PostgresEngine, "_locked_transaction", spy)
    return calls


async def test_two_processes_writing_one_row_lose_nothing_and_races_take_the_locked_path(
    two_processes: tuple[list[httpx.AsyncClient], FakeAuth], locked_calls: list[str]
) -> None:
    """200 PATCHes of distinct keys to one row through two stores: every write lands with its
    own version, and the writes that lost a compare-and-set to the other store went through
    the row lock."""
    clients, auth = two_processes
    headers = auth.add("acme-corp", "john_doe")
    responses = await patch_distinct_keys(clients, ACME, headers)
    final = await clients[0].get(ACME, headers=headers)
    assert_all_landed(responses, final, len(responses))
    assert locked_calls, "no write lost a race: the test did not exercise the fallback"
    assert len(locked_calls) < len(responses)


async def test_writers_of_one_row_in_one_process_take_turns_and_never_race(
    two_processes: tuple[list[httpx.AsyncClient], FakeAuth], locked_calls: list[str]
) -> None:
    """Within one store, concurrent writers of one row queue: none loses a compare-and-set,
    so none takes the locked path, and all land."""
    clients, auth = two_processes
    headers = auth.add("acme-corp", "jane")
    responses = await patch_distinct_keys(clients[:1], ACME, headers, count=100)
    final = await clients[0].get(ACME, headers=headers)
    assert_all_landed(responses, final, 100)
    assert locked_calls == []


async def test_history_keeps_one_revision_per_version_through_races(
    two_processes: tuple[list[httpx.AsyncClient], FakeAuth],
) -> None:
    """The revision rides in the compare-and-set statement: a lost race leaves no revision
    behind, so history holds versions 1..N once each."""
    clients, auth = two_processes
    headers = auth.add("acme-corp", "ann")
    await patch_distinct_keys(clients, ACME, headers, count=60)
    seen: list[int] = []
    url: str | None = URL + "history/?platform_key=acme-corp&limit=100"
    while url:
        page = await clients[1].get(url, headers=headers)
        assert page.status_code == 200, page.text
        body = page.json()
        seen += [revision["version"] for revision in body["results"]]
        url = body.get("next")
    assert sorted(seen) == list(range(1, 61))


async def test_a_first_write_racing_in_two_processes_keeps_both_keys(
    two_processes: tuple[list[httpx.AsyncClient], FakeAuth],
) -> None:
    clients, auth = two_processes
    for n in range(10):
        headers = auth.add("acme-corp", f"racer{n}")
        first, second = await asyncio.gather(
            clients[0].patch(ACME, json={"metadata": {"a": n}}, headers=headers),
            clients[1].patch(ACME, json={"metadata": {"b": n}}, headers=headers),
        )
        assert {first.status_code, second.status_code} == {200}
        final = await clients[0].get(ACME, headers=headers)
        assert final.json()["metadata"] == {"a": n, "b": n}
