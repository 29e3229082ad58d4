"""ETags and the `If-Match` / `If-None-Match` preconditions (RFC 9110, section 13).

Both headers are lists (RFC 9110, 5.3 and 5.6.1): the field lines of one name form one list,
and empty elements are allowed.  An ETag is opaque: `"5"` is issued for version 5, and only
that exact text names it (`"05"` was never issued and names nothing).  How many tags one
request may list is bounded by `Limits.max_etags`, and parsing stops there, so the work a
request costs does not grow with what a client sends past the limit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.datastructures import Headers

from .exceptions import PlatformMetadataError
from .stores.base import Record

__all__ = ["Conditions", "TagList", "TooManyTags", "etag", "parse"]

# One list element, then the separator or the end.  OWS is spaces and tabs (RFC 9110, 5.6.3).
_ELEMENT = re.compile(r'[ \t]*(?:(W/)?"([^"]*)"|(\*))[ \t]*(?:,|\Z)')
_EMPTY = re.compile(r"[ \t]*(?:,|\Z)")


class TooManyTags(PlatformMetadataError):
    """A conditional header lists more than `Limits.max_etags` tags (the endpoint's 400)."""

    def __init__(self, header: str, limit: int) -> None:
        super().__init__(header, limit)
        self.header = header
        self.limit = limit


@dataclass(frozen=True, slots=True)
class TagList:
    """One conditional header, parsed.

    Attributes:
        star: the value is `*`.
        tags: `(weak, opaque)` pairs, in order.
        malformed: the value is not `*` and not a list of at least one entity tag.
    """

    star: bool = False
    tags: tuple[tuple[bool, str], ...] = ()
    malformed: bool = False


_STAR = TagList(star=True)
_MALFORMED = TagList(malformed=True)


def etag(record: Record) -> str:
    """A strong ETag: the record's version, which changes with every write."""
    return f'"{record.version}"'


def field_value(headers: Headers, name: str) -> str | None:
    """All field lines of `name` as one list (RFC 9110, 5.3), or `None` when absent."""
    lines = headers.getlist(name)
    if not lines:
        return None
    return lines[0] if len(lines) == 1 else ", ".join(lines)


def parse(name: str, value: str | None, limit: int) -> TagList | None:
    """Parse `If-Match` or `If-None-Match`; `None` when the header is absent.

    Raises `TooManyTags` as soon as the list passes `limit` elements.
    """
    if value is None:
        return None
    tags: list[tuple[bool, str]] = []
    star = False
    position, end = 0, len(value)
    while position < end:
        empty = _EMPTY.match(value, position)
        if empty is not None and empty.end() > position:
            position = empty.end()
            continue
        match = _ELEMENT.match(value, position)
        if match is None:
            return _MALFORMED
        if match.group(3):
            star = True
        else:
            tags.append((match.group(1) is not None, match.group(2)))
        if len(tags) + star > limit:
            raise TooManyTags(name, limit)
        position = match.end()
    if star:
        # `*` stands alone; beside tags it is not a value either header can take.
        return _MALFORMED if tags else _STAR
    return TagList(tags=tuple(tags)) if tags else _MALFORMED


def _version(opaque: str) -> int | None:
    """The version an opaque tag names: exactly the text we issue for it, else none."""
    if not opaque.isascii() or not opaque.isdigit() or len(opaque) > 19:
        return None
    if len(opaque) > 1 and opaque[0] == "0":
        return None  # "05" was never issued
    return int(opaque)


def _versions(tags: Sequence[tuple[bool, str]], *, strong: bool) -> frozenset[int]:
    found = set()
    for weak, opaque in tags:
        if weak and strong:
            continue  # strong comparison: a weak tag matches nothing
        version = _version(opaque)
        if version is not None:
            found.add(version)
    return frozenset(found)


@dataclass(frozen=True, slots=True)
class Conditions:
    """The preconditions of one request: `If-Match` and `If-None-Match`, parsed."""

    if_match: TagList | None = None
    if_none_match: TagList | None = None

    @classmethod
    def from_headers(cls, headers: Headers, limit: int) -> Conditions:
        return cls(
            parse("If-Match", field_value(headers, "if-match"), limit),
            parse("If-None-Match", field_value(headers, "if-none-match"), limit),
        )

    def not_modified(self, record: Record) -> bool:
        """GET/HEAD: `If-None-Match` matches the current record (weak comparison).

        A malformed header matches nothing, so the client gets the full answer.
        """
        header = self.if_none_match
        if header is None or header.malformed:
            return False
        if header.star:
            return record.exists
        return record.version in _versions(header.tags, strong=False)

    def admits(self, record: Record) -> bool:
        """PATCH/PUT/DELETE: whether the write may happen to `record` (RFC 9110, 13.1).

        `If-Match` compares strongly: `*` needs a stored record, a list the current version.
        `If-None-Match` compares weakly and inverted (13.1.2): `*` writes only when no record
        is stored, a list only when the current version is none of them.  With both, both
        must hold.  A malformed value of either never holds.
        """
        if_match = self.if_match
        if if_match is not None:
            if if_match.malformed:
                return False
            if if_match.star:
                if not record.exists:
                    return False
            elif record.version not in _versions(if_match.tags, strong=True):
                return False
        header = self.if_none_match
        if header is None:
            return True
        if header.malformed:
            return False
        if header.star:
            return not record.exists
        return record.version not in _versions(header.tags, strong=False)

    def refusal(self, current: Record) -> str:
        """Which condition `current` fails: a key of `errors.PRECONDITION_DETAILS`."""
        header = self.if_none_match
        if header is not None:
            if header.malformed:
                return "malformed"
            if self.not_modified(current):
                return "stored" if header.star else "unchanged"
        return "changed"
