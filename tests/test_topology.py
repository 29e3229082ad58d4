"""The multi-host topology, broken on purpose (`scripts/topology`: PostgreSQL, PgBouncer in
transaction mode, two example hosts of two workers each, nginx in front).

A write load of 200 writers over 100 users runs while host 1 is killed with SIGKILL and
started again: every acknowledged write is kept, none is applied twice, and nothing answers
but 200 or 503 (503 only around the kill and the restart); a stream held on the killed host
resumes on the other one with `Last-Event-ID`, missing nothing; PgBouncer's pool is far
smaller than the hosts' pools together, and nothing fails for it."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from .conftest import URL
from .sse import Stream, stream
from .test_example_host import auth
from .topology import SCRIPT, Topology

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

USERS = [f"u{n:03d}" for n in range(100)]
#: Ten platforms of ten users: every write to a platform takes its change clock's row lock
#: until COMMIT, so one platform's writes queue one after the other (docs/scaling.md).
PLATFORMS = [f"load-{n}" for n in range(10)]
WRITERS = 200  # two per user, each with a key of its own


def platform(user: str) -> str:
    return PLATFORMS[int(user[1:]) % len(PLATFORMS)]
#: Attempts per writer at most: two writers' revisions stay within the 100 kept per user.
MAX_ATTEMPTS = 45
#: Around the kill and the restart, requests may get 503 (a PATCH in flight on the killed
#: host: nginx must not send it again); outside, at most 1 %.
MOMENT = 1.0
META = f"{URL}?platform_key=acme-corp"
#: What the hosts' pools may ask of PgBouncer: 2 hosts x 2 workers x (the store's pool and
#: the host tables' pool, asyncpg's 10 each).
HOSTS_POOLS = 2 * 2 * (10 + 10)


@dataclass
class Attempt:
    writer: int
    value: int
    started: float
    ended: float
    status: int  # 0: no HTTP answer at all
    version: int | None
    upstream: str  # every host nginx tried, `a, b`


def last_upstream(response: httpx.Response) -> str:
    """The host that answered: nginx lists every one it tried (`a, b`) in `X-Upstream`."""
    tried: str = response.headers.get("x-upstream", "")
    return tried.rsplit(",", 1)[-1].strip()


async def write_load(
    client: httpx.AsyncClient, writer: int, token: str, stop: asyncio.Event, out: list[Attempt]
) -> None:
    """PATCH this writer's own key to 1, 2, 3, ...: every attempt a new value, so a revision
    that changed nothing would be a PATCH applied twice."""
    user, key = USERS[writer % len(USERS)], f"w{writer:03d}"
    rng = random.Random(writer)
    await asyncio.sleep(rng.uniform(0, 3.0))
    for value in range(1, MAX_ATTEMPTS + 1):
        if stop.is_set():
            return
        started = time.monotonic()
        try:
            response = await client.patch(
                f"{URL}?platform_key={platform(user)}",
                json={"metadata": {key: value}},
                headers=auth(token),
            )
        except httpx.HTTPError:
            out.append(Attempt(writer, value, started, time.monotonic(), 0, None, ""))
            continue
        version = None
        if response.status_code == 200:
            body = response.json()
            assert (body["username"], body["metadata"][key]) == (user, value)
            version = int(response.headers["etag"].strip('"'))
        out.append(
            Attempt(writer, value, started, time.monotonic(), response.status_code, version,
                    response.headers.get("x-upstream", ""))
        )  # fmt: skip
        # Paced below what a shared two-core machine serves, so that latency stays low
        # and the moments of the kill and the restart stay short.
        await asyncio.sleep(rng.uniform(2.0, 5.0))


async def back_in_nginx(
    client: httpx.AsyncClient, topology: Topology, headers: dict[str, str]
) -> None:
    """Wait until nginx sends requests to host 1 again: after a failure it tries a host only
    once per `fail_timeout` until one request succeeds there."""
    deadline = time.monotonic() + 15
    while last_upstream(await client.get(META, headers=headers)) != topology.host(1):
        assert time.monotonic() < deadline, "nginx never went back to host 1"
        await asyncio.sleep(0.2)


def transactions(topology: Topology) -> int:
    """Transactions PgBouncer has passed on to the metadata's database so far."""
    stats = topology.pgbouncer("SHOW STATS")
    return sum(int(row["total_xact_count"]) for row in stats if row["database"] == "spm_test")


