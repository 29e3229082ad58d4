"""When `serve` turns on `/metrics`, and how several workers share one scrape.

Metrics need no token and say how busy the service is, so they are on by default only where
nobody else can reach them (a loopback `--host`); `--metrics` turns them on elsewhere, for a
scraper that the network or a proxy lets in alone.  With `--workers N`, each worker writes
its figures once a second to a file in `$PROMETHEUS_MULTIPROC_DIR` and any worker's
`/metrics` answers with all of them summed (docs/monitoring.md, "Several workers").
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import tempfile
from collections.abc import Iterator

from .app import METRICS_ENV

__all__ = ["MULTIPROC_ENV", "metrics_default", "metrics_environment"]

#: The workers' shared directory: each worker's figures in a file there.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def metrics_default(host: str) -> bool:
    """Whether `/metrics` is on when `serve` is not told: only on a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def metrics_environment(host: str, workers: int, chosen: bool | None) -> Iterator[bool]:
    """Tell the workers (through the environment they inherit) whether to serve metrics, and
    with several workers give them a shared directory of this run alone (stale files of
    an earlier run would be counted), removed afterwards.  An operator's own
    `$PROMETHEUS_MULTIPROC_DIR` is used as it is.  Yields whether metrics are on."""
    metrics = metrics_default(host) if chosen is None else chosen
    os.environ[METRICS_ENV] = "1" if metrics else "0"
    made = None
    if metrics and workers > 1 and not os.environ.get(MULTIPROC_ENV):
        made = os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="example-host-metrics-")
    try:
        yield metrics
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
            del os.environ[MULTIPROC_ENV]
