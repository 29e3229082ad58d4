"""A store with only the two required methods: the resources that need an optional one
answer a clear JSON 404, and the operator reads once which method is missing."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from starlette_platform_metadata import PlatformMetadataApp
from starlette_platform_metadata.stores.base import EMPTY, Change, Record

from .conftest import URL, FakeAuth

pytestmark = pytest.mark.anyio


class TwoMethodStore:
    """`get` and `update` and nothing else: the smallest store the seam allows."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], Record] = {}
        self.lock = asyncio.Lock()

    async def get(self, platform_key: str, username: str) -> Record:
        return self.records.get((platform_key, username), EMPTY)

    async def update(self, platform_key: str, username: str, change: Change) -> Record:
        async with self.lock:
            current = self.records.get((platform_key, username), EMPTY)
            write = change(current)
            if write is None:
                return current
            self.records[(platform_key, username)] = write.record
            return write.record


@pytest.mark.parametrize(
    ("method", "path", "detail", "logged"),
    [
        ("GET", "history/", "History is not kept on this server.",
         "TwoMethodStore has no revisions() (HistoryReader): history/ answers 404"),
        ("POST", "restore/", "History is not kept on this server.",
         "TwoMethodStore has no revisions() (HistoryReader): restore/ answers 404"),
        ("GET", "events/", "Live changes are not available on this server.",
         "TwoMethodStore has no changes() (ChangeReader): events/ answers 404"),
    ],
)
async def test_a_missing_capability_is_a_clear_404_and_one_log_line(
    caplog: pytest.LogCaptureFixture, method: str, path: str, detail: str, logged: str
) -> None:
    from starlette_platform_metadata import capabilities

    capabilities._logged.clear()  # noqa: SLF001 - other tests of the process logged already
    auth = FakeAuth()
    john = auth.add("acme-corp", "john_doe")
    app = PlatformMetadataApp(auth=auth, store=TwoMethodStore())
    asgi = Starlette(routes=[Mount(URL.rstrip("/"), app=app)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(asgi), base_url="http://t") as client:
        assert (await client.patch(URL + "?platform_key=acme-corp", json={"metadata": {"a": 1}}, headers=john)).status_code == 200
        with caplog.at_level(logging.WARNING, logger="starlette_platform_metadata"):
            for _ in range(3):
                response = await client.request(
                    method, f"{URL}{path}?platform_key=acme-corp", json={"version": 1}, headers=john
                )
                assert (response.status_code, response.json()) == (404, {"detail": detail})
    assert [r.getMessage() for r in caplog.records] == [logged]
