"""The example host's memory per export and per replaying live-change stream (issue 22): the
resident set of the server process(es) while clients take everything, or nothing.

    .venv/bin/python benchmarks/memory.py [--export-mb 64] [--exports 10] [--streams 20 [60]]
        [--rounds 3] [--workers N] [--database postgresql://...] [--send-timeout SECONDS]
        [--code DIR] [--json FILE]

Serves `python -m example_host serve` on 127.0.0.1 (a free port, a fresh SQLite file, or a
fresh database on the PostgreSQL server `--database` names, dropped afterwards), seeds it
through the CLI (`add-platform`, `add-users`) and the public API (an admin import of
`--export-mb` of ~62 KB documents; one user PUT `--revisions` times), then per round:

- export, read: one export read to the end by an ordinary client: the rise of the peak RSS;
- export, stalled: `--exports` raw sockets send the export's request and never read: RSS while
  they sit, after the send timeout, with as many more opened then ("again": the allocator
  reuses what the first let go, so only what they still hold shows as a rise), after close;
- replay, stalled: `--streams` raw sockets open the replaying user's stream with
  `Last-Event-ID: v.0` (every kept revision replayed) and never read: the same figures.

Each probe gets a server of its own (freed memory stays in a process's heap and would hide the
next probe's growth).  RSS is VmRSS of `/proc/<pid>/status`, summed over the server and its
worker processes; the peak is VmHWM after `/proc/<pid>/clear_refs` reset it at the start of
the probe.  "Ended by the server" counts uvicorn's log lines for responses the app gave up
(a send timeout).  Medians over the rounds.  Everything is bounded in time (`--max-seconds`)
and each server is stopped in a finally block.  Not part of the package or the test suite;
see benchmarks/README.md, "Memory per export and per stream".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from listing import drop_database, postgres_database  # noqa: E402
from run import Abort, Server, child_env, free_port, run_cli  # noqa: E402

from starlette_platform_metadata.events import EventSettings  # noqa: E402

MOUNT = "/api/core/users/platform-metadata/"
PLATFORM = "bench-memory"
ADMIN = "mem_admin"
REPLAYER = "mem_replay"
MIB = 1024 * 1024
EXPORT = f"{MOUNT}users/?platform_key={PLATFORM}"
EVENTS = f"{MOUNT}events/?platform_key={PLATFORM}"
DOC_BYTES = 62_000  # under the default max_document_bytes (64 KiB), as the probe's were
IMPORT_BYTES = 3 * MIB  # per import request, under the default max_import_bytes (4 MiB)
# uvicorn's words when an app returns with its response unfinished: the export or the
# stream was ended by the app (a send timeout), not by the client.
DROPPED = "returned without completing response"


# --------------------------------------------------------------------------- process memory


def server_pids(pid: int) -> list[int]:
    """The server and its descendants (uvicorn's workers with --workers)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                found += server_pids(int(child))
    return found


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise Abort(f"no {field} for {pid}")


def rss_mib(pids: Sequence[int], field: str = "VmRSS") -> float:
    """Summed over the processes; `field="VmHWM"`: their peaks."""
    return sum(status_kib(pid, field) for pid in pids) / 1024


def reset_peak(pids: Sequence[int]) -> None:
    """VmHWM back to the current RSS (Linux: "5" to clear_refs), so a probe's peak is its own."""
    for pid in pids:
        Path(f"/proc/{pid}/clear_refs").write_text("5")


# --------------------------------------------------------------------------- HTTP


def call(
    port: int, method: str, path: str, token: str, body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request(method, path, body=body, headers={**authorization(token), **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def authorization(token: str) -> dict[str, str]:
    return {"Authorization": f"Token {token}"}


def raw_request(path: str, token: str, headers: dict[str, str]) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Token {token}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def document(size: int, n: int) -> dict[str, Any]:
    # Random text: nothing a store or a compressor could share between documents.
    return {"n": n, "blob": os.urandom(size // 2).hex()}


def read_export(port: int, token: str) -> dict[str, Any]:
    """One export read to the end: its bytes, lines, seconds and SHA-256."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    digest = hashlib.sha256()
    size = lines = 0
    started = time.monotonic()
    try:
        headers = {**authorization(token), "Accept": "application/x-ndjson"}
        conn.request("GET", EXPORT, headers=headers)
        response = conn.getresponse()
        if response.status != 200:
            raise Abort(f"export answered {response.status}: {response.read()[:200]!r}")
        while piece := response.read(64 * 1024):
            digest.update(piece)
            size += len(piece)
            lines += piece.count(b"\n")
    finally:
        conn.close()
    seconds = round(time.monotonic() - started, 2)
    return {"bytes": size, "lines": lines, "seconds": seconds, "sha256": digest.hexdigest()}


# --------------------------------------------------------------------------- seeding


def add_users(python: str, database: str, tmp: Path, names: list[str]) -> dict[str, str]:
    """The users (the first a tenant admin) through the CLI: username -> token."""
    run_cli(python, ["add-platform", PLATFORM], database, tmp)
    listing = tmp / "users.txt"
    listing.write_text("".join(f"{name}{' --admin' * (i == 0)}\n" for i, name in enumerate(names)))
    out = run_cli(python, ["add-users", "--platform", PLATFORM, str(listing)], database, tmp)
    return dict(line.split() for line in out.splitlines() if line.strip())


def seed_export(port: int, token: str, names: list[str], doc_bytes: int) -> None:
    """Every name's document through the admin import, a few MB per request."""
    batch: list[bytes] = []
    for i, name in enumerate(names):
        batch.append(json.dumps({"username": name, "metadata": document(doc_bytes, i)}).encode())
        if sum(map(len, batch)) > IMPORT_BYTES - doc_bytes * 2 or i == len(names) - 1:
            status, body = call(port, "POST", EXPORT, token, b"\n".join(batch) + b"\n",
                                {"Content-Type": "application/x-ndjson"})  # fmt: skip
            if status != 200:
                raise Abort(f"import answered {status}: {body[:300]!r}")
            batch.clear()


def seed_replay(port: int, token: str, revisions: int, doc_bytes: int) -> None:
    """The replaying user's own PUTs: `revisions` versions of `doc_bytes` each."""
    path = f"{MOUNT}?platform_key={PLATFORM}"
    for n in range(revisions):
        body = json.dumps({"metadata": document(doc_bytes, n)}).encode()
        status, answer = call(port, "PUT", path, token, body, {"Content-Type": "application/json"})
        if status != 200:
            raise Abort(f"PUT answered {status}: {answer[:300]!r}")


# --------------------------------------------------------------------------- probes


class Probe:
    """A running server's memory, sampled; and what its log says it dropped."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def pids(self) -> list[int]:
        return server_pids(self.server.process.pid)

    def rss(self) -> float:
        self.server.check_alive()
        return rss_mib(self.pids())

    def dropped(self) -> int:
        return self.server.log_path.read_text(errors="replace").count(DROPPED)

    def settle(self, seconds: float) -> float:
        """The RSS once `seconds` have passed: after the work a step started, not during it."""
        time.sleep(seconds)
        return self.rss()


def probe_read(probe: Probe, token: str) -> dict[str, Any]:
    pids = probe.pids()
    before = probe.rss()
    reset_peak(pids)
    result = read_export(probe.server.port, token)
    return {**result, "before": before, "peak": rss_mib(pids, "VmHWM"), "after": probe.settle(1.0)}


@contextlib.contextmanager
def stalled(port: int, request: bytes, count: int) -> Iterator[list[socket.socket]]:
    """`count` connections that send `request` and never read, closed on the way out."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sockets.append(sock)
            sock.sendall(request)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def probe_stalled(
    probe: Probe, request: bytes, count: int, hold: float, send_timeout: float
) -> dict[str, Any]:
    """RSS before, while `count` clients sit unread, after the send timeout, with `count` more
    (the first still connected), and after all close.

    RSS seldom falls when memory is freed (the allocator keeps it for reuse), so "after the
    timeout" alone cannot tell freed from held; the second batch can: what the first let go
    is used again (no rise), what it still holds is not (a rise like the first)."""
    pids = probe.pids()
    before = probe.rss()
    dropped = probe.dropped()
    reset_peak(pids)
    started = time.monotonic()
    with stalled(probe.server.port, request, count):
        held = probe.settle(hold)
        time.sleep(max(0.0, started + hold + send_timeout + 3.0 - time.monotonic()))
        after_timeout = probe.rss()
        ended = probe.dropped() - dropped
        with stalled(probe.server.port, request, count):
            again = probe.settle(hold)
    after_close = probe.settle(2.0)
    peak = rss_mib(pids, "VmHWM")
    return {
        "count": count, "before": before, "peak": peak, "held": held,
        "after_timeout": after_timeout, "again": again, "after_close": after_close,
        "ended_by_server": ended, "per_client_held": (held - before) / count,
        "per_client_again": (again - after_timeout) / count,
    }  # fmt: skip


# --------------------------------------------------------------------------- the run


def serve(python: str, database: str, tmp: Path, args: argparse.Namespace) -> Server:
    command = [
        python, "-m", "example_host", "serve", "--database", database, "--host", "127.0.0.1",
        "--port", str(free_port()), "--no-access-log", "--workers", str(args.workers),
    ]  # fmt: skip
    return Server("memory-host", command, server_env(args), tmp)


def server_env(args: argparse.Namespace) -> dict[str, str]:
    extra = {}
    if args.code:
        extra["PYTHONPATH"] = str(Path(args.code).resolve())
    if args.send_timeout:
        extra["EXAMPLE_HOST_EVENTS_SEND_TIMEOUT"] = str(args.send_timeout)
    # Every stalled stream is the one user's: lift the per-caller and per-platform shares
    # (10 and 250 by default), or the probe would measure 10 streams and 429s.
    bound = str(max(args.streams) + 10)
    for name in ("MAX_STREAMS", "MAX_STREAMS_PER_IDENTITY", "MAX_STREAMS_PER_PLATFORM"):
        extra[f"EXAMPLE_HOST_EVENTS_{name}"] = bound
    return child_env(extra)


def wait_ready(server: Server, token: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server.check_alive()
        with contextlib.suppress(OSError, http.client.HTTPException):
            if call(server.port, "GET", f"{MOUNT}?platform_key={PLATFORM}", token)[0] == 200:
                return
        time.sleep(0.2)
    raise Abort(f"the host did not answer within {timeout:.0f} s:\n{server.log_tail()}")


def code_under_test(args: argparse.Namespace) -> dict[str, str]:
    """Which package the server imports, and that checkout's commit."""
    where = subprocess.run(
        [sys.executable, "-c", "import starlette_platform_metadata as m; print(m.__file__)"],
        env=server_env(args), capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip()  # fmt: skip
    root = Path(where).parent.parent
    commit = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty"],
                            capture_output=True, text=True, timeout=30).stdout.strip()  # fmt: skip
    return {"package": where, "commit": commit}


@contextlib.contextmanager
def served(args: argparse.Namespace, database: str, tmp: Path, token: str) -> Iterator[Probe]:
    """A fresh server for one probe: a process whose heap an earlier probe grew would hide
    this one's growth (freed memory is kept by the allocator and used again)."""
    server = serve(sys.executable, database, tmp, args)
    try:
        wait_ready(server, token)
        # Warm: the listing's modules loaded, the store's connections open.
        call(server.port, "GET", EXPORT + "&limit=1", token)
        yield Probe(server)
    finally:
        server.stop()


def rounds(
    args: argparse.Namespace, database: str, tmp: Path, tokens: dict[str, str]
) -> list[dict[str, Any]]:
    timeout = args.send_timeout or EventSettings().send_timeout
    export = raw_request(EXPORT, tokens[ADMIN], {"Accept": "application/x-ndjson"})
    replay = raw_request(EVENTS, tokens[REPLAYER], {"Last-Event-ID": "v.0"})
    probes: dict[str, Callable[[Probe], dict[str, Any]]] = {
        "export, read": partial(probe_read, token=tokens[ADMIN]),
        f"export, {args.exports} stalled": partial(
            probe_stalled, request=export, count=args.exports, hold=args.hold, send_timeout=timeout
        ),
    }
    for count in args.streams:
        probes[f"replay, {count} stalled"] = partial(
            probe_stalled, request=replay, count=count, hold=args.hold, send_timeout=timeout
        )
    found: list[dict[str, Any]] = []
    for number in range(1, args.rounds + 1):
        done: dict[str, Any] = {}
        for name, run in probes.items():
            with served(args, database, tmp, tokens[ADMIN]) as probe:
                done[name] = run(probe)
            report(number, name, done[name])
        found.append(done)
    return found


def report(number: int, name: str, figures: dict[str, Any]) -> None:
    shown = {k: round(v, 1) if isinstance(v, float) else v for k, v in figures.items()}
    print(f"round {number}: {name}: {shown}", flush=True)


def medians(found: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    return {
        name: {
            key: statistics.median(run[name][key] for run in found)
            for key, value in figures.items()
            if isinstance(value, int | float)
        }
        for name, figures in found[0].items()
    }


STALLED = ("before", "held", "after_timeout", "again", "after_close", "peak")


def print_table(table: dict[str, dict[str, float]], rounds: int) -> None:
    print(f"\nMiB of server RSS, medians of {rounds} rounds (a shared machine: medians only)\n")
    print("| export read to the end | before | peak | after | rise of the peak |")
    print("|---|---|---|---|---|")
    for name, row in table.items():
        if "count" not in row:
            rise = row["peak"] - row["before"]
            figures = [row["before"], row["peak"], row["after"], rise]
            print(f"| {name} | " + " | ".join(f"{figure:.1f}" for figure in figures) + " |")
    print("\n| clients that never read | " + " | ".join(STALLED), end="")
    print(" | per client, held | per client, again | ended by the server |")
    print("|---" * (len(STALLED) + 4) + "|")
    for name, row in table.items():
        if "count" in row:
            cells = [f"{row[column]:.1f}" for column in STALLED]
            cells += [f"{row['per_client_held']:.2f}", f"{row['per_client_again']:.2f}"]
            cells.append(f"{row['ended_by_server']:.0f} of {row['count']:.0f}")
            print(f"| {name} | " + " | ".join(cells) + " |")


def measure(args: argparse.Namespace, database: str, tmp: Path) -> dict[str, Any]:
    count = args.export_mb * MIB // DOC_BYTES
    names = [ADMIN, REPLAYER] + [f"mem_user_{i:05d}" for i in range(count)]
    tokens = add_users(sys.executable, database, tmp, names)
    with served(args, database, tmp, tokens[ADMIN]) as seeding:
        started = time.monotonic()
        seed_export(seeding.server.port, tokens[ADMIN], names[2:], DOC_BYTES)
        seed_replay(seeding.server.port, tokens[REPLAYER], args.revisions, DOC_BYTES)
        print(f"seeded in {time.monotonic() - started:.0f} s", flush=True)
    found = rounds(args, database, tmp, tokens)
    table = medians(found)
    print_table(table, args.rounds)
    return {"rounds": found, "medians": table}


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise Abort("--max-seconds passed")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--export-mb", type=int, default=64, help="MB of documents to export (64)")
    parser.add_argument("--exports", type=int, default=10, help="stalled exports at once (10)")
    parser.add_argument("--streams", type=int, nargs="+", default=[20], help="stalled streams (20)")
    parser.add_argument("--revisions", type=int, default=100, help="replayed revisions (100)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hold", type=float, default=3.0, help="seconds before 'held' (3)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--database", help="postgresql://... (default: a SQLite file)")
    parser.add_argument("--send-timeout", type=float, help="EXAMPLE_HOST_EVENTS_SEND_TIMEOUT")
    parser.add_argument("--code", help="serve the package from this checkout (PYTHONPATH)")
    parser.add_argument("--max-seconds", type=int, default=900, help="give up after (900)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(args.max_seconds)
    code = code_under_test(args)
    print(f"serving {code['package']} at {code['commit']}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        dropped: str | None = None
        database = f"sqlite:///{tmp}/memory.db"
        if args.database:
            database, dropped = asyncio.run(postgres_database(args.database))
        try:
            results = measure(args, database, Path(tmp))
        except Abort as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            if dropped is not None:
                asyncio.run(drop_database(args.database, dropped))
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k != "json"}
        written = {"settings": settings, "code": code, **results}
        args.json.write_text(json.dumps(written, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
