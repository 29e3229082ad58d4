"""`scripts/topology` driven as outside tools drive it: PostgreSQL, PgBouncer, two example
hosts and nginx, brought up once per test session (`topology` fixture in conftest.py).

Needs PostgreSQL's binaries, PgBouncer and nginx: without them the tests skip, and under
`CI=true` (where `.ci/run` installs them) they fail.  The topology watches this process: if
the test run dies, its watchdog stops every server; `down` runs at the end either way."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from example_host.db import HostDB

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "topology"
#: The live-change settings test_events.py serves with (its `FAST`), for every host worker.
EVENTS_ENV = {
    "EXAMPLE_HOST_EVENTS_HEARTBEAT": "0.3",
    "EXAMPLE_HOST_EVENTS_RECHECK": "0.2",
    "EXAMPLE_HOST_EVENTS_POLL_INTERVAL": "0.05",
}

__all__ = ["Topology", "bring_up", "missing_tools"]


def _tool(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def missing_tools() -> list[str]:
    missing = [name for name in ("pgbouncer", "nginx") if _tool(name) is None]
    bindir = subprocess.run([ROOT / "scripts" / "pg-cluster", "bindir"], capture_output=True, check=False)
    if bindir.returncode:
        missing.append("PostgreSQL's server binaries")
    return missing


@dataclass
class Topology:
    folder: Path
    base: str
    database_url: str
    pooled_url: str

    def state(self) -> dict[str, object]:
        state: dict[str, object] = json.loads((self.folder / "topology.json").read_text())
        return state

    def host(self, n: int) -> str:
        """Host `n`'s address as nginx names it in `X-Upstream`."""
        ports = self.state()["ports"]
        assert isinstance(ports, dict)
        return f"127.0.0.1:{ports[f'host{n}']}"

    def run(self, *args: str) -> None:
        done = subprocess.run(
            [sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr

    def kill(self, n: int) -> None:
        self.run("kill", str(self.folder), str(n))

    def start(self, n: int) -> None:
        self.run("start", str(self.folder), str(n))

    def add_users(self, platform: str, names: list[str], admin: bool = False) -> dict[str, str]:
        """Members (or admins) of `platform`, created with it if need be; their tokens.  As
        `add-platform` and `add-users` make them on DATABASE_URL, without a process each."""

        async def add() -> list[str]:
            async with HostDB(self.database_url) as db:
                await db.add_platform(platform)
                return await db.add_users(platform, [(name, admin) for name in names])

        with ThreadPoolExecutor(1) as thread:  # a loop of its own, whoever calls
            keys = thread.submit(asyncio.run, add()).result()
        return dict(zip(names, keys))

    def pgbouncer(self, command: str) -> list[dict[str, str]]:
        """A `SHOW ...` of PgBouncer's admin console, one dict per row (psql: the console
        speaks only the simple query protocol)."""
        state = self.state()
        ports = state["ports"]
        assert isinstance(ports, dict)
        bindir = subprocess.run(
            [ROOT / "scripts" / "pg-cluster", "bindir"], capture_output=True, text=True,
            check=False,
        ).stdout.strip()
        done = subprocess.run(
            [f"{bindir}/psql", "-h", "127.0.0.1", "-p", str(ports["pgbouncer"]), "-U",
             "postgres", "-d", "pgbouncer", "--csv", "-c", command],
            capture_output=True, text=True, timeout=30,
            env={**os.environ, "PGPASSWORD": str(state["password"])},
            check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        header, *rows = [line.split(",") for line in done.stdout.strip().splitlines()]
        return [dict(zip(header, row)) for row in rows]


def bring_up() -> Iterator[Topology]:
    """`scripts/topology up` in a fresh folder, `down` afterwards (and the folder removed)."""
    missing = missing_tools()
    if missing:
        message = f"the topology needs {', '.join(missing)} (.ci/run installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    # Under /tmp: as root the servers run as `postgres`, which must reach the folder.
    folder = Path(tempfile.mkdtemp(prefix="spm-topology-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(EVENTS_ENV, TOPOLOGY_PYTHON=sys.executable)
    try:
        done = subprocess.run(
            [sys.executable, SCRIPT, "up", str(folder), "--watch", str(os.getpid())],
            capture_output=True, text=True, timeout=300, env=env,
            check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        printed = dict(
            line.split("=", 1) for line in done.stdout.splitlines() if "=" in line
        )
        yield Topology(
            folder, printed["BASE"], printed["DATABASE_URL"], printed["POOLED_DATABASE_URL"]
        )
    finally:
        subprocess.run([sys.executable, SCRIPT, "down", str(folder)], timeout=120, check=False)
        shutil.rmtree(folder, ignore_errors=True)