def served_by(attempt: Attempt) -> str:
    return attempt.upstream.rsplit(",", 1)[-1].strip()


def in_moments(attempt: Attempt, moments: list[tuple[float, float]]) -> bool:
    return any(attempt.started < end and attempt.ended > begin for begin, end in moments)


async def history(client: httpx.AsyncClient, token: str, user: str) -> list[Any]:
    response = await client.get(
        f"{URL}history/?platform_key={platform(user)}&limit=100", headers=auth(token)
    )
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["next"] is None
    return list(reversed(page["results"]))


async def test_a_host_killed_under_write_load_loses_no_acknowledged_write(
    topology: Topology,
) -> None:
    tokens: dict[str, str] = {}
    for key in PLATFORMS:
        tokens.update(topology.add_users(key, [u for u in USERS if platform(u) == key]))
    before = transactions(topology)
    attempts: list[Attempt] = []
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=WRITERS + 10, max_keepalive_connections=WRITERS + 10)
    async with httpx.AsyncClient(base_url=topology.base, timeout=30, limits=limits) as client:
        load = [
            asyncio.create_task(
                write_load(client, w, tokens[USERS[w % len(USERS)]], stop, attempts)
            )
            for w in range(WRITERS)
        ]
        await asyncio.sleep(4)
        kill_at = time.monotonic()
        await asyncio.to_thread(topology.kill, 1)
        killed = time.monotonic()
        await asyncio.sleep(3)
        start_at = time.monotonic()
        await asyncio.to_thread(topology.start, 1)
        started = time.monotonic()
        await asyncio.sleep(5)
        stop.set()
        await asyncio.gather(*load)
        revisions = {user: await history(client, tokens[user], user) for user in USERS}

    statuses = {a.status for a in attempts}
    assert statuses <= {200, 503}, statuses
    moments = [(kill_at, killed + MOMENT), (start_at, started + MOMENT)]
    outside = [a for a in attempts if not in_moments(a, moments)]
    refused = [a for a in outside if a.status == 503]
    assert len(outside) > 200  # how many depends on how busy the machine is
    assert len(refused) <= len(outside) / 100, (len(refused), len(outside))
    # Host 2 alone kept serving while host 1 was down.
    alone = [a for a in outside if killed + MOMENT < a.started and a.ended < start_at]
    assert len(alone) > 50
    assert {served_by(a) for a in alone if a.status == 200} == {topology.host(2)}
    # Both hosts served before the kill and after the restart.
    assert {served_by(a) for a in attempts if a.ended < kill_at} == {topology.host(1), topology.host(2)}
    assert topology.host(1) in {served_by(a) for a in attempts if a.started > started + MOMENT}

    acked: dict[int, dict[int, int]] = defaultdict(dict)  # writer -> value -> version
    unknown: dict[int, set[int]] = defaultdict(set)  # 503: may or may not have been applied
    for a in attempts:
        if a.status == 200:
            assert a.version is not None
            acked[a.writer][a.value] = a.version
        else:
            unknown[a.writer].add(a.value)
    for n, user in enumerate(USERS):
        kept = revisions[user]
        # Every version from 1 up, none skipped: each change is one revision.
        assert [r["version"] for r in kept] == list(range(1, len(kept) + 1))
        applied: dict[int, dict[int, int]] = defaultdict(dict)
        for r in kept:
            # Every attempt writes a value its key never had: a revision that changed
            # nothing is a PATCH applied twice.
            assert len(r["changed_keys"]) == 1, r
            writer = int(r["changed_keys"][0][1:])
            value = r["metadata"][r["changed_keys"][0]]
            assert value not in applied[writer], r
            applied[writer][value] = r["version"]
        for writer in (n, n + len(USERS)):
            # Every acknowledged write is there, as the version its answer named.
            assert acked[writer].items() <= applied[writer].items(), writer
            # What else was applied got a 503, never a 200 that went missing.
            assert set(applied[writer]) - set(acked[writer]) <= unknown[writer]
            final = kept[-1]["metadata"][f"w{writer:03d}"]
            assert final == max(applied[writer])

    # Through PgBouncer: at least a transaction per acknowledged write.
    assert transactions(topology) - before >= sum(len(v) for v in acked.values())


