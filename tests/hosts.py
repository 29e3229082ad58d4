"""`python -m example_host serve` as a real server for tests, started as outside tools start it.

One helper for every test that needs the host over HTTP (history, live changes, the client,
the browser): a subprocess on a free port (or a given one), ready once it answers HTTP, and
stopped with SIGINT as an operator stops it (killed if it has not exited 20 s later)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any
from contextlib import contextmanager
from pathlib import Path

import httpx

from .conftest import URL
from .test_example_host import ROOT, free_port, stop, wait_for

__all__ = ["answers", "follow_pages", "served", "tokens"]


def answers(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}{URL}", timeout=1)
    except httpx.HTTPError:
        return False
    return True


@contextmanager
def served(
    database: str,
    folder: Path,
    *args: str,
    env: dict[str, str] | None = None,
    port: int | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes], str]]:
    """`serve` on `database` (with `args`, and `env` added); yields its base URL, the process
    and what it printed, once it answers HTTP."""
    port = port or free_port()
    out = folder / f"stdout-{port}-{time.monotonic_ns()}"
    full_env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    full_env["PYTHONPATH"] = str(ROOT)
    full_env.update(env or {})
    command = ["serve", "--port", str(port), "--database", database, "--no-access-log", *args]
    with out.open("wb") as stdout:
        proc = subprocess.Popen(
            [sys.executable, "-m", "example_host", *command],
            cwd=folder,
            env=full_env,
            stdout=stdout,
            stderr=subprocess.DEVNULL,
        )
    try:
        wait_for(lambda: answers(port), 60, "serve", proc)
        yield f"http://127.0.0.1:{port}", proc, out.read_text()
    finally:
        stop(proc)


async def follow_pages(
    client: httpx.AsyncClient, url: str, headers: dict[str, str]
) -> list[Any]:
    """Every result of a cursor-paginated resource, following `next` (an absolute URL)."""
    seen: list[Any] = []
    following: str | None = url
    while following:
        response = await client.get(following, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        seen += page["results"]
        following = page["next"]
    return seen


def tokens(printed: str) -> dict[str, str]:
    """The demo users' tokens in what `serve` printed on an empty database."""
    return dict(re.findall(r"^\s+(\w+)\s.*token ([0-9a-f]{40})$", printed, re.M))
