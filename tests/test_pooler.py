"""PostgreSQL behind a transaction pooler: `?statement_cache_size=0` reaches asyncpg, and
`listen_url` is where the one LISTEN connection goes (docs/postgresql.md, "PgBouncer and
live changes").  tests/test_topology.py runs both through a real PgBouncer."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import uuid

import pytest
from databases import DatabaseURL

from starlette_platform_metadata import DatabaseStore
from starlette_platform_metadata.stores import sql_connection
from starlette_platform_metadata.stores.sql.postgres_connection import asyncpg_dsn

from .conftest import POSTGRES_URL
from .test_example_host import ROOT

pytestmark = pytest.mark.anyio
needs_postgres = pytest.mark.skipif(
    POSTGRES_URL is None, reason="TEST_POSTGRES_URL is not set (CI sets it)"
)


def with_options(url: str, query: str) -> str:
    return str(DatabaseURL(url).replace(query=query))


@needs_postgres
@pytest.mark.parametrize(("query", "prepared"), [("max_size=1", True), ("max_size=1&statement_cache_size=0", False)])
async def test_statement_cache_size_in_the_url_turns_named_statements_off(
    query: str, prepared: bool
) -> None:
    """With the cache off, no statement outlives its own round trip (what a transaction
    pooler needs); by default asyncpg keeps named prepared statements on the connection."""
    assert POSTGRES_URL is not None
    connection = sql_connection(with_options(POSTGRES_URL, query))
    try:
        await connection.fetch("SELECT $1::int + 1", 1)
        rows = await connection.fetch("SELECT name FROM pg_prepared_statements")
    finally:
        await connection.close()
    assert bool(rows) is prepared


def test_a_bad_statement_cache_size_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="statement_cache_size"):
        DatabaseStore("postgresql://u:p@127.0.0.1:1/db?statement_cache_size=none")


def test_the_listener_url_keeps_only_what_asyncpg_connect_takes() -> None:
    url = "postgresql://u:p@db:5432/app?statement_cache_size=0&max_size=3&sslmode=require"
    assert asyncpg_dsn(url) == "postgresql://u:p@db:5432/app?sslmode=require"


@pytest.mark.parametrize(
    ("url", "listen_url"),
    [
        ("sqlite:///metadata.db", "postgresql://u:p@127.0.0.1:1/db"),
        ("postgresql://u:p@127.0.0.1:1/db", "sqlite:///metadata.db"),
    ],
)
def test_listen_url_is_for_postgresql_only(url: str, listen_url: str) -> None:
    with pytest.raises(ValueError, match="listen_url"):
        DatabaseStore(url, listen_url=listen_url)


@needs_postgres
async def test_the_store_listens_on_listen_url_not_on_its_pool(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Requests use the pool's URL; the listener connects to `listen_url` (here a port where
    nothing listens: the store says so once and polls, and requests are served)."""
    assert POSTGRES_URL is not None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    nowhere = str(DatabaseURL(POSTGRES_URL).replace(port=closed))
    store = DatabaseStore(POSTGRES_URL, table=f"t_{uuid.uuid4().hex[:12]}", listen_url=nowhere)
    try:
        with caplog.at_level(logging.WARNING, "starlette_platform_metadata"):
            assert await store.poll() is True  # not listening: read the table, miss nothing
        assert "cannot LISTEN" in caplog.text
        assert (await store.get("p", "u")).version == 0
    finally:
        await store.disconnect()
    plain = DatabaseStore(POSTGRES_URL, table=f"t_{uuid.uuid4().hex[:12]}")
    try:
        caplog.clear()
        await plain.poll()
        assert "cannot LISTEN" not in caplog.text
    finally:
        await plain.disconnect()


def test_serve_refuses_listen_database_without_postgresql() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "example_host", "serve", "--database", "sqlite:///x.db",
         "--listen-database", "postgresql://u:p@127.0.0.1:1/db"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--listen-database needs PostgreSQL" in done.stderr
