"""What a `Write` does to a store's rows, decided once for every store.

A store keeps one record per (platform, user) and, with history, the user's revisions and
its platform's change clock.  Which of them a write touches, and how, follows from the write
and the record it replaces alone (README.md, "Writing a store", rule 9; docs/history.md, "In a
store of your own"): `plan_rows` says it, and each store runs the plan in its own medium (dicts,
a SQLite group commit, a PostgreSQL statement), in the order of the plan's fields.
"""

from __future__ import annotations

from .base import Record, Revision, Write

__all__ = ["RowPlan", "plan_rows"]


#: The row operations of one write, in the order a store runs them, in one atomic step:
#:
#: - `stored`: what `update` returns: the new record, or the current one when the write
#:   leaves it as it is.
#: - `record`: the record to store, or `None`: leave the row as it is (a write that keeps the
#:   current version: a purge with nothing stored).
#: - `document`: the record's document column: its JSON text, or `None` (`NULL`) for a
#:   tombstone (a delete keeps the row and its version) or when there is no `record`.
#: - `purge`: first delete every revision of the user (erasure); the clock does not move.
#: - `revision`: then keep this revision; it takes its platform's next `seq` (the clock moves
#:   by one, in commit order).  Only with a `record`: a write that changes nothing keeps no
#:   revision.
#: - `trim`: then delete the user's revisions of versions up to `trim` (retention), and raise
#:   the platform's horizon to the highest `seq` among them; `None`: none can be beyond
#:   retention (versions are distinct and at most the revision's).
#:
#: A plain tuple, unpacked by name where it is used: one is built for every write, and
#: `plan_rows` took 0.33 us building a named tuple, 0.16 building this (a frozen dataclass
#: 0.78): 2,500 of the 290,000 instructions a SQLite PATCH with history costs (callgrind).
RowPlan = tuple[Record, Record | None, str | None, bool, Revision | None, int | None]


def plan_rows(current: Record, write: Write) -> RowPlan:
    """The rows `write` changes when it replaces `current`:
    `(stored, record, document, purge, revision, trim)`, see `RowPlan`."""
    record = write.record
    if record.version == current.version:
        return current, None, None, write.purge, None, None
    revision = write.revision
    trim = None
    if revision is not None and revision.version > write.keep_revisions:
        trim = revision.version - write.keep_revisions
    document = record.metadata_json if record.exists else None
    return record, record, document, write.purge, revision, trim
