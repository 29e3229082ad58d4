"""Live changes at 1,000 open streams on one worker: memory per stream, CPU at idle, and how
long a change takes to reach all of them.

    .venv/bin/python benchmarks/events.py [--streams 1000] [--rounds 10] [--idle 10]
        [--database postgresql://...]

The example host is served as run.py serves it (uvicorn, one worker, httptools, uvloop, access
log off) on a fresh SQLite file (or --database); the streams are opened by one client process
on raw sockets (sse_client.py), all on one user, so that each change goes to every stream.
Memory is the server's resident set (VmRSS) before and after the streams open; idle CPU is the
server's user + system time over --idle seconds with every stream open and nothing written;
fan-out is, per round, the time from sending a PATCH to the last of the streams receiving its
change event (median and worst over the rounds).  The GET/PATCH throughput with idle streams
open is run.py --streams-compare.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import sse_client  # noqa: E402
from run import (  # noqa: E402
    MEMBER,
    PLATFORM,
    Server,
    add_user,
    child_env,
    free_port,
    request,
    run_cli,
    sqlite_url,
    uvicorn_command,
)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(args: argparse.Namespace, port: int, pid: int, token: str) -> dict[str, float]:
    before = rss_kib(pid)
    started = time.monotonic()
    streams = await sse_client.open_many(port, token, args.streams)
    opened = time.monotonic() - started
    await asyncio.sleep(2)  # let the server settle
    after = rss_kib(pid)
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(args.idle)
    idle_cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
    fanouts = []
    for n in range(args.rounds):
        sent = time.monotonic()
        status, _, headers = await asyncio.to_thread(
            request, port, "PATCH", token, {"metadata": {"round": n}}
        )
        assert status == 200, status
        version = int(headers["etag"].strip('"'))
        deadline = sent + 10
        while any(version not in s.changes for s in streams) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        missing = sum(version not in s.changes for s in streams)
        if missing:
            raise SystemExit(f"round {n}: {missing} streams never got version {version}")
        fanouts.append(max(s.changes[version] for s in streams) - sent)
        await asyncio.sleep(0.2)
    for stream in streams:
        stream.writer.close()
    return {
        "streams": args.streams,
        "open_seconds": round(opened, 2),
        "rss_before_mib": round(before / 1024, 1),
        "rss_after_mib": round(after / 1024, 1),
        "kib_per_stream": round((after - before) / args.streams, 1),
        "idle_cpu_percent": round(idle_cpu * 100, 2),
        "fanout_median_ms": round(statistics.median(fanouts) * 1000, 1),
        "fanout_max_ms": round(max(fanouts) * 1000, 1),
    }


STREAM_BOUNDS = ("MAX_STREAMS", "MAX_STREAMS_PER_IDENTITY", "MAX_STREAMS_PER_PLATFORM")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measured")
    parser.add_argument("--database", help="postgresql://... instead of a fresh SQLite file")
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        database = args.database or sqlite_url(tmp / "events.db")
        run_cli(args.python, ["add-platform", PLATFORM], database, tmp)
        token = add_user(args.python, MEMBER, database, tmp)
        # Every stream is the one member's: lift the per-caller and per-platform shares too.
        bound = str(args.streams + 10)
        env = child_env(
            {"DATABASE_URL": database}
            | {f"EXAMPLE_HOST_EVENTS_{name}": bound for name in STREAM_BOUNDS}
        )
        target = ["example_host.app:create_app_from_env", "--factory"]
        server = Server("events", uvicorn_command(args.python, target, free_port()), env, tmp)
        try:
            server.wait_ready(token)
            result = asyncio.run(measure(args, server.port, server.process.pid, token))
        finally:
            server.stop()
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
