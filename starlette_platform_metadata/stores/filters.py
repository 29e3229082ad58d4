"""Filtering a platform's documents by equal top-level values (`RecordLister.records`).

A document matches a filter when each of the filter's keys is stored with an equal JSON value
(EXTENSIONS.md section 4): numbers by value (`7` equals `7.0`), booleans never equal numbers,
objects and arrays as JSON, element by element.  `matches` is that rule, the one every store
answers by; the SQL below narrows the candidates in the database (with an index where there is
one) and, where SQL alone could differ from `matches`, the engine checks the candidates again.

- SQLite: `json_type` and `json_extract` on the key's path (`json_each` for a key whose JSON
  text needs escapes, which SQLite's paths do not decode).  `json_type` tells `true` from `1`;
  SQLite compares an integer with a real exactly, as Python does: exact for every scalar.
- PostgreSQL: containment `(metadata::jsonb) @> probe`, served by the GIN index
  `<table>_metadata_jsonb` (`jsonb_path_ops`), for strings, booleans, null and numbers within
  +-2**53.  jsonb compares numbers as decimals: for the shortest round-trip text the package
  writes (`7`, `7.0`, `0.1`, `1e+16`) that is Python's comparison.  Beyond 2**53 an integer
  and a float may be equal as doubles but not as decimals (`1152921504606846976` and
  `1.152921504606847e18`): those numbers are compared as `float8`, which only narrows.  Objects
  and arrays narrow by containment of their non-number parts.  `matches` decides whatever
  only narrowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..jsontext import dump
from ..jsonvalues import json_equal

__all__ = ["SQLFilter", "json_equal", "matches", "postgres_filter", "sqlite_filter"]


def matches(document: Mapping[str, Any], filter: Mapping[str, Any]) -> bool:
    """Whether every key of `filter` is stored in `document` with an equal value."""
    return all(key in document and json_equal(document[key], value) for key, value in filter.items())


class SQLFilter:
    """A filter as SQL: `where` (starting with ` AND `, or empty), its parameters (numbered from
    the first one given), and whether the rows it selects must still pass `matches`."""

    __slots__ = ("params", "recheck", "where")

    def __init__(self, where: str, params: list[Any], recheck: bool) -> None:
        self.where = where
        self.params = params
        self.recheck = recheck


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# A key whose JSON text is the key itself: SQLite's path labels match the raw text, undecoded.
def _plain_key(key: str) -> bool:
    return not any(c in '"\\' or c < " " or c in "\u2028\u2029" for c in key)


_SQLITE_TYPES = {True: "'true'", False: "'false'", None: "'null'"}


def sqlite_filter(filter: Mapping[str, Any], first: int) -> SQLFilter:
    """The filter on SQLite's `metadata` text column."""
    clauses: list[str] = []
    params: list[Any] = []
    recheck = False

    def param(value: Any) -> str:
        params.append(value)
        return f"${first + len(params) - 1}"

    for key, value in filter.items():
        if _plain_key(key):
            path = param('$."' + key + '"')
            kind = f"json_type(metadata, {path})"
            atom = f"json_extract(metadata, {path})"
            close = ""
        else:
            clauses.append(f"EXISTS (SELECT 1 FROM json_each(metadata) WHERE key = {param(key)}")
            kind, atom, close = "type", "atom", ")"
        if value is None or isinstance(value, bool):
            test = f"{kind} = {_SQLITE_TYPES[value]}"
        elif isinstance(value, str):
            test = f"{kind} = 'text' AND {atom} = {param(value)}"
        elif _is_number(value):
            test = f"{kind} IN ('integer', 'real') AND {atom} = {param(value)}"
        else:
            test = f"{kind} = '{'object' if isinstance(value, dict) else 'array'}'"
            recheck = True
        if close:
            clauses[-1] += f" AND {test}{close}"
        else:
            clauses.append(test)
    return SQLFilter("".join(f" AND {clause}" for clause in clauses), params, recheck)


def _without_numbers(value: Any) -> Any:
    """`value` with every number taken out: what containment may test without deciding
    numbers (an array keeps its other elements: containment ignores order and count)."""
    if isinstance(value, dict):
        return {k: _without_numbers(v) for k, v in value.items() if not _is_number(v)}
    if isinstance(value, list):
        return [_without_numbers(v) for v in value if not _is_number(v)]
    return value


#: Numbers up to this magnitude compare alike as jsonb decimals and as Python numbers.
_EXACT = 2**53


def postgres_filter(filter: Mapping[str, Any], first: int) -> SQLFilter:
    """The filter on PostgreSQL's `metadata` json column, as `jsonb` (the GIN index's
    expression)."""
    probe: dict[str, Any] = {}
    clauses: list[str] = []
    params: list[Any] = []
    recheck = False

    def param(value: Any) -> str:
        params.append(value)
        return f"${first + len(params) - 1}"

    for key, value in filter.items():
        if _is_number(value) and abs(value) > _EXACT:
            k = param(key)
            clauses.append(
                f"(CASE WHEN jsonb_typeof((metadata::jsonb) -> {k}::text) = 'number' "
                f"THEN ((metadata::jsonb) -> {k}::text)::float8 = {param(float(value))}::float8 "
                "ELSE false END)"
            )
            recheck = True
        else:
            probe[key] = _without_numbers(value)
            recheck = recheck or isinstance(value, (dict, list))
    if probe:
        clauses.insert(0, f"(metadata::jsonb) @> {param(dump(probe))}::jsonb")
    return SQLFilter("".join(f" AND {clause}" for clause in clauses), params, recheck)