def test_pgbouncer_pools_far_fewer_connections_than_the_hosts_may_ask_for(
    topology: Topology,
) -> None:
    """The pool in front of PostgreSQL is smaller than the hosts' pools together (the write
    load above ran through it without a failure), and in transaction mode."""
    databases = [d for d in topology.pgbouncer("SHOW DATABASES") if d["name"] == "spm_test"]
    assert len(databases) == 1
    assert 0 < int(databases[0]["pool_size"]) < HOSTS_POOLS / 4
    pools = [p for p in topology.pgbouncer("SHOW POOLS") if p["database"] == "spm_test"]
    assert [p["pool_mode"] for p in pools] == ["transaction"]
    servers = [s for s in topology.pgbouncer("SHOW SERVERS") if s["database"] == "spm_test"]
    assert len(servers) <= int(databases[0]["pool_size"])


async def read_until(events: Stream, version: int, seen: list[int], last: list[str]) -> None:
    while not seen or seen[-1] < version:
        event = await events.next(timeout=10)
        seen.append(event.data["version"])
        last[0] = event.id or last[0]


async def test_a_stream_on_a_killed_host_resumes_on_the_other_missing_nothing(
    topology: Topology,
) -> None:
    token = topology.add_users("acme-corp", ["streamer"])["streamer"]
    me = auth(token)
    meta = f"{URL}?platform_key=acme-corp"
    events_url = f"{URL}events/?platform_key=acme-corp"
    written: list[int] = []
    stop = asyncio.Event()

    async def writer(client: httpx.AsyncClient) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            response = await client.patch(meta, json={"metadata": {"n": n}}, headers=me)
            assert response.status_code in (200, 503), response.text
            if response.status_code == 200:
                written.append(int(response.headers["etag"].strip('"')))
            await asyncio.sleep(0.02)

    seen: list[int] = []
    last = [""]
    async with httpx.AsyncClient(base_url=topology.base, timeout=30) as client:
        await back_in_nginx(client, topology, me)
        # nginx alternates between the hosts: open streams until one is held by host 1.
        for _ in range(6):
            response = await client.send(client.build_request("GET", events_url, headers=me), stream=True)
            if last_upstream(response) == topology.host(1):
                break
            await response.aclose()
        else:
            pytest.fail("no stream landed on host 1")
        events = Stream(response)
        snapshot = await events.next()
        assert snapshot.event == "snapshot"
        seen.append(snapshot.data["version"])
        last[0] = snapshot.id or ""
        writing = asyncio.create_task(writer(client))
        await read_until(events, seen[0] + 5, seen, last)
        await asyncio.to_thread(topology.kill, 1)
        with pytest.raises((EOFError, httpx.HTTPError)):
            await read_until(events, 10**9, seen, last)
        await response.aclose()
        await asyncio.sleep(0.5)  # writes go on while no stream is open
        resumed = await client.send(
            client.build_request("GET", events_url, headers={**me, "Last-Event-ID": last[0]}),
            stream=True,
        )
        assert (resumed.status_code, last_upstream(resumed)) == (200, topology.host(2))
        await asyncio.sleep(0.5)
        stop.set()
        await writing
        await read_until(Stream(resumed), written[-1], seen, last)
        await resumed.aclose()
    await asyncio.to_thread(topology.start, 1)
    # Every version once, in order, none skipped: the first stream's and the resumed one's.
    assert seen == list(range(seen[0], written[-1] + 1))
    assert len(seen) > 20


