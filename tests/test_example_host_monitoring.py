"""The example host's /healthz, /readyz and /metrics (docs/monitoring.md, docs/example_host.md).

Health and readiness are always served; metrics are on by default on a loopback --host only
(`--metrics` / `--no-metrics` say otherwise), and with several workers one scrape sums them
all (each worker's figures in a shared directory)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import httpx
import pytest

from example_host.__main__ import _parser, _serve_options
from example_host.app import create_app
from example_host.monitoring import MULTIPROC_ENV, metrics_default, metrics_environment

from .conftest import URL
from .hosts import served, tokens

pytestmark = pytest.mark.anyio


def client_of(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")  # type: ignore[arg-type]


async def test_health_and_readiness_are_served_without_a_token(tmp_path: Path) -> None:
    app = create_app(f"sqlite:///{tmp_path / 'host.db'}")
    async with client_of(app) as client:
        live = await client.get("/healthz")
        ready = await client.get("/readyz")
        scrape = await client.get("/metrics")
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    # Metrics off (the library's default): the host's JSON 404.
    assert (scrape.status_code, scrape.json()) == (404, {"detail": "Not found."})
    await app.state.store.disconnect()


async def test_metrics_count_the_hosts_requests(tmp_path: Path) -> None:
    app = create_app(f"sqlite:///{tmp_path / 'host.db'}", metrics=True)
    async with client_of(app) as client:
        for _ in range(2):
            assert (await client.get(URL + "?platform_key=acme-corp")).status_code == 401
        await client.get("/readyz")
        scrape = await client.get("/metrics")
    assert scrape.status_code == 200
    assert (
        'platform_metadata_requests_total{method="GET",resource="metadata",status_class="4xx"} 2.0'
        in scrape.text
    )
    await app.state.store.disconnect()


@pytest.mark.parametrize(
    ("host", "on"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("example.com", False),
    ],
)
def test_metrics_are_on_by_default_only_on_loopback(host: str, on: bool) -> None:
    assert metrics_default(host) is on


@pytest.mark.parametrize(
    ("flags", "chosen"), [([], None), (["--metrics"], True), (["--no-metrics"], False)]
)
def test_the_metrics_flags(flags: list[str], chosen: bool | None) -> None:
    parser = _parser()
    options = _serve_options(parser, parser.parse_args(["serve", *flags]))
    assert options.metrics is chosen


def test_several_workers_share_a_directory_of_the_run_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    with metrics_environment("0.0.0.0", 4, None) as on:
        assert not on and MULTIPROC_ENV not in os.environ  # off: nothing to share
    with metrics_environment("127.0.0.1", 1, None) as on:
        assert on and MULTIPROC_ENV not in os.environ  # one process: its own registry
    with metrics_environment("0.0.0.0", 2, True) as on:
        directory = Path(os.environ[MULTIPROC_ENV])
        assert on and directory.is_dir()
    assert not directory.exists() and MULTIPROC_ENV not in os.environ


@pytest.mark.slow
def test_one_scrape_sums_every_worker(tmp_path: Path) -> None:
    """`serve --workers 2` on loopback: each request is counted once, whichever worker
    answered it and whichever worker answers the scrape (another worker's figures within a
    second: each writes its own to the shared directory once a second)."""
    database = f"sqlite:///{tmp_path / 'host.db'}"
    pattern = re.compile(
        r'^platform_metadata_requests_total\{method="GET",resource="metadata",'
        r'status_class="2xx"\} (\S+)$',
        re.M,
    )

    def counted(client: httpx.Client) -> float:
        found = pattern.findall(client.get("/metrics").text)
        return sum(float(value) for value in found)

    with served(database, tmp_path, "--workers", "2") as (base, _, printed):
        assert f"metrics {base}/metrics" in printed
        headers = {"Authorization": f"Token {tokens(printed)['john_doe']}"}
        for _ in range(12):
            # A new connection each time, so that both workers answer some.
            response = httpx.get(base + URL + "?platform_key=acme-corp", headers=headers)
            assert response.status_code == 200
        with httpx.Client(base_url=base, timeout=10) as client:
            deadline = time.monotonic() + 5
            while counted(client) < 12 and time.monotonic() < deadline:
                time.sleep(0.1)
            scrapes = [counted(client) for _ in range(4)]
    assert scrapes == [12.0] * 4
