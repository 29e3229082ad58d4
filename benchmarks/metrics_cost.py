"""What Prometheus metrics cost the request path, measured in one process, no network.

    .venv/bin/python benchmarks/metrics_cost.py [--requests 2000] [--rounds 7] [--shared] [--memory]

Two apps on two SQLite files, one with `metrics=PrometheusMetrics()` and one without, answer
the same GETs and PATCHes called straight through ASGI (no server, no socket: only the
endpoint's own work, so the ratio is the most metrics can take from a served request, whose
server and network time dilute it).  Rounds alternate which app goes first; the report gives
the median CPU microseconds per request of each and their ratio.  `--shared` gives the
metrics app a shared directory, as `serve --workers N` does (its writer thread included);
`--memory` runs both on `MemoryStore` (no commit thread: steadier PATCH figures).

A companion to `run.py --metrics-compare` (served, wrk): on a shared machine the served
run's rounds can differ by 2-3x, where this one's CPU time per request holds within a few
percent.  Not part of the package or the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per batch (2000)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds (7)")
    parser.add_argument(
        "--shared", action="store_true", help="a shared directory, as with several workers"
    )
    parser.add_argument(
        "--memory", action="store_true", help="MemoryStore instead of SQLite (no commit thread)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=1,
        help="requests in flight at once, each of another user (SQLite groups their writes)",
    )  # fmt: skip
    return parser.parse_args()


ARGS = parse_args()
TMP = Path(tempfile.mkdtemp(prefix="spm-metrics-cost-"))
if ARGS.shared:  # as `serve --workers N` sets it for its workers
    (TMP / "shared").mkdir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(TMP / "shared")

from starlette.requests import HTTPConnection  # noqa: E402

from starlette_platform_metadata import (  # noqa: E402
    DatabaseStore,
    Identity,
    MemoryStore,
    PlatformAccess,
    PlatformMetadataApp,
)
from starlette_platform_metadata.prometheus import PrometheusMetrics  # noqa: E402

PLATFORM, USER = "acme-corp", "john_doe"


class Auth:
    async def authenticate(self, conn: HTTPConnection) -> Identity | None:
        # `Token <username>`: each request in flight acts for its own user.
        return Identity(conn.headers["authorization"].partition(" ")[2])

    async def access(self, identity: Identity, platform_key: str, target: str | None) -> PlatformAccess:
        return PlatformAccess(platform_exists=True, is_member=True, is_admin=False, target_is_member=False)


def scope(method: str, user: str = USER) -> dict[str, Any]:
    headers = [(b"authorization", f"Token {user}".encode()), (b"host", b"bench")]
    if method == "PATCH":
        headers.append((b"content-type", b"application/json"))
    return {
        "type": "http", "method": method, "path": "/", "raw_path": b"/", "root_path": "",
        "query_string": f"platform_key={PLATFORM}".encode(), "headers": headers,
        "http_version": "1.1", "scheme": "http", "server": ("bench", 80), "client": ("c", 1),
    }  # fmt: skip


async def batch(app: PlatformMetadataApp, method: str, count: int) -> float:
    """CPU microseconds per request over `count` requests (each PATCH sets one of 8 keys)."""
    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def one(n: int, user: str) -> None:
        body = b'{"metadata": {"k%d": %d}}' % (n % 8, n) if method == "PATCH" else b""

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        await app(scope(method, user), receive, send)  # type: ignore[arg-type]

    wide = ARGS.concurrency
    started = time.process_time()
    for n in range(0, count, wide):
        if wide == 1:
            await one(n, USER)
        else:
            await asyncio.gather(*(one(n + i, f"user{i}") for i in range(wide)))
    elapsed = time.process_time() - started
    assert set(statuses) == {200}, set(statuses)
    return elapsed / len(statuses) * 1e6


async def main() -> None:
    apps = {}
    closing: list[PrometheusMetrics] = []
    for name in ("metrics", "off"):
        store = MemoryStore() if ARGS.memory else DatabaseStore(f"sqlite:///{TMP / name}.db")
        if isinstance(store, DatabaseStore):
            await store.connect()
        metrics = PrometheusMetrics() if name == "metrics" else None
        apps[name] = PlatformMetadataApp(auth=Auth(), store=store, metrics=metrics)
        if metrics is not None:
            closing.append(metrics)
    for app in apps.values():  # warm up: tables, caches, the record
        await batch(app, "PATCH", 200)
        await batch(app, "GET", 200)
    cost: dict[tuple[str, str], list[float]] = {}
    for round_ in range(ARGS.rounds):
        order = list(apps) if round_ % 2 == 0 else list(reversed(apps))
        for method in ("GET", "PATCH"):
            for name in order:
                cost.setdefault((name, method), []).append(
                    await batch(apps[name], method, ARGS.requests)
                )
    mode = "a shared directory" if ARGS.shared else "one process"
    mode += ", MemoryStore" if ARGS.memory else ", SQLite"
    mode += f", {ARGS.concurrency} in flight" if ARGS.concurrency > 1 else ""
    print(f"CPU us per request, medians of {ARGS.rounds} rounds of {ARGS.requests} ({mode}):")
    for method in ("GET", "PATCH"):
        on = statistics.median(cost[("metrics", method)])
        off = statistics.median(cost[("off", method)])
        print(f"  {method:<5} metrics {on:7.1f}  off {off:7.1f}  off/metrics (throughput ratio) "
              f"{off / on:.3f}  added {on - off:+.1f} us")
    for metrics in closing:
        metrics.close()
    for app in apps.values():
        if isinstance(app.store, DatabaseStore):
            await app.store.disconnect()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
