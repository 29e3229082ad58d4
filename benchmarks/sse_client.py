"""Many Server-Sent Events streams from one process, on raw asyncio sockets (a client library
per stream would cost more than the server being measured).

    python benchmarks/sse_client.py PORT TOKEN COUNT    # hold COUNT streams open until killed

Used by events.py (fan-out latency, memory per stream) and run.py --streams-compare (the load
with COUNT idle streams open).
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field

PATH = "/api/core/users/platform-metadata/events/?platform_key=acme-corp"


@dataclass
class Stream:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    # Arrival time (time.monotonic) of each change event, by its version.
    changes: dict[int, float] = field(default_factory=dict)


async def open_stream(port: int, token: str) -> Stream:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Token {token}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        raise RuntimeError(f"stream refused: {status!r}")
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    return Stream(reader, writer)


async def read_events(stream: Stream, snapshot: asyncio.Event) -> None:
    """Note when each change arrives; set `snapshot` once the first event came."""
    version = None
    kind = b""
    while True:
        line = await stream.reader.readline()
        if not line:
            return
        if line == b"\n":  # the end of an event (our events' lines end in a bare \n)
            if kind == b"snapshot":
                snapshot.set()
            elif kind == b"change" and version is not None:
                stream.changes.setdefault(version, time.monotonic())
            kind = b""
        elif line.endswith(b"\r\n"):
            continue  # the chunked encoding's framing: a chunk's size, or its end
        elif line.startswith(b"event: "):
            kind = line[7:].strip()
        elif line.startswith(b"data: ") and b'"version":' in line:
            version = int(line.split(b'"version":', 1)[1].split(b",", 1)[0])


async def open_many(port: int, token: str, count: int) -> list[Stream]:
    """`count` streams, each past its snapshot; opened 50 at a time."""
    streams: list[Stream] = []
    ready: list[asyncio.Event] = []
    for start in range(0, count, 50):
        batch = await asyncio.gather(
            *(open_stream(port, token) for _ in range(min(50, count - start)))
        )
        for stream in batch:
            event = asyncio.Event()
            asyncio.get_running_loop().create_task(read_events(stream, event))
            streams.append(stream)
            ready.append(event)
    await asyncio.wait_for(asyncio.gather(*(event.wait() for event in ready)), 60)
    return streams


async def hold(port: int, token: str, count: int) -> None:
    await open_many(port, token, count)
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(hold(int(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
