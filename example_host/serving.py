"""What `serve` lets clients hold, and how it hands uvicorn its HTTP protocol: the options of
`python -m example_host serve` that bound one worker (docs/example_host.md, "Commands")."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass

from starlette_platform_metadata.events import EventSettings

__all__ = [
    "BOUNDED_HTTPTOOLS",
    "EVENT_LOOPS",
    "HTTP_PARSERS",
    "ServeOptions",
    "http_protocol",
    "max_streams",
]

HTTP_PARSERS = ("httptools", "h11")
# httptools with the head bounded in size and time (docs/serving.md): as safe as h11, as fast
# as httptools.
BOUNDED_HTTPTOOLS = "starlette_platform_metadata.uvicorn_http:BoundedHttpToolsProtocol"
EVENT_LOOPS = ("auto", "asyncio", "uvloop")


@dataclass(frozen=True)
class ServeOptions:
    """What `serve` lets one worker's clients hold, and whether it logs each request (see
    docs/postgresql.md, "Behind a proxy", for what a proxy in front must bound instead)."""

    http: str = "httptools"  # bounded either way (BOUNDED_HTTPTOOLS); h11 is the slower
    max_header_bytes: int = 16 * 1024  # request line + headers; h11's own default
    timeout_keep_alive: int = 5  # seconds idle after a response; uvicorn's default
    limit_concurrency: int = 1000  # open connections (idle ones too) per worker, then 503
    access_log: bool = True
    history_per_user: int | None = None  # None: $EXAMPLE_HOST_HISTORY_PER_USER, else 100
    # uvicorn's choice (uvloop when installed); asyncio trades a few percent of a saturated
    # worker's rate for a much shorter latency tail (benchmarks/README.md, "Which event loop").
    loop: str = "auto"
    metrics: bool | None = None  # None: on when serving on loopback only (monitoring.py)
    # PostgreSQL behind a transaction pooler: the direct URL live changes LISTEN on.
    listen_database: str | None = None


def max_streams(limit_concurrency: int) -> int:
    """Open streams per worker: at most half its connections, so that however many streams
    are open, plain requests always find a connection (`$EXAMPLE_HOST_EVENTS_MAX_STREAMS`
    overrides it)."""
    return max(1, min(EventSettings().max_streams, limit_concurrency // 2))


def http_protocol(http: str) -> str:
    """uvicorn's `http` setting for `--http`: httptools through the bounded protocol, or h11
    (with a warning) where httptools is not installed (uvicorn without its `standard` extra)."""
    if http != "httptools":
        return http
    if importlib.util.find_spec("httptools") is None:
        print(
            "httptools is not installed (pip install 'uvicorn[standard]'): serving with h11, "
            "which bounds headers too at about half the rate",
            file=sys.stderr,
        )
        return "h11"
    return BOUNDED_HTTPTOOLS
