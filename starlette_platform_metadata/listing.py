"""The admin listing, export and import of a platform's records (EXTENSIONS.md section 4).

The HTTP resource (`resources/users.py`) and the host's own code (`PlatformMetadataApp.export_records`
/ `.import_records`, the example host's `export` / `import` commands) share these functions:

- `read_page`: one page of stored records, by username after a keyset cursor, filtered, of
  members only.  Membership is the host's to answer (a `Members` function, for the HTTP
  resource the auth backend's `members_among`); a page whose records belong to former members
  is read on from where it stopped, a bounded number of times.
- `export_chunks`: every matching record of members, as NDJSON chunks bounded in bytes, one
  page of a bounded size in memory at a time.
- `import_ndjson`: NDJSON lines, each a PUT of one user's whole document by the same actor
  (schema, size and history apply), written in one atomic step of the store, or refused with
  every bad line named.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import changes, errors
from .responses import render_record
from .errors import ApiError
from .history import Writer
from .jsontext import dump
from .limits import Limits
from .payload import parse_json, validate_put
from .policies import Policies
from .sizes import oversized
from .stores.base import Change, Record, RecordLister, Write
from .stores.filters import matches

__all__ = [
    "DEFAULT_LIMIT",
    "EXPORT_CHUNK_BYTES",
    "EXPORT_PAGE_BYTES",
    "MAX_LIMIT",
    "ImportRefused",
    "Members",
    "Page",
    "export_chunks",
    "export_page_size",
    "import_ndjson",
    "parse_filter",
    "read_page",
]

#: `limit` of a listing page: default and largest.
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
#: Store reads one listing request makes at most while former members' records fall out.
MAX_READS = 10
#: Records per membership question of an import, and per store read of an export at most.
CHUNK = 500
#: Bytes of NDJSON in one chunk of an export at most; a longer line is a chunk of its own.
#: Servers write a chunk to the socket whole, so this is also what a client that stops
#: reading leaves in the server's buffer beyond the socket's own.
EXPORT_CHUNK_BYTES = 64 * 1024
#: Bytes of stored documents one store read of an export holds at most (`export_page_size`):
#: what an export keeps in memory at once, with one chunk, whatever the platform's size.
EXPORT_PAGE_BYTES = 2 * 1024 * 1024

#: Which of these usernames are members of the platform now (the host's answer).
Members = Callable[[Sequence[str]], Awaitable[Collection[str]]]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def parse_filter(raw: bytes, limits: Limits) -> dict[str, Any]:
    """The `filter` query value: a JSON object of top-level keys to values, or 400
    `{"filter": [...]}`."""
    try:
        value = parse_json(raw, limits.max_depth)
    except ApiError as exc:
        reason = str(exc.body.get("detail", "")).removeprefix(errors.PARSE_ERROR.format(""))
        raise errors.bad_filter(errors.FILTER_NOT_JSON.format(reason)) from None
    if not isinstance(value, dict):
        raise errors.bad_filter(errors.FILTER_NOT_OBJECT)
    if len(value) > limits.max_keys:
        raise errors.bad_filter(errors.FILTER_TOO_MANY_KEYS.format(limits.max_keys))
    return value


@dataclass(frozen=True, slots=True)
class Page:
    """A page of the listing.

    Attributes:
        results: `(username, record)` pairs, by username.
        after: where the next page starts (its cursor's username), or `None`: the last page.
    """

    results: list[tuple[str, Record]]
    after: str | None


# Whether a store's `records` takes `filter` (a third party's may predate it), by type.
_TAKES_FILTER: dict[type, bool] = {}


async def _read(
    store: RecordLister,
    platform_key: str,
    after: str | None,
    limit: int,
    filter: Mapping[str, Any] | None,
) -> tuple[list[tuple[str, Record]], str | None, bool]:
    """Up to `limit` stored records after `after` that match `filter`: the matches, the last
    username read, and whether the platform ended."""
    kind = type(store)
    takes = _TAKES_FILTER.get(kind)
    if takes is None:
        parameters = inspect.signature(store.records).parameters
        takes = _TAKES_FILTER[kind] = "filter" in parameters
    if takes or not filter:
        found = (
            await store.records(platform_key, after=after, limit=limit, filter=filter)
            if filter
            else await store.records(platform_key, after=after, limit=limit)
        )
        return found, found[-1][0] if found else after, len(found) < limit
    found = await store.records(platform_key, after=after, limit=limit)
    kept = [pair for pair in found if matches(pair[1].metadata, filter)]
    return kept, found[-1][0] if found else after, len(found) < limit


async def _members(members: Members | None, found: list[tuple[str, Record]]) -> list[tuple[str, Record]]:
    if members is None or not found:
        return found
    names = await members([username for username, _ in found])
    return [pair for pair in found if pair[0] in names]


async def read_page(
    store: RecordLister,
    platform_key: str,
    *,
    after: str | None,
    limit: int,
    filter: Mapping[str, Any] | None = None,
    members: Members | None = None,
) -> Page:
    """Up to `limit` stored records of members after `after` that match `filter`.

    Records of users who are no longer members are skipped: the page is read on until it is
    full or the platform ends, at most `MAX_READS` store reads; past that the page comes back
    short (even empty) with `after` where the reading stopped, so a client paging on loses
    nothing.  One more record than a page is read, to know whether another page follows.
    """
    found: list[tuple[str, Record]] = []
    cursor = after
    for _ in range(MAX_READS):
        batch, cursor, ended = await _read(store, platform_key, cursor, limit + 1, filter)
        found += await _members(members, batch)
        if len(found) > limit:
            return Page(found[:limit], found[limit - 1][0])
        if ended:
            return Page(found, None)
    return Page(found, cursor)


def export_page_size(max_document_bytes: int) -> int:
    """Records an export reads per store call: as many documents of `max_document_bytes` as
    fit in `EXPORT_PAGE_BYTES`, at least one, at most `CHUNK`."""
    return max(1, min(CHUNK, EXPORT_PAGE_BYTES // max_document_bytes))


async def export_chunks(
    store: RecordLister,
    platform_key: str,
    *,
    filter: Mapping[str, Any] | None = None,
    members: Members | None = None,
    limits: Limits | None = None,
) -> AsyncGenerator[bytes, None]:
    """Every stored record of members matching `filter`, as NDJSON success bodies, in chunks
    of whole lines of at most `EXPORT_CHUNK_BYTES` (a longer line is a chunk of its own).

    Memory does not grow with the platform: the store is read `export_page_size` records at
    a time (`limits.max_document_bytes`, default `Limits()`), each record is let go once
    rendered, and nothing is kept once a chunk is yielded.  Each read is its own query: as
    with paging, a record stored for the whole export comes exactly once."""
    page_size = export_page_size((limits or Limits()).max_document_bytes)
    parts: list[bytes] = []
    size = 0
    cursor: str | None = None
    while True:
        batch, cursor, ended = await _read(store, platform_key, cursor, page_size, filter)
        # Reversed, to pop each record as it is rendered: a paused export (a slow client)
        # holds what it has not sent, nothing more.  A copy: the store's list goes at once.
        pending = (await _members(members, batch))[::-1]
        del batch
        while pending:
            username, record = pending.pop()
            line = render_record(username, platform_key, record) + b"\n"
            del record
            if parts and size + len(line) > EXPORT_CHUNK_BYTES:
                yield _take(parts)
                size = 0
            parts.append(line)
            size += len(line)
            del line
            if size >= EXPORT_CHUNK_BYTES:
                yield _take(parts)
                size = 0
        if ended:
            if parts:
                yield _take(parts)
            return


def _take(parts: list[bytes]) -> bytes:
    """The lines as one chunk, the list emptied: yielding this leaves no frame holding it."""
    chunk = b"".join(parts)
    parts.clear()
    return chunk


class ImportRefused(Exception):
    """An import refused, nothing written.

    Attributes:
        lines: each bad line's number (from 1, as text) to its messages.
    """

    def __init__(self, lines: dict[str, list[str]]) -> None:
        super().__init__(lines)
        self.lines = lines


class _LineRefused(Exception):
    """A change of an import refused inside the store's atomic step."""

    def __init__(self, line: int, refusal: changes.Refusal) -> None:
        super().__init__(line)
        self.line = line
        self.refusal = refusal


def _messages(body: Any) -> list[str]:
    """A DRF-shaped error body as a line's messages: `"<field>: <message>"`, or the bare
    message of a non-field error or a parse error."""
    if isinstance(body, dict) and set(body) == {"detail"}:
        return [str(body["detail"])]
    found: list[str] = []
    for field, messages in body.items():
        for message in messages if isinstance(messages, list) else [messages]:
            found.append(message if field == "non_field_errors" else f"{field}: {message}")
    return found


def _username_errors(value: Any, limits: Limits) -> list[str]:
    if value is None:
        return ["username: This field may not be null."]
    if not isinstance(value, str):
        return ["username: Not a valid string."]
    if not value:
        return ["username: This field may not be blank."]
    if len(value) > limits.max_query_value_length:
        return [
            f"username: Ensure this field has no more than "
            f"{limits.max_query_value_length} characters."
        ]
    if _CONTROL.search(value):
        return ["username: May not contain control characters."]
    return []


def _parse_line(raw: bytes, limits: Limits) -> tuple[str, dict[str, Any]] | list[str]:
    """One line as `(username, metadata)`, or its messages."""
    try:
        data = parse_json(raw, limits.max_depth)
    except ApiError as exc:
        return _messages(exc.body)
    if not isinstance(data, dict):
        return [errors.NOT_AN_IMPORT_LINE.format(type(data).__name__)]
    problems: list[str] = []
    if "username" not in data:
        problems.append(f"username: {errors.REQUIRED}")
    else:
        problems += _username_errors(data["username"], limits)
    try:
        metadata = validate_put(data, limits)
    except ApiError as exc:
        problems += _messages(exc.body)
    if problems:
        return problems
    return data["username"], metadata


async def import_ndjson(
    body: bytes,
    *,
    platform_key: str,
    writer: Writer,
    policies: Policies,
    limits: Limits,
    actor: str | None,
    members: Members | None = None,
) -> int:
    """Replace the document of each user named in `body` (NDJSON: one
    `{"username": ..., "metadata": {...}}` per line), all in one atomic step; the count.

    Each line is a PUT by `actor` of a full view: the platform's schema and the size limits
    (`max_document_bytes`; `max_private_bytes` for private keys) apply and history keeps a
    revision (operation `"put"`).  Blank lines are skipped (and counted).  A user named twice,
    or not a member (`members`), is a bad line.  Raises `ImportRefused` naming every bad
    line, having written nothing.
    """
    bad: dict[str, list[str]] = {}
    parsed: list[tuple[int, str, dict[str, Any]]] = []
    first_line: dict[str, int] = {}
    for number, raw in enumerate(body.split(b"\n"), start=1):
        if not raw.strip():
            continue
        outcome = _parse_line(raw.removesuffix(b"\r"), limits)
        if isinstance(outcome, list):
            bad[str(number)] = outcome
            continue
        username, metadata = outcome
        if username in first_line:
            bad[str(number)] = [errors.DUPLICATE_USERNAME.format(first_line[username])]
            continue
        first_line[username] = number
        parsed.append((number, username, metadata))
    if members is not None:
        for start in range(0, len(parsed), CHUNK):
            chunk = parsed[start : start + CHUNK]
            found = await members([username for _, username, _ in chunk])
            for number, username, _ in chunk:
                if username not in found:
                    bad[str(number)] = [errors.USER_NOT_FOUND]
    policy = (await policies.current(platform_key)).policy
    rules = None if policy.is_default else policy
    for number, _, metadata in parsed:
        if str(number) in bad:
            continue
        problems: list[str] = []
        if rules is not None and not rules.valid(metadata):
            problems += [f"metadata: {message}" for message in rules.schema_errors(metadata)]
        over = oversized(
            dump(metadata),
            metadata,
            policy=rules,
            member=False,
            max_bytes=limits.max_document_bytes,
            max_private_bytes=limits.max_private_bytes,
        )
        if over is not None:
            problems.append(_too_large(*over))
        if problems:
            bad[str(number)] = problems
    if bad:
        raise ImportRefused(dict(sorted(bad.items(), key=lambda item: int(item[0]))))
    updates = [
        (
            username,
            _numbered(
                number,
                changes.replace(
                    metadata,
                    max_bytes=limits.max_document_bytes,
                    max_private_bytes=limits.max_private_bytes,
                    actor=actor,
                    policy=rules,
                ),
            ),
        )
        for number, username, metadata in parsed
    ]
    try:
        await writer.write_many(platform_key, updates)
    except _LineRefused as exc:
        # The policy changed between the checks above and the write: name the line.
        raise ImportRefused({str(exc.line): _refusal_messages(exc.refusal)}) from None
    return len(updates)


def _numbered(line: int, change: Change) -> Change:
    def numbered(current: Record) -> Write | None:
        try:
            return change(current)
        except changes.Refusal as exc:
            raise _LineRefused(line, exc) from exc

    return numbered


def _refusal_messages(refusal: changes.Refusal) -> list[str]:
    if isinstance(refusal, changes.SchemaViolation):
        return [f"metadata: {message}" for message in refusal.errors]
    if isinstance(refusal, changes.DocumentTooLarge):
        return [_too_large(refusal.name, refusal.limit)]
    return [type(refusal).__name__]


def _too_large(name: str, limit: int) -> str:
    return "metadata: " + errors.LIMIT_DETAILS[name].format(limit=limit)