async def test_live_changes_listen_on_postgresql_not_through_pgbouncer(
    topology: Topology,
) -> None:
    """Each worker that serves a stream holds one LISTEN connection, straight to PostgreSQL:
    none of PgBouncer's server connections is listening."""
    me = auth(topology.add_users("acme-corp", ["listener"])["listener"])
    events_url = f"{URL}events/?platform_key=acme-corp"
    async with (
        httpx.AsyncClient(base_url=topology.base, timeout=10) as client,
        stream(client, events_url, me) as events,
    ):
        assert (await events.next()).event == "snapshot"
        connection = await asyncpg.connect(topology.database_url)
        try:
            rows = await connection.fetch(
                "SELECT client_port FROM pg_stat_activity WHERE query LIKE 'LISTEN %'"
            )
        finally:
            await connection.close()
    listening = {row[0] for row in rows}
    assert listening
    bouncer_ports = {int(s["local_port"]) for s in topology.pgbouncer("SHOW SERVERS")}
    assert bouncer_ports  # PgBouncer holds server connections, and none of them listens
    assert not bouncer_ports & listening


def test_the_watchdog_stops_everything_once_the_watched_process_is_gone(tmp_path: Path) -> None:
    """`up --watch PID` leaves `scripts/topology watch`: when PID ends, however it ends, every
    server is stopped (here a stand-in for a host: a process group of its own)."""
    host = subprocess.Popen(["sleep", "120"], start_new_session=True)
    watched = subprocess.Popen(["sleep", "120"])
    (tmp_path / "topology.json").write_text(json.dumps({"pids": {"host1": host.pid}}))
    watchdog = subprocess.Popen(
        [sys.executable, SCRIPT, "watch", str(tmp_path), str(watched.pid)]
    )
    try:
        time.sleep(1)
        assert host.poll() is None  # still watching
        watched.kill()
        watched.wait()
        assert watchdog.wait(timeout=20) == 0
        assert host.wait(timeout=5) == -signal.SIGTERM
        assert (tmp_path / "topology.down.json").exists()
    finally:
        for proc in (host, watched, watchdog):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


async def test_nginx_sends_a_get_again_but_never_a_patch_that_reached_a_dying_host(
    topology: Topology,
) -> None:
    """nginx's retry rule, shown deterministically: host 1 is frozen (SIGSTOP), so requests
    nginx hands it wait, then it is killed.  Each GET it held is sent again to host 2 and
    answered 200; each PATCH it held had been sent already, so it gets the 503, and is not
    applied: host 2 never saw it."""
    names = [f"retry{n}" for n in range(30)]
    tokens = topology.add_users("acme-corp", names)
    pids = topology.state()["pids"]
    assert isinstance(pids, dict)
    async with httpx.AsyncClient(base_url=topology.base, timeout=30) as client:
        await back_in_nginx(client, topology, auth(tokens[names[0]]))
    os.killpg(pids["host1"], signal.SIGSTOP)
    try:
        async with httpx.AsyncClient(base_url=topology.base, timeout=30) as client:
            sent: list[tuple[str, str, asyncio.Task[httpx.Response]]] = []
            held = {"PATCH": 0, "GET": 0}
            # nginx alternates between the hosts: a request still unanswered after a moment
            # is held by frozen host 1; go on until it holds two of each.
            for name in names:
                if min(held.values()) >= 2:
                    break
                method = min(held, key=lambda m: held[m])
                body = {"json": {"metadata": {"sent": name}}} if method == "PATCH" else {}
                task = asyncio.create_task(
                    client.request(method, META, headers=auth(tokens[name]), **body)
                )
                done, _ = await asyncio.wait({task}, timeout=0.5)
                held[method] += not done
                sent.append((method, name, task))
            assert min(held.values()) >= 2, [(m, t.done() and t.result().headers) for m, _, t in sent]
            await asyncio.to_thread(topology.kill, 1)
            for method, name, task in sent:
                answer = await task
                tried = answer.headers["x-upstream"]
                if method == "GET":  # host 1's were sent on to host 2
                    assert (answer.status_code, tried.split(", ")[-1]) == (200, topology.host(2))
                    continue
                stored = (await client.get(META, headers=auth(tokens[name]))).json()["metadata"]
                if tried == topology.host(1):  # held by host 1: refused, and not applied
                    assert (answer.status_code, stored) == (503, {})
                else:
                    assert (answer.status_code, tried, stored) == (200, topology.host(2), {"sent": name})
            assert sum(", " in task.result().headers["x-upstream"] for _, _, task in sent) >= 2
    finally:
        await asyncio.to_thread(topology.kill, 1)  # frozen or dead: gone, then started again
        await asyncio.to_thread(topology.start, 1)
