"""Writes decided on the policy this process read last, checked by the store as it writes
(`Policies.guessed`, `GuardedWriter`): a policy changed elsewhere governs the very next
write, and a write on PostgreSQL costs one statement.

Two apps over two stores on one database stand for two processes of a host.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from databases import Database

from starlette_platform_metadata import DatabaseStore, PlatformMetadataApp

from .conftest import DATABASE_KINDS, POSTGRES_URL, FakeAuth

pytestmark = pytest.mark.anyio

META = "/?platform_key=acme-corp"
POLICY = "/policy/?platform_key=acme-corp"
Headers = dict[str, dict[str, str]]
KEYS_FORBIDDEN = "Only tenant admins can change these keys"


def client_of(store: DatabaseStore, auth: FakeAuth) -> httpx.AsyncClient:
    app = PlatformMetadataApp(auth=auth, store=store)
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture(params=DATABASE_KINDS)
async def two_stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[DatabaseStore, DatabaseStore]]:
    if request.param == "sqlite":
        url, table = f"sqlite:///{tmp_path / 'shared.db'}", "platform_metadata"
    else:
        assert POSTGRES_URL is not None
        url, table = POSTGRES_URL, f"t_{uuid.uuid4().hex[:12]}"
    first, second = DatabaseStore(url, table=table), DatabaseStore(url, table=table)
    await first.connect()
    await second.connect()
    try:
        yield first, second
    finally:
        await first.disconnect()
        await second.disconnect()


async def test_a_policy_changed_elsewhere_governs_the_next_write(
    two_stores: tuple[DatabaseStore, DatabaseStore], auth: FakeAuth, acme: Headers
) -> None:
    """Process 1 has read the platform's (empty) policy and written under it; process 2
    protects `plan` and hides `notes`.  Process 1's next member write of `plan` is refused
    and stores nothing, and its next answer hides `notes`: no write is decided on the policy
    it remembered."""
    one, two = two_stores
    async with client_of(one, auth) as first, client_of(two, auth) as second:
        for n in range(3):  # the policy read, and the row's basis remembered
            answer = await first.patch(META, json={"metadata": {"n": n}}, headers=acme["john"])
            assert answer.status_code == 200
        assert (await first.get(META, headers=acme["john"])).json()["metadata"] == {"n": 2}
        policy = {"protected_keys": ["plan"], "private_keys": ["notes"]}
        assert (await second.put(POLICY, json=policy, headers=acme["admin"])).status_code == 200
        before = await one.get("acme-corp", "john_doe")
        refused = await first.patch(
            META, json={"metadata": {"plan": "pro"}}, headers=acme["john"]
        )
        assert refused.status_code == 403, refused.text
        assert refused.json() == {"error": KEYS_FORBIDDEN, "keys": ["plan"]}
        assert await one.get("acme-corp", "john_doe") == before
        # The admin writes `notes` through process 2; john's answer from process 1 hides it.
        admin_patch = await second.patch(
            META + "&username=john_doe", json={"metadata": {"notes": "x"}}, headers=acme["admin"]
        )
        assert admin_patch.status_code == 200
        kept = await first.patch(META, json={"metadata": {"n": 3}}, headers=acme["john"])
        assert kept.status_code == 200
        assert kept.json()["metadata"] == {"n": 3}
        # And a policy deleted elsewhere lets the next write through.
        assert (await second.delete(POLICY, headers=acme["admin"])).status_code == 204
        allowed = await first.patch(
            META, json={"metadata": {"plan": "pro"}}, headers=acme["john"]
        )
        assert allowed.status_code == 200
        assert allowed.json()["metadata"] == {"n": 3, "notes": "x", "plan": "pro"}


async def test_put_delete_and_restore_are_decided_on_the_current_policy(
    two_stores: tuple[DatabaseStore, DatabaseStore], auth: FakeAuth, acme: Headers
) -> None:
    """The other writes take the same path, each decided on a policy process 1 has not
    read yet: a PUT of a protected key refused, a member's restore and DELETE keep it."""
    one, two = two_stores
    async with client_of(one, auth) as first, client_of(two, auth) as second:
        john = acme["john"]
        for plan in ("free", "team"):
            put = await first.put(META, json={"metadata": {"plan": plan, "x": 1}}, headers=john)
            assert put.status_code == 200
        policy = {"protected_keys": ["plan"]}
        assert (await second.put(POLICY, json=policy, headers=acme["admin"])).status_code == 200
        before = await one.get("acme-corp", "john_doe")
        put = await first.put(META, json={"metadata": {"plan": "pro"}}, headers=john)
        assert put.status_code == 403
        assert await one.get("acme-corp", "john_doe") == before
        # A member's restore of version 1 brings back `x`, not the protected `plan`.
        restore = await first.post(
            "/restore/?platform_key=acme-corp", json={"version": 1}, headers=john
        )
        assert restore.status_code == 200
        assert restore.json()["metadata"] == {"x": 1, "plan": "team"}
        assert (await first.delete(META, headers=john)).status_code == 204
        kept = await one.get("acme-corp", "john_doe")
        assert (kept.metadata, kept.version) == ({"plan": "team"}, before.version + 2)


@pytest.fixture
async def counted() -> AsyncIterator[tuple[DatabaseStore, list[str]]]:
    """A PostgreSQL store whose pooled connections report each statement they run."""
    if POSTGRES_URL is None:
        pytest.skip("TEST_POSTGRES_URL is not set (CI sets it)")
    statements: list[str] = []

    async def init(connection: Any) -> None:
        connection.add_query_logger(lambda record: statements.append(record.query))

    async def keep_session(connection: Any) -> None:
        """As the store's own pools: no reset query on release."""

    database = Database(POSTGRES_URL, init=init, reset=keep_session)
    store = DatabaseStore(database=database, table=f"t_{uuid.uuid4().hex[:12]}")
    await database.connect()
    await store.connect()
    try:
        yield store, statements
    finally:
        await store.disconnect()
        await database.disconnect()


async def test_a_write_on_postgres_is_one_statement(
    counted: tuple[DatabaseStore, list[str]], auth: FakeAuth, acme: Headers
) -> None:
    """Once the policy and the row were read: a PATCH, a PUT and a DELETE are each one
    statement (the compare-and-set, guarded by the policy record), as is a GET."""
    store, statements = counted
    async with client_of(store, auth) as client:
        john = acme["john"]
        assert (await client.get(META, headers=john)).status_code == 200
        assert (await client.patch(META, json={"metadata": {"a": 0}}, headers=john)).status_code == 200
        for request in (
            client.build_request("PATCH", META, json={"metadata": {"a": 1}}, headers=john),
            client.build_request("PUT", META, json={"metadata": {"b": 2}}, headers=john),
            client.build_request("DELETE", META, headers=john),
            client.build_request("GET", META, headers=john),
        ):
            statements.clear()
            answer = await client.send(request)
            assert answer.status_code in (200, 204), answer.text
            assert len(statements) == 1, (request.method, statements)
    assert (await store.get("acme-corp", "john_doe")).version == 4
