"""A policy PUT's check of every stored document does not hold up other requests.

`MemoryStore` only: its `records` never waits on I/O, so nothing but the check itself can give
the event loop back; the database stores add their own waits between pages.  The counts over
every store are in test_policy_api.py.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from starlette_platform_metadata import MemoryStore, PlatformMetadataApp, changes

from .conftest import URL, FakeAuth

pytestmark = pytest.mark.anyio

POLICY = URL + "policy/?platform_key=acme-corp&dry_run=true"
META = URL + "?platform_key=acme-corp"
# Many documents, each some thousands of values: a check of a few tenths of a second here.
DOCUMENTS = 2000
SCHEMA = {"additionalProperties": {"type": "array", "items": {"type": "integer", "minimum": 0}}}


async def test_requests_are_answered_while_a_large_violations_check_runs(
    auth: FakeAuth, acme: dict[str, dict[str, str]]
) -> None:
    store = MemoryStore()
    document: dict[str, Any] = {f"k{i}": list(range(100)) for i in range(40)}
    for n in range(DOCUMENTS):
        # Every 100th refuses the schema, so examples are built too.
        metadata = {**document, "bad": [-1]} if n % 100 == 0 else document
        await store.update("acme-corp", f"user{n:05}", changes.replace(metadata))
    app = PlatformMetadataApp(auth=auth, store=store)
    transport = httpx.ASGITransport(app=Starlette(routes=[Mount(URL.rstrip("/"), app=app)]))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get(META, headers=acme["john"])).status_code == 200
        gaps: list[float] = []
        running = True

        async def ticker() -> None:
            # The loop's work between two turns of this task: a blocked loop shows here.  CPU
            # time of the loop's thread, not wall time, so that a busy shared machine
            # descheduling the process does not count as blocking.
            last = time.thread_time()
            while running:
                await asyncio.sleep(0.001)
                now = time.thread_time()
                gaps.append(now - last)
                last = now

        # A full collection of the test process's heap stops the loop for tens of
        # milliseconds whatever the code: not what is measured here.
        gc.collect()
        gc.disable()
        try:
            ticking = asyncio.create_task(ticker())
            started = time.thread_time()
            check = asyncio.create_task(
                client.put(POLICY, json={"schema": SCHEMA}, headers=acme["admin"])
            )
            await asyncio.sleep(0.05)
            get = await client.get(META, headers=acme["john"])
            answered_during_check = not check.done()
            response = await check
            total = time.thread_time() - started
            running = False
            await ticking
        finally:
            gc.enable()
    assert response.status_code == 200
    assert response.json()["violating_documents"] == DOCUMENTS // 100
    assert len(response.json()["examples"]) == 20
    assert get.status_code == 200 and answered_during_check
    # Before, the loop stood still for the whole check (one gap as long as all of it); now it
    # turns every fraction of a millisecond of checking.  A bound far below the whole leaves
    # room for a slow machine.
    assert max(gaps) < total / 5, (max(gaps), total)
