"""Several worker processes, one scrape: each worker's tallies in a file of a shared directory.

`uvicorn --workers N` runs N processes behind one port, and a scrape reaches one of them.
prometheus-client's multiprocess mode solves that by keeping every value in memory-mapped
files, at a few microseconds per value written (measured: 15 us more per GET, a tenth of a
served GET's CPU).  Here each worker keeps its figures as plain numbers (`tallies.Tallies`)
and a thread of its own writes them, once per `interval`, to `<directory>/platform_metadata-
<pid>-<id>.prom` in Prometheus's text format (prometheus-client's `generate_latest`, replaced
atomically); a scrape reads every worker's file (its own figures live) and sums them
(prometheus-client's parser).  So another worker's figures are at most `interval` old.

As in prometheus-client's multiprocess mode: counters and histograms of workers that have
exited still count (what they counted happened); a gauge (`streams_open`) counts only workers
still running; the directory must start empty for each run of the server.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

__all__ = ["FILE_PREFIX", "SharedFiles"]

#: Our files in the directory (prometheus-client's own there end in `.db`).
FILE_PREFIX = "platform_metadata-"


class SharedFiles(Collector):
    """This worker's file in `directory`, written every `interval` seconds by a daemon thread
    from `own` (a registry holding this worker's figures), and, as a collector, every
    worker's figures summed."""

    def __init__(self, directory: str | Path, own: CollectorRegistry, interval: float = 1.0) -> None:
        self.directory = Path(directory)
        self.own = own
        self.interval = interval
        self.pid = os.getpid()
        self.path = self.directory / f"{FILE_PREFIX}{self.pid}-{uuid.uuid4().hex[:8]}.prom"
        self._stop = threading.Event()
        self.write()
        self._thread = threading.Thread(
            target=self._run, name="spm-metrics-files", daemon=True
        )
        self._thread.start()

    def write(self) -> None:
        """This worker's figures now, replacing its file at once (readers see the old or
        the new file, never half of one)."""
        temporary = self.path.with_suffix(".tmp")
        temporary.write_bytes(generate_latest(self.own))
        os.replace(temporary, self.path)

    def close(self) -> None:
        """The last figures written; the thread stops (the worker is exiting)."""
        self._stop.set()
        with contextlib.suppress(OSError):
            self.write()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(OSError):  # a full disk: the next write tries again
                self.write()

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
        for path in sorted(self.directory.glob(f"{FILE_PREFIX}*.prom")):
            if path == self.path:
                text = generate_latest(self.own).decode()  # ours: live, not a second old
            else:
                try:
                    text = path.read_text()
                except OSError:
                    continue  # removed meanwhile
            running = _running(path)
            for family in text_string_to_metric_families(text):
                if family.type == "gauge" and not running:
                    continue  # a gauge of a worker gone says nothing about now
                merged = families.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                summed = values.setdefault(merged.name, {})
                for sample in family.samples:
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    summed[key] = summed.get(key, 0.0) + sample.value
        for name, metric in families.items():
            for (sample_name, labels), value in values[name].items():
                metric.add_sample(sample_name, dict(labels), value)
            yield metric


def _running(path: Path) -> bool:
    """Whether the worker that writes `path` still runs (its pid is in the file's name)."""
    try:
        pid = int(path.name.removeprefix(FILE_PREFIX).split("-", 1)[0])
    except ValueError:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process of that number: alive
    return True
