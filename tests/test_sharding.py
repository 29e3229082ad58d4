"""Every statement the request paths run on PostgreSQL names its `platform_key`.

docs/scaling.md's plan for outgrowing one primary distributes the store's tables by
`platform_key` (Citus): a statement whose every table reference is filtered on one
`platform_key` (or, for an INSERT, writes it) runs on one shard.  This test serves the whole
API on PostgreSQL, captures each statement through asyncpg's public query logger, and
checks each one, so that a new query that would fan out to every shard fails here first."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from databases import Database
from starlette.applications import Starlette
from starlette.routing import Mount

from starlette_platform_metadata import DatabaseStore, PlatformMetadataApp
from starlette_platform_metadata.events import EventSettings

from .conftest import POSTGRES_URL, URL, FakeAuth
from .sse import serving, stream

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(POSTGRES_URL is None, reason="TEST_POSTGRES_URL is not set (CI sets it)"),
]

P = "acme-corp"
META = f"{URL}?platform_key={P}"
#: Transaction control: no table, nothing to route.
CONTROL = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE)\b", re.IGNORECASE)
#: A table named after FROM, UPDATE, INTO or JOIN (aliases and CTE names included).
REFERENCE = re.compile(r"\b(FROM|UPDATE|INTO|JOIN)\s+(\w+)", re.IGNORECASE)
KEYED_FILTER = re.compile(r"\bWHERE\s+(\w+\.)?platform_key\s*=\s*\$\d+", re.IGNORECASE)
KEYED_COLUMNS = re.compile(r"^\s*(AS\s+\w+\s*)?\(\s*platform_key\b", re.IGNORECASE)


def unkeyed(sql: str, tables: set[str]) -> list[str]:
    """The references to `tables` in `sql` that are not keyed by one `platform_key`: a read,
    UPDATE or DELETE whose own WHERE does not start with `platform_key = $n`, an INSERT whose
    columns do not start with `platform_key`.  A reference's clause runs to the next one."""
    found = list(REFERENCE.finditer(sql))
    wrong = []
    for n, match in enumerate(found):
        if match.group(2) not in tables:
            continue
        clause = sql[match.end() : found[n + 1].start() if n + 1 < len(found) else len(sql)]
        keyed = KEYED_COLUMNS if match.group(1).upper() == "INTO" else KEYED_FILTER
        if not keyed.search(clause):
            wrong.append(f"{match.group(0)} ...{clause[:120]}")
    return wrong


def test_the_checker_refuses_a_statement_that_would_fan_out() -> None:
    tables = {"t", "t_history"}
    assert unkeyed("SELECT a FROM t WHERE platform_key = $1 AND username = $2", tables) == []
    assert unkeyed("SELECT a FROM t WHERE username = $1", tables)
    assert unkeyed("SELECT count(*) FROM t", tables)
    assert unkeyed("INSERT INTO t (username, platform_key) VALUES ($1, $2)", tables)
    assert unkeyed(
        "WITH d AS (DELETE FROM t_history WHERE platform_key = $1) "
        "UPDATE t SET x = 1 WHERE username = $2", tables
    )  # fmt: skip


@pytest.fixture
async def captured() -> AsyncIterator[tuple[DatabaseStore, list[str]]]:
    """A store whose every pooled connection reports each statement it runs."""
    assert POSTGRES_URL is not None
    statements: list[str] = []

    async def init(connection: Any) -> None:
        connection.add_query_logger(lambda record: statements.append(record.query))

    async def keep_session(connection: Any) -> None:
        """As the store's own pools: no reset query on release (it leaves no session state)."""

    database = Database(POSTGRES_URL, init=init, reset=keep_session)
    table = f"t_{uuid.uuid4().hex[:12]}"
    store = DatabaseStore(database=database, table=table)
    await database.connect()
    await store.connect()  # the DDL and the schema check: not a request path
    try:
        yield store, statements
    finally:
        await store.disconnect()
        await database.disconnect()


async def exercise(client: httpx.AsyncClient, acme: dict[str, dict[str, str]]) -> None:
    """Every request path, each at least once, the way clients call them."""
    john, admin = acme["john"], acme["admin"]
    ndjson = "application/x-ndjson"

    async def ok(method: str, url: str, headers: dict[str, str], **kwargs: Any) -> httpx.Response:
        response = await client.request(method, url, headers=headers, **kwargs)
        assert response.status_code in (200, 204), (method, url, response.text)
        return response

    policy = f"{URL}policy/?platform_key={P}"
    await ok("PUT", policy, admin, json={"protected_keys": ["plan"], "private_keys": ["secret*"]})
    await ok("PUT", policy + "&dry_run=true", admin, json={"schema": {"type": "object"}})
    await ok("GET", policy, john)
    await ok("GET", META, john)
    written = await ok("PATCH", META, john, json={"metadata": {"a": 1}})
    await ok("PATCH", META, {**john, "If-Match": written.headers["etag"]}, json={"metadata": {"b": 2}})
    await ok("PUT", META + "&username=jane", admin, json={"metadata": {"plan": "pro"}})
    await ok("DELETE", META + "&username=jane", admin)
    await ok("PUT", META + "&username=jane", admin, json={"metadata": {"plan": "free"}})
    history = (await ok("GET", f"{URL}history/?platform_key={P}&limit=1", john)).json()
    await ok("GET", history["next"], john)
    await ok("POST", f"{URL}restore/?platform_key={P}", john, json={"version": 1})
    users = f"{URL}users/?platform_key={P}"
    await ok("GET", users + "&limit=1", admin)
    await ok("GET", users + "&filter=" + json.dumps({"plan": "free"}), admin)
    await ok("GET", users, {**admin, "Accept": ndjson})
    body = json.dumps({"username": "jane", "metadata": {"plan": "pro"}}) + "\n"
    await ok("POST", users, {**admin, "Content-Type": ndjson}, content=body)
    events = f"{URL}events/?platform_key={P}"
    async with stream(client, events, john) as mine, stream(
        client, events + "&all_users=true", admin
    ) as everyone:
        snapshot = await mine.next()
        await ok("PATCH", META, john, json={"metadata": {"c": 3}})
        assert (await mine.next()).data["metadata"]["c"] == 3
        assert (await everyone.next()).data["username"] == "john_doe"
    async with stream(client, events, {**john, "Last-Event-ID": snapshot.id or ""}) as again:
        assert (await again.next()).data["metadata"]["c"] == 3
    await ok("DELETE", META + "&history=purge", john)
    await ok("DELETE", policy, admin)


async def test_every_statement_of_the_request_paths_names_its_platform_key(
    captured: tuple[DatabaseStore, list[str]], auth: FakeAuth, acme: dict[str, dict[str, str]]
) -> None:
    store, statements = captured
    statements.clear()
    fast = EventSettings(heartbeat=0.3, recheck=0.2, poll_interval=0.05)
    app = PlatformMetadataApp(auth=auth, store=store, events=fast)
    host = Starlette(routes=[Mount(URL.rstrip("/"), app=app)])
    async with serving(host) as base, httpx.AsyncClient(base_url=base, timeout=10) as client:
        await exercise(client, acme)
    table = store.table
    tables = {table, f"{table}_history", f"{table}_clock"}
    run = [sql for sql in statements if not CONTROL.match(sql)]
    assert len(set(run)) >= 12  # reads, writes, history, listing, changes, the clock
    for sql in run:
        assert any(re.search(rf"\b{t}\b", sql) for t in tables), sql
        assert unkeyed(sql, tables) == [], sql
