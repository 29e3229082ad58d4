"""What an optimistic writer keeps within a process: `RecentRecords`.

The records this process last read or wrote: the basis a compare-and-set starts from without
reading first.  Never an answer: a basis that is not the stored record makes the
compare-and-set fail, and the writer reads and decides again.  (Writers of one row within a
process do not race each other at all: stores/sql/postgres_rows.py queues them.)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from .base import Record

__all__ = ["RecentRecords"]


class RecentRecords:
    """The last record seen per key, least recently used first out, bounded by the bytes of
    their documents (`max_bytes`)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.records: OrderedDict[Hashable, Record] = OrderedDict()

    def get(self, key: Hashable) -> Record | None:
        record = self.records.get(key)
        if record is not None:
            self.records.move_to_end(key)
        return record

    def put(self, key: Hashable, record: Record) -> None:
        self.discard(key)
        size = len(record.metadata_json)
        if size > self.max_bytes // 16:  # a few large documents would evict everything
            return
        self.records[key] = record
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, evicted = self.records.popitem(last=False)
            self.bytes -= len(evicted.metadata_json)

    def discard(self, key: Hashable) -> None:
        old = self.records.pop(key, None)
        if old is not None:
            self.bytes -= len(old.metadata_json)

