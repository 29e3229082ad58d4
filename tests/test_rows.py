"""`plan_rows`: the rows a `Write` changes, decided once for the memory, SQLite and PostgreSQL
stores (each only runs the plan; the contract suites check that they do)."""

from __future__ import annotations

from datetime import datetime, timezone

from starlette_platform_metadata.stores.base import EMPTY, Record, Revision, Write
from starlette_platform_metadata.stores.rows import plan_rows

NOW = datetime(2026, 12, 6, tzinfo=timezone.utc)
STORED = Record('{"a":1}', 5, NOW, NOW)


def revision(version: int) -> Revision:
    return Revision(version, "patch", "ann", NOW, '{"a":2}', ("a",), NOW)


def test_a_change_stores_its_record_and_revision_and_trims_beyond_retention() -> None:
    new = Record('{"a":2}', 6, NOW, NOW)
    plan = plan_rows(STORED, Write(new, "patch", "ann", revision(6), keep_revisions=4))
    assert plan == (new, new, '{"a":2}', False, revision(6), 2)


def test_nothing_is_trimmed_while_every_version_fits_retention() -> None:
    new = Record('{"a":2}', 6, NOW, NOW)
    kept = Write(new, "patch", revision=revision(6), keep_revisions=6)
    *_, revision_kept, trim = plan_rows(STORED, kept)
    assert (revision_kept, trim) == (revision(6), None)
    *_, revision_kept, trim = plan_rows(STORED, Write(new, "patch"))  # history off
    assert (revision_kept, trim) == (None, None)


def test_a_delete_stores_a_tombstone_whose_document_is_null() -> None:
    tombstone = Record("{}", 6, None, None)
    _, record, document, purge, _, _ = plan_rows(STORED, Write(tombstone, "delete", purge=True))
    assert (record, document, purge) == (tombstone, None, True)


def test_a_write_of_the_current_version_changes_no_row_but_still_purges() -> None:
    """A purge with nothing stored: the record stays, its revisions go, the clock stays."""
    plan = plan_rows(EMPTY, Write(EMPTY, "delete", revision=revision(0), purge=True))
    assert plan == (EMPTY, None, None, True, None, None)
