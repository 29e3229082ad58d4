"""PostgreSQL's write path (stores/sql/postgres.py): read, change, compare-and-set in two round
trips (one on the record last stored); writers of one row in a process queue and are written
together (postgres_rows.py); a write that loses a race to another process takes the locked
path.  Two `DatabaseStore`s on one table stand for two processes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from starlette_platform_metadata import DatabaseStore, PlatformMetadataApp, changes
from starlette_platform_metadata.conditional import Conditions, parse
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


def with_history_change(document: dict[str, Any], keep: int) -> Any:
    return changes.with_history(changes.patch(document), keep)


@pytest.fixture
async def pg_store() -> AsyncIterator[DatabaseStore]:
    assert POSTGRES_URL is not None
    store = DatabaseStore(POSTGRES_URL, table=f"t_{uuid.uuid4().hex[:12]}")
    await store.connect()
    yield store
    await store.disconnect()


@pytest.fixture
def attempts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bool]]:
    """Each queue written as one statement: how many changes, and whether it was stored."""
    found: list[tuple[int, bool]] = []
    original = PostgresEngine._write_combined

    async def spy(self: PostgresEngine, key: Any, queued: list[Any]) -> bool:
        stored = await original(self, key, queued)
        found.append((len(queued), stored))
        return stored

    monkeypatch.setattr(PostgresEngine, "_write_combined", spy)
    return found


async def test_queued_writers_of_one_row_are_stored_together_in_order(
    pg_store: DatabaseStore, attempts: list[tuple[int, bool]]
) -> None:
    """64 concurrent updates of one row: most go in combined statements, yet each gets its
    own version, every key lands, and history has one revision per version with consecutive
    `seq`s in version order (the platform's clock moved once per change)."""
    with_history = 100
    await pg_store.update("acme-corp", "u", with_history_change({"start": 0}, with_history))
    results = await asyncio.gather(
        *(
            pg_store.update("acme-corp", "u", with_history_change({f"k{n}": n}, with_history))
            for n in range(64)
        )
    )
    assert sorted(r.version for r in results) == list(range(2, 66))
    assert sum(n for n, stored in attempts if stored) > 32, attempts  # the queue was combined
    final = await pg_store.get("acme-corp", "u")
    assert final.version == 65 and len(final.metadata) == 65
    revisions = await pg_store.revisions("acme-corp", "u", limit=100)
    assert [r.version for r in revisions] == list(range(65, 0, -1))
    seqs = [r.seq for r in reversed(revisions)]
    assert seqs == list(range(seqs[0], seqs[0] + 65))
    changes = await pg_store.changes("acme-corp", after=0, limit=100)
    assert [revision.version for _, revision in changes] == list(range(1, 66))
    # Each writer's record is the row after its own change.
    for record in results:
        stored = next(r for r in revisions if r.version == record.version)
        assert stored.metadata_json == record.metadata_json


async def test_a_refusal_inside_a_combined_batch_is_its_writer_s_alone(
    pg_store: DatabaseStore, attempts: list[tuple[int, bool]]
) -> None:
    """Preconditions decided on the record each change really follows: in a queue of
    writers that each require version v, exactly one per v wins; the others get their own
    `PreconditionFailed` and store nothing."""
    await pg_store.update("acme-corp", "u", changes.patch({"n": 0}))
    await pg_store.update("acme-corp", "u", changes.patch({"n": 1}))

    def if_version(version: int, n: int) -> Any:
        tags = parse("If-Match", f'"{version}"', 10)
        return changes.patch({"n": n}, conditions=Conditions(if_match=tags))

    outcomes = await asyncio.gather(
        *(pg_store.update("acme-corp", "u", if_version(2 + n % 4, n)) for n in range(40)),
        return_exceptions=True,
    )
    won = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, changes.PreconditionFailed)]
    assert len(won) + len(refused) == 40
    assert sorted(r.version for r in won) == [3, 4, 5, 6]
    assert (await pg_store.get("acme-corp", "u")).version == 6
    assert any(stored for _, stored in attempts), "no combined statement: not exercised"


async def test_a_combined_batch_that_loses_to_another_process_is_written_one_by_one(
    two_processes: tuple[list[httpx.AsyncClient], FakeAuth], attempts: list[tuple[int, bool]]
) -> None:
    """Two stores on one row, each combining its own queue: whatever races, every change
    lands once (a queue whose statement lost is written again one change at a time)."""
    clients, auth = two_processes
    headers = auth.add("acme-corp", "zoe")
    responses = await patch_distinct_keys(clients, ACME, headers, count=200)
    final = await clients[0].get(ACME, headers=headers)
    assert_all_landed(responses, final, 200)
    assert attempts, "no queue was combined: the test did not exercise it"
