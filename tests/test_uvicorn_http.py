"""`BoundedHttpToolsProtocol`: httptools with the request head bounded in size (counted as the
bytes arrive) and in time, answering its own refusals in JSON; everything else as uvicorn's
httptools protocol does.  Served by a real uvicorn process (tests/servers/head_app.py: a
1,024-byte head cap, a 0.5 s head timeout)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from .test_example_host import ROOT, free_port, stop, wait_for
from .test_serve_limits import closed_by_server

CAP = 1024


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    log = tmp_path_factory.mktemp("head") / "uvicorn.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [
        sys.executable, "-m", "uvicorn", "tests.servers.head_app:app",
        "--http", "tests.servers.head_app:QuickHeadProtocol",
        "--h11-max-incomplete-event-size", str(CAP),
        "--port", str(port), "--timeout-keep-alive", "5",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        # Logged once the socket listens ("Application startup complete" comes before it).
        wait_for(lambda: "Uvicorn running on" in log.read_text(), 30, "startup", proc)
        yield port
    finally:
        stop(proc, 10)


@contextlib.contextmanager
def connection(port: int) -> Iterator[socket.socket]:
    with contextlib.closing(socket.create_connection(("127.0.0.1", port), timeout=5)) as sock:
        yield sock


def head(path: str = "/", extra: bytes = b"", method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\n".encode() + extra + b"\r\n"


def responses(sock: socket.socket, count: int = 1) -> list[tuple[int, dict[str, str], bytes]]:
    """Read `count` responses with Content-Length bodies."""
    reader = sock.makefile("rb")
    out = []
    for _ in range(count):
        status = int(reader.readline().split()[1])
        headers = {}
        while (line := reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        out.append((status, headers, reader.read(int(headers.get("content-length", 0)))))
    return out


def closed(sock: socket.socket, within: float = 3) -> bool:
    """True when the server closes the connection within `within` seconds."""
    sock.settimeout(within)
    return closed_by_server(sock)


def test_a_head_over_the_cap_sent_in_pieces_gets_431_json_and_the_connection_closes(
    port: int,
) -> None:
    """The cap holds as the head arrives: the pieces before the end are refused once past it."""
    with connection(port) as sock:
        data = head(extra=b"X-Pad: " + b"a" * 4000 + b"\r\n")
        for start in range(0, 2048, 256):
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(data[start : start + 256])
            time.sleep(0.01)
        [(status, headers, body)] = responses(sock)
        assert status == 431
        assert headers["content-type"] == "application/json"
        assert headers["connection"] == "close"
        assert json.loads(body) == {"detail": "Request line and headers too large."}
        assert closed(sock)


def test_a_head_over_the_cap_in_one_piece_is_refused(port: int) -> None:
    with connection(port) as sock:
        sock.sendall(head(extra=b"X-Pad: " + b"a" * (CAP + 10) + b"\r\n"))
        assert responses(sock)[0][0] == 431
        assert closed(sock)


def test_a_head_just_under_the_cap_followed_by_a_large_body_is_served(port: int) -> None:
    """Only the head counts: a body arriving in the same read is not measured against the cap."""
    body = b"x" * 100_000
    extra = f"Content-Length: {len(body)}\r\n".encode()
    start = head("/upload", extra, "POST")
    padding = CAP - len(start) - len(b"X-Pad: \r\n") - 8
    data = head("/upload", extra + b"X-Pad: " + b"p" * padding + b"\r\n", "POST")
    assert CAP - 16 < len(data) <= CAP
    with connection(port) as sock:
        sock.sendall(data + body)
        [(status, _, answer)] = responses(sock)
        assert status == 200
        assert json.loads(answer)["body"] == len(body)


def test_a_head_end_split_across_reads_at_the_cap_is_served(port: int) -> None:
    """The blank line that ends a head may arrive split over two reads, the second carrying
    the body too: the end is found across the two."""
    body = b"y" * 2000
    extra = f"Content-Length: {len(body)}\r\n".encode()
    full = head("/", extra + b"X-Pad: " + b"p" * (CAP - 60) + b"\r\n", "POST")
    assert CAP - 20 < len(full) <= CAP
    with connection(port) as sock:
        sock.sendall(full[:-2])
        time.sleep(0.05)
        sock.sendall(full[-2:] + body)
        [(status, _, answer)] = responses(sock)
        assert status == 200
        assert json.loads(answer)["body"] == len(body)


def test_many_requests_on_one_connection_each_get_a_fresh_budget(port: int) -> None:
    """Twenty heads of 900 bytes on one keep-alive connection: each is measured alone."""
    data = head("/", b"X-Pad: " + b"p" * 850 + b"\r\n")
    assert len(data) < CAP
    with connection(port) as sock:
        for _ in range(20):
            sock.sendall(data)
            assert responses(sock)[0][0] == 200


def test_pipelined_requests_are_answered_in_order(port: int) -> None:
    with connection(port) as sock:
        sock.sendall(head("/a") + head("/b") + head("/c"))
        paths = [json.loads(body)["path"] for _, _, body in responses(sock, 3)]
        assert paths == ["/a", "/b", "/c"]


def test_each_request_is_stamped_in_the_order_it_arrived(port: int) -> None:
    """`arrivals.stamp` in every scope, rising in the order the requests' bytes came, across
    connections (what lets an auth backend share a read among requests that came before)."""
    with connection(port) as first, connection(port) as second:
        first.sendall(head("/a") + head("/b"))
        stamps = [json.loads(body)["arrival"] for _, _, body in responses(first, 2)]
        second.sendall(head("/c"))
        stamps += [json.loads(body)["arrival"] for _, _, body in responses(second)]
        first.sendall(head("/d"))
        stamps += [json.loads(body)["arrival"] for _, _, body in responses(first)]
    assert all(isinstance(s, int) for s in stamps)
    assert stamps == sorted(stamps) and len(set(stamps)) == 4


def test_a_head_sent_too_slowly_gets_408_and_the_connection_closes(port: int) -> None:
    with connection(port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        [(status, _, body)] = responses(sock)
        assert status == 408
        assert json.loads(body) == {"detail": "Request headers not received in time."}
        assert 0.3 < time.monotonic() - started < 3
        assert closed(sock)


def test_a_connection_that_sends_nothing_is_closed_after_the_head_timeout(port: int) -> None:
    with connection(port) as sock:
        started = time.monotonic()
        sock.settimeout(3)
        assert sock.recv(100) == b""  # closed without an answer
        assert 0.3 < time.monotonic() - started < 3


def test_a_request_slower_than_the_head_timeout_is_not_cut(port: int) -> None:
    """The head timer stops when the head is complete: the app may take as long as it likes."""
    with connection(port) as sock:
        sock.sendall(head("/sleep"))
        assert responses(sock)[0][0] == 200
        sock.sendall(head("/after"))  # the connection is still usable
        assert responses(sock)[0][0] == 200


def test_an_idle_keep_alive_connection_is_left_to_the_keep_alive_timeout(port: int) -> None:
    """After a response the head timer is off: a client idle for longer than it (but within
    the 5 s keep-alive) may still send its next request."""
    with connection(port) as sock:
        sock.sendall(head("/"))
        assert responses(sock)[0][0] == 200
        time.sleep(1.0)
        sock.sendall(head("/again"))
        assert responses(sock)[0][0] == 200


def test_a_malformed_request_gets_400_json(port: int) -> None:
    with connection(port) as sock:
        sock.sendall(b"NOT A REQUEST\r\n\r\n")
        [(status, headers, body)] = responses(sock)
        assert status == 400
        assert headers["content-type"] == "application/json"
        assert json.loads(body) == {"detail": "Invalid HTTP request received."}
        assert closed(sock)


def test_the_raw_path_reaches_the_app_as_sent(port: int) -> None:
    """`%2F` stays visible in `raw_path` (the package refuses it there, app.py)."""
    with connection(port) as sock:
        sock.sendall(head("/a%2Fb"))
        assert json.loads(responses(sock)[0][2])["path"] == "/a/b"
