"""Prometheus metrics (`metrics=PrometheusMetrics()`): the figures match the traffic sent.

Requests by resource, method and status class, latency histograms, 503s by reason, store
operation latencies, SQLite group commits, live streams open and refused, policy compilations
and history trims, on every store where the store matters; no label a client chooses."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from starlette_platform_metadata import (
    DatabaseStore,
    EventSettings,
    Health,
    MemoryStore,
    PlatformMetadataApp,
    PlatformMetadataMiddleware,
    Store,
    StoreUnavailable,
)
from starlette_platform_metadata.events import TooManyStreams
from starlette_platform_metadata.prometheus import PrometheusMetrics
from starlette_platform_metadata.tallies import FOLD_EVERY, Tallies
from starlette_platform_metadata.stores import Change, Record

from .conftest import URL, FakeAuth
from .sse import serving, stream

pytestmark = pytest.mark.anyio

MOUNT = URL.rstrip("/")
META = URL + "?platform_key=acme-corp"
Headers = dict[str, dict[str, str]]


def value(metrics: PrometheusMetrics, name: str, **labels: str) -> float:
    """A sample's value; 0 for a sample not exported (yet)."""
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def build(
    auth: FakeAuth, store: Store, **options: object
) -> tuple[Starlette, PlatformMetadataApp, PrometheusMetrics]:
    metrics = PrometheusMetrics()
    app = PlatformMetadataApp(auth=auth, store=store, metrics=metrics, **options)  # type: ignore[arg-type]
    host = Starlette(
        routes=[Route("/metrics", metrics.asgi_app()), Mount(MOUNT, app=app)]
    )
    return host, app, metrics


