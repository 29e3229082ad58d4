"""`serve` bounds what a client may hold (issue 8): header size, idle keep-alive connections and
open connections per worker; and `--no-access-log` turns the access log off.

What uvicorn cannot bound (a connection that never sends a request, a slow header) is the
proxy's job: docs/postgresql.md, "Behind a proxy"."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from example_host.__main__ import main

from .test_example_host import ROOT, free_port, stop, wait_for

# Served without a token, so a status here is the server's answer, not the auth layer's.
OPENAPI = "/api/core/users/platform-metadata/openapi.json"


@dataclass
class Server:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path  # stdout and stderr together

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=5)

    def status(self) -> int:
        """One GET on a new connection."""
        with httpx.Client(timeout=5) as client:
            return client.get(f"http://127.0.0.1:{self.port}{OPENAPI}").status_code


@contextlib.contextmanager
def serving(tmp_path: Path, *args: str) -> Iterator[Server]:
    """`python -m example_host serve *args` on a free port of 127.0.0.1, stopped (or killed)
    on the way out."""
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PYTHONPATH"] = str(ROOT)
    database = f"sqlite:///{tmp_path / f'h-{port}.db'}"
    command = [sys.executable, "-m", "example_host", "serve", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, "--database", database, *args],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        # Logged once the socket listens ("Application startup complete" comes before it).
        wait_for(lambda: "Uvicorn running on" in log.read_text(), 30, "startup", proc)
        yield Server(port, proc, log)
    finally:
        stop(proc, 10)


def request_bytes(extra_headers: bytes = b"") -> bytes:
    head = f"GET {OPENAPI} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
    return head + extra_headers + b"\r\n"


def read_response(sock: socket.socket) -> int:
    """Read one response (headers and a Content-Length body); return its status."""
    reader = sock.makefile("rb")
    status = int(reader.readline().split()[1])
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    assert len(reader.read(length)) == length
    return status


def closed_by_server(sock: socket.socket) -> bool:
    """True when the server closes the connection (EOF or reset) within the socket's timeout,
    after whatever it still sends (a body delimited by the close)."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


def send_in_pieces(sock: socket.socket, data: bytes, piece: int = 8192) -> None:
    """Send as a network would deliver a large header block: in several segments. Stops early
    once the server has answered (or closed)."""
    for start in range(0, len(data), piece):
        if select.select([sock], [], [], 0.05)[0]:
            return
        try:
            sock.sendall(data[start : start + piece])
        except (BrokenPipeError, ConnectionResetError):
            return


@pytest.mark.slow
def test_an_oversized_header_block_gets_400_and_the_connection_closes(tmp_path: Path) -> None:
    """With the defaults (h11, 16 KiB), a request carrying a 100 KB header is refused with 400
    and its connection closed, while a normal request on the same server answers 200."""
    with serving(tmp_path) as server:
        with contextlib.closing(server.connect()) as sock:
            send_in_pieces(sock, request_bytes(b"X-Padding: " + b"a" * 100_000 + b"\r\n"))
            assert read_response(sock) in (400, 431)
            assert closed_by_server(sock)
        assert server.status() == 200


@pytest.mark.slow
def test_an_idle_keep_alive_connection_is_closed_after_timeout_keep_alive(
    tmp_path: Path,
) -> None:
    """With `--timeout-keep-alive 1`, a connection left idle after a response stays open for
    about that long, then the server closes it."""
    with serving(tmp_path, "--timeout-keep-alive", "1") as server:
        with contextlib.closing(server.connect()) as sock:
            sock.sendall(request_bytes())
            assert read_response(sock) == 200
            answered = time.monotonic()
            sock.settimeout(3)
            assert closed_by_server(sock)
            assert 0.5 < time.monotonic() - answered < 2.5


@pytest.mark.slow
def test_past_limit_concurrency_open_connections_requests_get_503(tmp_path: Path) -> None:
    """With `--limit-concurrency 3`, while 3 connections that never send a request are open,
    a request gets 503; once they close, requests are served again."""
    with serving(tmp_path, "--limit-concurrency", "3") as server:
        idle = [server.connect() for _ in range(3)]
        try:
            wait_for(lambda: server.status() == 503, 5, "a 503", server.proc)
        finally:
            for sock in idle:
                sock.close()
        wait_for(lambda: server.status() == 200, 5, "a 200 again", server.proc)


@pytest.mark.slow
@pytest.mark.parametrize("quiet", [False, True])
def test_no_access_log_suppresses_the_per_request_line(tmp_path: Path, quiet: bool) -> None:
    """Each request is logged (`"GET /path HTTP/1.1" 200`) unless `--no-access-log` is given;
    uvicorn's other lines are logged either way."""
    with serving(tmp_path, *(["--no-access-log"] if quiet else [])) as server:
        assert server.status() == 200
    log = server.log.read_text()
    assert "Application shutdown complete" in log
    assert (f'"GET {OPENAPI} HTTP/1.1" 200' in log) is not quiet


@pytest.mark.parametrize(
    "args, message",
    [
        (["--limit-concurrency", "0"], "--limit-concurrency must be at least 1"),
        (["--timeout-keep-alive", "0"], "--timeout-keep-alive must be at least 1"),
        (["--max-header-bytes", "0"], "--max-header-bytes must be at least 1"),
    ],
)
def test_limits_that_cannot_hold_are_refused_before_serving(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A header cap httptools would ignore, or a bound below 1, is a usage error (exit 2)."""
    database = f"sqlite:///{tmp_path / 'h.db'}"
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--port", str(free_port()), "--database", database, *args])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "h.db").exists()


@pytest.mark.parametrize(
    "args, loop", [([], "auto"), (["--loop", "asyncio"], "asyncio"), (["--loop", "uvloop"], "uvloop")]
)
def test_serve_hands_uvicorn_the_event_loop_asked_for(
    args: list[str], loop: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvicorn's own choice unless `--loop` names one (asyncio's shorter tail under load:
    benchmarks/README.md); an unknown loop is a usage error."""
    import uvicorn

    seen: list[str] = []

    def run(self: uvicorn.Server, sockets: list[socket.socket] | None = None) -> None:
        seen.append(self.config.loop)
        for sock in sockets or []:
            sock.close()  # as uvicorn does when it stops
        self.started = True

    monkeypatch.setattr(uvicorn.Server, "run", run)
    database = f"sqlite:///{tmp_path / 'h.db'}"
    assert main(["serve", "--port", str(free_port()), "--database", database, *args]) == 0
    assert seen == [loop]
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--database", database, "--loop", "trio"])
    assert exited.value.code == 2


def test_serve_takes_the_bounded_httptools_protocol_or_h11_where_httptools_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The default serves through `BoundedHttpToolsProtocol`; without httptools (uvicorn
    without its `standard` extra) it says so and serves with h11, which bounds headers too."""
    import importlib.util

    from example_host.serving import BOUNDED_HTTPTOOLS, http_protocol

    assert http_protocol("httptools") == BOUNDED_HTTPTOOLS
    assert http_protocol("h11") == "h11"
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "httptools" else real(name)
    )
    assert http_protocol("httptools") == "h11"
    assert "httptools is not installed" in capsys.readouterr().err
