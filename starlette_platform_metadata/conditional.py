"""ETags and the `If-Match` / `If-None-Match` preconditions (RFC 9110, section 13)."""

from __future__ import annotations

import re

from .stores.base import ANY_RECORD, NO_RECORD, Expect, Record

_ETAG = re.compile(r'\s*(W/)?"([^"]*)"\s*(?:,|$)')


def etag(record: Record) -> str:
    """A strong ETag: the record's version, which changes with every write."""
    return f'"{record.version}"'


def _tags(header: str) -> list[tuple[bool, str]] | None:
    """Parse a list of entity tags; `None` when the header is malformed."""
    tags: list[tuple[bool, str]] = []
    position = 0
    header = header.strip()
    while position < len(header):
        match = _ETAG.match(header, position)
        if match is None:
            return None
        tags.append((match.group(1) is not None, match.group(2)))
        position = match.end()
    return tags


def expect_from_if_match(header: str | None) -> Expect | None:
    """The precondition an `If-Match` header asks for (strong comparison)."""
    if header is None:
        return None
    if header.strip() == "*":
        return ANY_RECORD
    versions: set[int] = set()
    for weak, opaque in _tags(header) or []:
        if not weak and opaque.isascii() and opaque.isdigit() and len(opaque) < 20:
            versions.add(int(opaque))
    # A header naming no tag of ours can never match: an empty set fails every write.
    return Expect(frozenset(versions))


def expect_for_write(if_match: str | None, if_none_match: str | None) -> Expect | None:
    """The precondition of a PATCH, PUT or DELETE: `If-Match` and `If-None-Match` together.

    `If-None-Match` on a write (RFC 9110, 13.1.2) uses weak comparison: `*` writes only when
    no record is stored (create-only, also after a DELETE); a list writes only when the
    current version is none of them.  A malformed value names nothing, so it always holds.
    """
    expect = expect_from_if_match(if_match)
    if if_none_match is None:
        return expect
    if if_none_match.strip() == "*":
        none = NO_RECORD
    else:
        versions = {
            int(opaque)
            for _, opaque in _tags(if_none_match) or []
            if opaque.isascii() and opaque.isdigit() and len(opaque) < 20
        }
        none = Expect(frozenset(versions), negate=True)
    return none if expect is None else Expect(expect.versions, also=none)


def none_match(header: str | None, record: Record) -> bool:
    """True when `If-None-Match` matches the current record (weak comparison)."""
    if header is None:
        return False
    if header.strip() == "*":
        return record.exists
    current = str(record.version)
    return any(opaque == current for _, opaque in _tags(header) or [])