def client_of(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def test_request_counters_match_the_traffic_sent(
    auth: FakeAuth, store: Store, acme: Headers
) -> None:
    """3 GETs, 2 PATCHes, one 404 and one 401: exactly those counts per label set, and as
    many latency observations per resource and method."""
    host, _, metrics = build(auth, store)
    async with client_of(host) as client:
        for n in range(2):
            assert (await client.patch(META, json={"metadata": {"n": n}}, headers=acme["john"])).status_code == 200
        for _ in range(3):
            assert (await client.get(META, headers=acme["john"])).status_code == 200
        missing = await client.get(URL + "?platform_key=nowhere", headers=acme["john"])
        anonymous = await client.get(META)
    assert (missing.status_code, anonymous.status_code) == (404, 401)
    requests = "platform_metadata_requests_total"
    assert value(metrics, requests, resource="metadata", method="GET", status_class="2xx") == 3
    assert value(metrics, requests, resource="metadata", method="PATCH", status_class="2xx") == 2
    assert value(metrics, requests, resource="metadata", method="GET", status_class="4xx") == 2
    assert value(metrics, requests, resource="metadata", method="PATCH", status_class="4xx") == 0
    seconds = "platform_metadata_request_duration_seconds_count"
    assert value(metrics, seconds, resource="metadata", method="GET") == 5
    assert value(metrics, seconds, resource="metadata", method="PATCH") == 2
    assert value(metrics, "platform_metadata_request_duration_seconds_sum", resource="metadata", method="GET") > 0
    # Each PATCH is one atomic update of the store, whichever store it is.
    operations = "platform_metadata_store_operation_duration_seconds_count"
    assert value(metrics, operations, operation="update") == 2


async def test_counts_stay_exact_across_folds(auth: FakeAuth, store: Store, acme: Headers) -> None:
    """More requests than `FOLD_EVERY` (the tallies count in batches), scraped at a count
    that is not a multiple of it: every request and store operation counted once."""
    host, _, metrics = build(auth, store)
    sent = 2 * FOLD_EVERY + 37
    async with client_of(host) as client:
        for _ in range(sent):
            assert (await client.get(META, headers=acme["john"])).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
    labels = {"resource": "metadata", "method": "GET"}
    assert value(metrics, "platform_metadata_requests_total", status_class="2xx", **labels) == sent
    assert value(metrics, "platform_metadata_request_duration_seconds_count", **labels) == sent
    operations = sum(
        value(metrics, "platform_metadata_store_operation_duration_seconds_count", operation=op)
        for op in ("get", "get_many")
    )
    assert operations >= sent  # at least the record's read per GET, whatever the store


def test_a_reader_thread_folding_meanwhile_loses_and_doubles_nothing() -> None:
    """A shared directory's writer thread folds while the event loop counts (and starts new
    lists): the totals are exactly what was counted."""
    tallies = Tallies((0.01, 0.1, 1.0), (1, 2))
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            tallies.fold()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for n in range(20 * FOLD_EVERY + 5):
            tallies.request("metadata", "GET", 200 if n % 3 else 404, 0.001 * (n % 7))
            tallies.store_operation("get_many", 0.05)
    finally:
        done.set()
        thread.join()
    tallies.fold()
    total = 20 * FOLD_EVERY + 5
    found = tallies.requests
    assert found[("metadata", "GET", "2xx")] + found[("metadata", "GET", "4xx")] == total
    assert found[("metadata", "GET", "4xx")] == len(range(0, total, 3))
    assert sum(tallies.request_seconds[("metadata", "GET")].counts) == total
    assert tallies.store_seconds["get_many"].counts == [0, 1 * total, 0, 0]
    assert tallies.store_seconds["get_many"].total == pytest.approx(0.05 * total)


async def test_every_resource_and_the_scrape_itself(auth: FakeAuth, acme: Headers) -> None:
    """Resources have their own label; the exposition answers in Prometheus's text format."""
    host, _, metrics = build(auth, MemoryStore())
    async with client_of(host) as client:
        await client.get(URL + "policy/?platform_key=acme-corp", headers=acme["john"])
        await client.get(URL + "history/?platform_key=acme-corp", headers=acme["john"])
        await client.get(URL + "users/?platform_key=acme-corp", headers=acme["admin"])
        await client.request("OPTIONS", META, headers=acme["john"])
        scrape = await client.get("/metrics")
    for resource in ("policy", "history", "users"):
        assert value(metrics, "platform_metadata_requests_total", resource=resource, method="GET", status_class="2xx") == 1
    assert value(metrics, "platform_metadata_requests_total", resource="metadata", method="OPTIONS", status_class="2xx") == 1
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain")
    assert 'platform_metadata_requests_total{method="GET",resource="policy",status_class="2xx"} 1.0' in scrape.text


async def test_no_label_a_client_chooses(auth: FakeAuth, acme: Headers) -> None:
    """Made-up methods become `other`; no username, platform key or path is ever a label."""
    host, _, metrics = build(auth, MemoryStore())
    async with client_of(host) as client:
        for method in ("BREW", "PROPFIND", "X-SECRET"):
            assert (await client.request(method, META, headers=acme["john"])).status_code == 405
        await client.patch(META, json={"metadata": {"a": 1}}, headers=acme["jane"])
        scrape = (await client.get("/metrics")).text
    assert value(metrics, "platform_metadata_requests_total", resource="metadata", method="other", status_class="4xx") == 3
    for chosen in ("BREW", "PROPFIND", "X-SECRET", "acme-corp", "jane", "john_doe"):
        assert chosen not in scrape


class OutageStore(MemoryStore):
    """A memory store whose writes can be made to fail as a database outage does."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def update(self, platform_key: str, username: str, change: Change) -> Record:
        if self.down:
            raise StoreUnavailable("SQLite: disk I/O error")
        return await super().update(platform_key, username, change)

    async def check(self) -> None:
        if self.down:
            raise StoreUnavailable("SQLite: disk I/O error")


async def test_503s_are_counted_by_reason_on_a_forced_outage(auth: FakeAuth, acme: Headers) -> None:
    store = OutageStore()
    host, _, metrics = build(auth, store, health=Health())
    async with client_of(host) as client:
        store.down = True
        refused = [await client.patch(META, json={"metadata": {"a": n}}, headers=acme["john"]) for n in range(2)]
        ready = await client.get(f"{MOUNT}/readyz")
        store.down = False
        assert (await client.patch(META, json={"metadata": {"a": 3}}, headers=acme["john"])).status_code == 200
    assert [r.status_code for r in refused] == [503, 503] and ready.status_code == 503
    unavailable = "platform_metadata_unavailable_responses_total"
    # Two requests, one readiness probe; no other reason moved.
    assert value(metrics, unavailable, reason="store_unavailable") == 3
    assert value(metrics, unavailable, reason="too_many_streams") == 0
    assert value(metrics, "platform_metadata_requests_total", resource="metadata", method="PATCH", status_class="5xx") == 2
    # A failed operation is timed too: latency during an outage is what one wants to see.
    assert value(metrics, "platform_metadata_store_operation_duration_seconds_count", operation="update") == 3


async def test_readiness_failures_count_under_their_reason(tmp_path: Path) -> None:
    store = DatabaseStore(f"sqlite:///{tmp_path}/schema.db")
    host, _, metrics = build(FakeAuth(), store, health=Health())
    async with client_of(host) as client:
        assert (await client.get(f"{MOUNT}/readyz")).status_code == 200
        await store.connection.fetch("UPDATE platform_metadata_schema SET version = 42")
        assert (await client.get(f"{MOUNT}/readyz")).status_code == 503
    await store.disconnect()
    unavailable = "platform_metadata_unavailable_responses_total"
    assert value(metrics, unavailable, reason="schema_newer") == 1
    assert value(metrics, "platform_metadata_store_operation_duration_seconds_count", operation="check") == 2


async def test_stream_gauge_moves_and_refusals_count(
    auth: FakeAuth, store: Store, acme: Headers
) -> None:
    """A stream open is counted while open; past `max_streams` the 503 counts as a refusal
    and under its reason; closed, the gauge comes back to 0."""
    settings = EventSettings(max_streams=1, heartbeat=0.3, recheck=0.2, poll_interval=0.05)
    host, app, metrics = build(auth, store, events=settings)
    events = URL + "events/?platform_key=acme-corp"
    async with serving(host) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            async with stream(client, events, acme["john"]) as one:
                await one.next()
                assert value(metrics, "platform_metadata_streams_open") == 1
                async with stream(client, events, acme["jane"]) as two:
                    assert two.response.status_code == 503
            for _ in range(100):
                if app.hub.open_streams == 0:
                    break
                await asyncio.sleep(0.02)
    assert value(metrics, "platform_metadata_streams_open") == 0
    assert value(metrics, "platform_metadata_streams_refused_total", bound="process") == 1
    assert value(metrics, "platform_metadata_streams_refused_total", bound="identity") == 0
    assert value(metrics, "platform_metadata_unavailable_responses_total", reason="too_many_streams") == 1


async def test_per_caller_stream_refusals_name_their_bound(auth: FakeAuth, acme: Headers) -> None:
    _, app, metrics = build(auth, MemoryStore(), events=EventSettings(max_streams_per_identity=1))
    first = await app.hub.subscribe("acme-corp", "john_doe", owner="john_doe")
    with pytest.raises(TooManyStreams):
        await app.hub.subscribe("acme-corp", "john_doe", owner="john_doe")
    assert value(metrics, "platform_metadata_streams_refused_total", bound="identity") == 1
    assert value(metrics, "platform_metadata_streams_open") == 1
    app.hub.unsubscribe(first)
    app.hub.unsubscribe(first)  # twice: counted once
    assert value(metrics, "platform_metadata_streams_open") == 0


async def test_sqlite_group_commits_report_their_sizes(auth: FakeAuth, acme: Headers, tmp_path: Path) -> None:
    """Every update lands in exactly one group: the histogram's sum is the writes made."""
    store = DatabaseStore(f"sqlite:///{tmp_path}/groups.db")
    users = [auth.add("acme-corp", f"u{n}") for n in range(20)]
    host, _, metrics = build(auth, store)
    async with client_of(host) as client:
        answers = await asyncio.gather(
            *(client.patch(META, json={"metadata": {"n": 1}}, headers=h) for h in users)
        )
    await store.disconnect()
    assert all(a.status_code == 200 for a in answers)
    assert value(metrics, "platform_metadata_sqlite_group_commit_updates_sum") == 20
    groups = value(metrics, "platform_metadata_sqlite_group_commit_updates_count")
    assert 1 <= groups <= 20


async def test_a_policy_is_compiled_once_per_stored_version(
    auth: FakeAuth, store: Store, acme: Headers
) -> None:
    host, _, metrics = build(auth, store)
    policy = URL + "policy/?platform_key=acme-corp"
    async with client_of(host) as client:
        put = await client.put(policy, json={"schema": {"type": "object"}}, headers=acme["admin"])
        assert put.status_code == 200
        await client.get(META, headers=acme["john"])
        compiled = value(metrics, "platform_metadata_policy_compilations_total")
        for _ in range(3):
            await client.get(META, headers=acme["john"])
        assert value(metrics, "platform_metadata_policy_compilations_total") == compiled
        await client.put(policy, json={"schema": {"type": "object", "maxProperties": 9}}, headers=acme["admin"])
        await client.get(META, headers=acme["john"])
    assert compiled >= 1
    assert value(metrics, "platform_metadata_policy_compilations_total") == compiled + 1


async def test_history_trims_count_writes_past_retention(
    auth: FakeAuth, store: Store, acme: Headers
) -> None:
    """history_per_user=2: the 3rd and 4th writes each drop the oldest revision; a refused
    write and a DELETE of nothing stored trim nothing."""
    host, _, metrics = build(auth, store, history_per_user=2)
    async with client_of(host) as client:
        await client.delete(META, headers=acme["jane"])  # nothing stored: no change
        for n in range(4):
            assert (await client.patch(META, json={"metadata": {"n": n}}, headers=acme["john"])).status_code == 200
        stale = await client.patch(META, json={"metadata": {"n": 9}}, headers={**acme["john"], "If-Match": '"1"'})
        assert stale.status_code == 412
    assert value(metrics, "platform_metadata_history_trims_total") == 2


async def test_the_middleware_reports_the_same(auth: FakeAuth, acme: Headers) -> None:
    metrics = PrometheusMetrics()
    app = Starlette()
    app.add_middleware(PlatformMetadataMiddleware, auth=auth, store=MemoryStore(), path=URL, metrics=metrics)
    async with client_of(app) as client:
        await client.get(META, headers=acme["john"])
    assert value(metrics, "platform_metadata_requests_total", resource="metadata", method="GET", status_class="2xx") == 1


def test_each_app_has_a_registry_of_its_own_unless_given_the_global_one(auth: FakeAuth) -> None:
    """Many apps in one process (tests) never register a name twice; `REGISTRY` exports with
    the process's other metrics."""
    first, second = PrometheusMetrics(), PrometheusMetrics()
    assert first.registry is not second.registry
    assert isinstance(first.registry, CollectorRegistry)
    shared = PrometheusMetrics(registry=REGISTRY, namespace="spm_test_global")
    try:
        shared.request("metadata", "GET", 200, 0.001)
        assert REGISTRY.get_sample_value(
            "spm_test_global_requests_total",
            {"resource": "metadata", "method": "GET", "status_class": "2xx"},
        ) == 1
    finally:
        REGISTRY.unregister(shared.collector)


def test_without_metrics_the_request_path_is_untouched(auth: FakeAuth) -> None:
    """Off (the default): the store is used as given and no clock is read per request."""
    store = MemoryStore()
    app = PlatformMetadataApp(auth=auth, store=store)
    assert app.services.store is store
    assert all(served.metrics is None for served in app._routes.values())


def test_the_package_works_without_prometheus_client() -> None:
    """`prometheus-client` is an extra: with it missing, the package imports and serves; only
    `starlette_platform_metadata.prometheus` needs it."""
    code = textwrap.dedent(
        """
        import asyncio, sys
        sys.modules["prometheus_client"] = None  # as if not installed
        import httpx
        from starlette_platform_metadata import Health, MemoryStore, PlatformMetadataApp

        class Auth:
            async def authenticate(self, conn):
                return None
            async def access(self, identity, platform_key, target):
                raise AssertionError

        async def main():
            app = PlatformMetadataApp(auth=Auth(), store=MemoryStore(), health=Health())
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                print((await client.get("/?platform_key=a")).status_code,
                      (await client.get("/readyz")).status_code)
            try:
                import starlette_platform_metadata.prometheus
            except ImportError:
                print("extra needed")

        asyncio.run(main())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["401 200", "extra needed"]


def scrape_samples(app: object) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample a scrape of the exposition app answers, by name and sorted labels."""
    from prometheus_client.parser import text_string_to_metric_families

    async def get() -> str:
        async with client_of(Starlette(routes=[Route("/metrics", app)])) as client:  # type: ignore[arg-type]
            return (await client.get("/metrics")).text

    text = asyncio.run(get())
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_several_workers_are_summed_through_a_shared_directory(tmp_path: Path) -> None:
    """Each worker writes its figures to the directory; any worker's scrape sums them all:
    counters and histograms of every worker, gauges of running workers only."""
    one = PrometheusMetrics(directory=tmp_path, interval=0.05)
    two = PrometheusMetrics(directory=tmp_path, interval=0.05)
    try:
        for metrics, count in ((one, 3), (two, 4)):
            for _ in range(count):
                metrics.request("metadata", "GET", 200, 0.0007)
            metrics.stream_opened()
        two.unavailable("store_unavailable")
        two.close()  # exits: its last figures written
        # A worker that died long ago: its counts stay, its gauge no longer counts.
        finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                                  capture_output=True, text=True, check=True)
        dead = int(finished.stdout)
        (tmp_path / f"platform_metadata-{dead}-00000000.prom").write_text(
            "# TYPE platform_metadata_requests_total counter\n"
            'platform_metadata_requests_total{method="GET",resource="metadata",status_class="2xx"} 5.0\n'
            "# TYPE platform_metadata_streams_open gauge\n"
            "platform_metadata_streams_open 7.0\n"
        )
        found = scrape_samples(one.asgi_app())
    finally:
        one.close()
    get = (("method", "GET"), ("resource", "metadata"), ("status_class", "2xx"))
    assert found[("platform_metadata_requests_total", get)] == 3 + 4 + 5
    count = (("method", "GET"), ("resource", "metadata"))
    assert found[("platform_metadata_request_duration_seconds_count", count)] == 7
    assert found[("platform_metadata_request_duration_seconds_bucket", (("le", "0.001"), *count))] == 7
    # `two` has exited but runs in this very process, so its gauge still counts: 1 + 1.
    assert found[("platform_metadata_streams_open", ())] == 2
    assert found[("platform_metadata_unavailable_responses_total", (("reason", "store_unavailable"),))] == 1


def test_a_worker_writes_its_figures_every_interval(tmp_path: Path) -> None:
    metrics = PrometheusMetrics(directory=tmp_path, interval=0.05)
    try:
        assert metrics.shared is not None
        first = metrics.shared.path.read_text()
        metrics.policy_compiled()
        for _ in range(100):
            if "platform_metadata_policy_compilations_total 1.0" in metrics.shared.path.read_text():
                break
            time.sleep(0.02)
        else:
            raise AssertionError("not written within 2 s")
    finally:
        metrics.close()
    assert "platform_metadata_policy_compilations_total 0.0" in first
