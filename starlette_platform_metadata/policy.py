"""The platform policy: protected keys, private keys and a JSON Schema (EXTENSIONS.md section 1).

Pure: a PUT body in, a `Policy` out (`parse_policy`); the member-view rules as functions of the
stored document (`member_view`, `forbidden_patch_keys`, `member_put`, `member_delete`), for the
endpoint to call inside the atomic write.  No HTTP, no storage.

The schema is a tenant admin's input that then runs inside every write of the platform, so
nothing in it may cost unbounded time or memory.  jsonschema-rs compiles it (no Python code is
generated from it), matches `pattern`s with a linear-time engine and fetches nothing; on top of
that `PolicyLimits` bounds what the library does not: size, nesting, the number and compiled
size of regexes, the work a `$ref` can multiply (`max_schema_weight`), and the cost of
explaining a refusal (`max_error_work`).  Each bound says why next to its default.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn
from urllib.parse import unquote, urldefrag, urljoin

import jsonschema_rs

from .exceptions import PlatformMetadataError
from .jsontext import dump
from .limits import check_positive

__all__ = [
    "DEFAULT_POLICY",
    "DRAFT_2020_12",
    "Policy",
    "PolicyInvalid",
    "PolicyLimits",
    "forbidden_patch_keys",
    "json_equal",
    "located",
    "member_delete",
    "member_put",
    "member_view",
    "parse_policy",
]

#: The only dialect a policy schema may declare in `$schema` (with or without a trailing `#`).
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"

# DRF's wording (ListField, CharField, Serializer), so a client of the original service reads
# the same sentences.
NO_DATA = "No data provided"
NOT_A_DICT = "Invalid data. Expected a dictionary, but got {}."
NULL = "This field may not be null."
NOT_A_LIST = 'Expected a list of items but got type "{}".'
TOO_MANY_ENTRIES = "Ensure this field has no more than {} elements."
NOT_A_STRING = "Not a valid string."
BLANK = "This field may not be blank."
TOO_LONG = "Ensure this field has no more than {} characters."
# Our wording, where DRF has none.
OVERLAP = "Keys matched by both protected_keys and private_keys: {}."
SCHEMA_NOT_A_SCHEMA = 'Expected a JSON Schema (an object or a boolean) but got type "{}".'
SCHEMA_NOT_JSON = "Value must be valid JSON."
SCHEMA_TOO_LARGE = "Ensure the schema has no more than {} bytes as compact JSON."
SCHEMA_TOO_DEEP = "Ensure the schema nests no deeper than {} levels."
SCHEMA_DIALECT = (
    f'Only JSON Schema draft 2020-12 is supported: "$schema" must be "{DRAFT_2020_12}".'
)
SCHEMA_TOO_MANY_PATTERNS = "Ensure the schema has no more than {} regular expressions."
SCHEMA_TOO_COMPLEX = (
    "The schema is too complex: with every $ref expanded it weighs more than {}"
    " (one per subschema, one per 64 bytes of keyword values)."
)
SCHEMA_TOO_COMPLEX_ELEMENTS = (
    "The schema is too complex: the subschemas applying to every item of an array or member"
    " of an object weigh more than {} with every $ref expanded."
)
SCHEMA_UNRESOLVABLE = (
    "$ref {} does not resolve inside the schema; nothing is ever fetched from elsewhere."
)
SCHEMA_BAD_REGEX = (
    " (patterns use a linear-time engine: no look-around or back-references, and at most {}"
    " bytes once compiled)"
)
DOCUMENT_TOO_COSTLY = (
    "/: the document does not satisfy the schema; it is too large to list where in the time"
    " allowed."
)

# Instance values never appear in schema messages: a member would otherwise read private
# values through them, and a 64 KiB document would be copied into every message.
_MASK = "value"
# Messages can quote the schema (an `enum`, a `not`): a refusal stays readable and small.
_MAX_MESSAGE = 500
# Relative `$id`s and `$ref`s resolve against this when the root declares no `$id`; the
# reserved `.invalid` domain can name nothing real.
_ROOT_BASE = "https://policy.invalid/schema.json"


@dataclass(frozen=True, slots=True)
class PolicyLimits:
    """Bounds on a policy, checked when it is PUT; nothing past them is ever stored.

    Attributes:
        max_entries: entries in `protected_keys`, and in `private_keys` (the contract's 256).
        max_key_length: characters in one entry, `*` included; keep it equal to
            `Limits.max_key_length`, as an entry longer than any key could never match.
        max_schema_bytes: the schema as compact UTF-8 JSON (64 KiB, the size of a document).
        max_schema_depth: nesting of the schema (the schema itself is level 1).  The endpoint
            must parse a policy body at least one level deeper than this.
        max_schema_weight: the schema with every `$ref` and `$dynamicRef` replaced by its
            target, weighed one per subschema plus one per 64 bytes of its other keyword
            values (which error messages may quote).  A few `$ref`s can stand for
            exponentially many subschemas (30 definitions each referring twice to the next
            are 2**30), and jsonschema-rs walks every one of them: listing the errors of
            2**20 took 77 s.  4,096 is several times what a hand-written metadata schema
            weighs, and a check of one value against it takes milliseconds.
        max_element_weight: the part of that weight under `items`, `additionalProperties`,
            `patternProperties`, `propertyNames`, `contains` and `unevaluated*`, which runs
            once per item or member: up to some 30,000 times for a 64 KiB document, so it
            gets a budget of its own (every other subschema checks at most one value).  At
            128, the costliest schema it admits checks a 64 KiB document in about 0.2 s;
            4,000 `anyOf` branches under `items` (60 KB of schema) took 15 s.
        max_ref_unroll: how many times a recursive `$ref` is counted along one path.  Every
            turn of a cycle that checks anything descends one level into the document, so
            this must be at least `Limits.max_depth` (10).
        max_patterns: regular expressions in the schema (`pattern`, `patternProperties`).
            jsonschema-rs compiles each one separately and keeps it (1,000 patterns of 1 MB
            took 2 GB and 4 s), so this times the two next bounds is the most regex memory
            a policy holds: 64 x (128 + 128) KiB = 16 MiB.
        max_regex_bytes: compiled size of one regular expression (`RegexOptions.size_limit`).
            A bounded repetition is compiled by copying (`a{10000}` is 320 KB,
            `(?:a{1000}){1000}` a hundred times that).  128 KiB holds realistic patterns
            (`^\\w{1,256}$` is 35 KB, a UUID 3 KB), while `^.{0,1000}$` (1 MB: `.` is any
            UTF-8 character) is refused: `maxLength` says that.
        max_regex_cache_bytes: lazy DFA cache of one regular expression while it matches
            (`RegexOptions.dfa_size_limit`); past it the engine falls back to a slower but
            still linear-time search.
        max_errors: schema violation messages reported for one document.
        max_error_work: jsonschema-rs builds every error of a document, each with a copy of
            the value it is about and, under `anyOf`/`oneOf`, the errors of every branch
            (about 6 microseconds per schema-value pair).  When the schema weight times the
            values of the document exceeds this, only the first error is reported, and when
            even that may cost more, one message naming no place.
    """

    max_entries: int = 256
    max_key_length: int = 256
    max_schema_bytes: int = 64 * 1024
    max_schema_depth: int = 32
    max_schema_weight: int = 4096
    max_element_weight: int = 128
    max_ref_unroll: int = 10
    max_patterns: int = 64
    max_regex_bytes: int = 128 * 1024
    max_regex_cache_bytes: int = 128 * 1024
    max_errors: int = 20
    max_error_work: int = 100_000

    def __post_init__(self) -> None:
        check_positive(self)


_DEFAULT_MAX_ERRORS = PolicyLimits().max_errors


class PolicyInvalid(PlatformMetadataError):
    """A policy PUT body was refused; nothing changes.

    Attributes:
        errors: the 400 body, in DRF's field shape (`{"protected_keys": {"0": [...]}}`,
            `{"schema": [...]}`, `{"non_field_errors": [...]}`).
    """

    def __init__(self, errors: dict[str, Any]) -> None:
        super().__init__(errors)
        self.errors = errors


@dataclass(frozen=True, slots=True)
class _Patterns:
    """Key patterns split for matching: exact keys in a set, prefixes for `str.startswith`."""

    exact: frozenset[str]
    prefixes: tuple[str, ...]

    @classmethod
    def of(cls, entries: Iterable[str]) -> _Patterns:
        exact: set[str] = set()
        prefixes: list[str] = []
        for entry in entries:
            if entry.endswith("*"):
                prefixes.append(entry[:-1])
            else:
                exact.add(entry)
        return cls(frozenset(exact), tuple(prefixes))

    def match(self, key: str) -> bool:
        return key in self.exact or key.startswith(self.prefixes)


@dataclass(frozen=True, slots=True)
class _Compiled:
    validator: jsonschema_rs.Validator
    weight: int
    context_weight: int
    max_errors: int
    max_error_work: int


@dataclass(frozen=True, slots=True)
class Policy:
    """A platform's policy.

    Build one with `parse_policy` (or use `DEFAULT_POLICY`): it validates the entries and
    compiles the schema, which a `Policy` keeps privately.

    Attributes:
        protected_keys: top-level keys members may read but not change, first occurrence
            first.  An entry ending in `*` is a prefix (`"billing_*"` matches `billing_` and
            every key starting with it; `"*"` matches every key); a `*` anywhere else is
            part of the key.
        private_keys: top-level keys members may neither read nor change; same patterns.
        schema: the JSON Schema (draft 2020-12) every stored document must satisfy after a
            write, or `None`.  Treat it as read-only.
    """

    protected_keys: tuple[str, ...] = ()
    private_keys: tuple[str, ...] = ()
    schema: dict[str, Any] | bool | None = None
    _compiled: _Compiled | None = field(default=None, compare=False, repr=False)
    _protected: _Patterns = field(init=False, compare=False, repr=False)
    _private: _Patterns = field(init=False, compare=False, repr=False)
    _private_marks: tuple[str, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if (self.schema is None) != (self._compiled is None):
            raise ValueError("A Policy with a schema is built by parse_policy")
        object.__setattr__(self, "_protected", _Patterns.of(self.protected_keys))
        object.__setattr__(self, "_private", _Patterns.of(self.private_keys))
        # How each private pattern starts in the package's JSON text (`dump` escapes only
        # quotes, backslashes and control characters): `"billing_` for `billing_*`.
        marks = tuple(
            dump(entry[:-1] if entry.endswith("*") else entry)[:-1] for entry in self.private_keys
        )
        object.__setattr__(self, "_private_marks", marks)

    def may_hold_private(self, document_json: str) -> bool:
        """Whether a document, as the package's compact JSON text, may hold a private key.

        `False` is certain (no private key's text appears in it), so a response can be sent
        as stored without parsing it; `True` may be a value that merely looks like one.
        """
        return any(mark in document_json for mark in self._private_marks)

    def is_protected(self, key: str) -> bool:
        """Whether `protected_keys` matches `key`."""
        return self._protected.match(key)

    def is_private(self, key: str) -> bool:
        """Whether `private_keys` matches `key`."""
        return self._private.match(key)

    @property
    def is_default(self) -> bool:
        """Nothing protected, nothing private, no schema: an unconfigured platform's policy."""
        return not self.protected_keys and not self.private_keys and self.schema is None

    def valid(self, document: dict[str, Any]) -> bool:
        """Whether `document` satisfies the schema (always, without one); fast, no messages."""
        return self._compiled is None or self._compiled.validator.is_valid(document)

    @property
    def max_errors(self) -> int:
        """`PolicyLimits.max_errors` of the policy's schema: messages given for one document."""
        return _DEFAULT_MAX_ERRORS if self._compiled is None else self._compiled.max_errors

    def schema_errors(self, document: dict[str, Any]) -> list[str]:
        """Why `document` does not satisfy the schema: `[]` when it does.

        Each message is `"<JSON Pointer of the failing value, "/" for the root>: <message>"`,
        in the validator's order, at most `PolicyLimits.max_errors` of them.  Values of the
        document are never quoted (the message says `value`).  When listing every error
        would cost more than `PolicyLimits.max_error_work`, only the first is given, or, if
        even that is too costly, one message for the root.  This is the full view, for
        tenant admins; `member_errors.member_schema_errors` is a member's.
        """
        if self.valid(document):
            return []
        found = self.explain(document)
        if found is None:
            return [DOCUMENT_TOO_COSTLY]
        return [located(error) for error in itertools.islice(found, self.max_errors)]

    def explain(
        self, document: dict[str, Any], measured: Any = None
    ) -> Iterable[jsonschema_rs.ValidationError] | None:
        """The validator's errors of a `document` that does not satisfy the schema.

        As many as `PolicyLimits.max_error_work` allows: every one, only the first, or `None`
        when even the first may cost too much.  The budget counts the values of `measured`
        (default: `document`), so a caller decides what the choice may depend on: a member's
        answer must not depend on the size of what it cannot see.
        """
        compiled = self._compiled
        if compiled is None:
            return []
        if measured is None:
            measured = document
        budget = compiled.max_error_work
        # Counted no further than the smaller weight needs: past that the answer is known.
        cap = budget // (compiled.context_weight or compiled.weight) + 1
        values = _count_values(measured, cap)
        if compiled.weight * values <= budget:
            return compiled.validator.iter_errors(document)
        if compiled.context_weight * values <= budget:
            try:
                compiled.validator.validate(document)
            except jsonschema_rs.ValidationError as error:
                return [error]
        return None

    def to_json(self, view: Literal["admin", "member"]) -> dict[str, Any]:
        """The policy fields of a GET or PUT answer; members do not get `private_keys`.

        The endpoint adds `platform_key`, `version` and `updated_at`.  The `schema` is a copy.
        """
        if view not in ("admin", "member"):
            raise ValueError(f"view must be 'admin' or 'member', not {view!r}")
        body: dict[str, Any] = {"protected_keys": list(self.protected_keys)}
        if view == "admin":
            body["private_keys"] = list(self.private_keys)
        body["schema"] = None if self.schema is None else json.loads(dump(self.schema))
        return body


#: Nothing protected, nothing private, no schema.
DEFAULT_POLICY = Policy()


def parse_policy(body: object, limits: PolicyLimits) -> Policy:
    """Validate a policy PUT body as a DRF serializer would, and compile its schema.

    Every field is optional and takes its default when missing; unknown fields are ignored.
    Entries are taken verbatim (no trimming); a repeated entry is kept once, at its first
    position.  Field errors come first, all of them; the check that no key is matched by
    both lists runs only when the fields are valid (DRF's `validate`).

    Raises:
        PolicyInvalid: the 400 body, in DRF's field shape.
    """
    if body is None:
        raise PolicyInvalid({"non_field_errors": [NO_DATA]})
    if not isinstance(body, dict):
        raise PolicyInvalid({"non_field_errors": [NOT_A_DICT.format(type(body).__name__)]})
    problems: dict[str, Any] = {}
    lists: dict[str, tuple[str, ...]] = {}
    for name in ("protected_keys", "private_keys"):
        entries, found = _entries(body.get(name, []), limits)
        if found:
            problems[name] = found
        lists[name] = entries
    schema = body.get("schema")
    compiled = None
    if schema is not None:
        try:
            schema, compiled = _compile(schema, limits)
        except _SchemaRefused as refused:
            problems["schema"] = [refused.message]
    if problems:
        raise PolicyInvalid(problems)
    protected, private = lists["protected_keys"], lists["private_keys"]
    if pairs := _overlapping(protected, private):
        raise PolicyInvalid({"non_field_errors": [OVERLAP.format(pairs)]})
    return Policy(protected, private, schema, compiled)


def _entries(value: object, limits: PolicyLimits) -> tuple[tuple[str, ...], Any]:
    """A key list's entries, deduplicated, and its errors in DRF's shape (empty when none)."""
    if value is None:
        return (), [NULL]
    if not isinstance(value, list):
        return (), [NOT_A_LIST.format(type(value).__name__)]
    # Counted before the entries, unlike DRF, so a huge list costs nothing to refuse.
    if len(value) > limits.max_entries:
        return (), [TOO_MANY_ENTRIES.format(limits.max_entries)]
    problems: dict[str, list[str]] = {}
    for index, entry in enumerate(value):
        if entry is None:
            problems[str(index)] = [NULL]
        elif not isinstance(entry, str):
            problems[str(index)] = [NOT_A_STRING]
        elif not entry:
            problems[str(index)] = [BLANK]
        elif len(entry) > limits.max_key_length:
            problems[str(index)] = [TOO_LONG.format(limits.max_key_length)]
    if problems:
        return (), problems
    return tuple(dict.fromkeys(value)), {}


def _overlap(a: str, b: str) -> bool:
    """Whether some key is matched both by pattern `a` and by pattern `b`.

    Two prefixes share a key exactly when one prefix starts with the other (`a*` and `ab*`
    share `ab`, `a*` and `b*` share nothing); a prefix and an exact key when the key starts
    with the prefix; two exact keys when they are equal.  Entries are never empty, so an
    exact key is always a key.
    """
    if a.endswith("*") and b.endswith("*"):
        return a[:-1].startswith(b[:-1]) or b[:-1].startswith(a[:-1])
    if a.endswith("*"):
        return b.startswith(a[:-1])
    if b.endswith("*"):
        return a.startswith(b[:-1])
    return a == b


_MAX_PAIRS_SHOWN = 10


def _overlapping(protected: Sequence[str], private: Sequence[str]) -> str:
    pairs = [
        f"protected {_quote(p)} and private {_quote(q)}"
        for p in protected
        for q in private
        if _overlap(p, q)
    ]
    shown = "; ".join(pairs[:_MAX_PAIRS_SHOWN])
    if len(pairs) > _MAX_PAIRS_SHOWN:
        shown += f" (and {len(pairs) - _MAX_PAIRS_SHOWN} more)"
    return shown


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


# --- member view -------------------------------------------------------------------------


def json_equal(a: Any, b: Any) -> bool:
    """Equality of two JSON values.

    Numbers compare by value (`7` equals `7.0`: JSON has one number type, and a client that
    reads `7.0` back may well send `7`), booleans never equal numbers (`true` is not `1`),
    objects compare whatever their key order.
    """
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(value, b[key]) for key, value in a.items())
    return a is None and b is None


def _restricted(policy: Policy, key: str) -> bool:
    return policy.is_private(key) or policy.is_protected(key)


def _may_not_set(policy: Policy, stored: Mapping[str, Any], key: str, value: Any) -> bool:
    """A private key, or a protected key to anything but its stored value (or not stored)."""
    if policy.is_private(key):
        return True
    return policy.is_protected(key) and (key not in stored or not json_equal(value, stored[key]))


def member_view(policy: Policy, document: Mapping[str, Any]) -> dict[str, Any]:
    """`document` as a member reads it: private keys left out."""
    return {key: value for key, value in document.items() if not policy.is_private(key)}


def forbidden_patch_keys(
    policy: Policy,
    stored: Mapping[str, Any],
    set: Mapping[str, Any],
    delete: Iterable[str],
) -> list[str]:
    """The keys a member's PATCH may not touch, sorted; `[]` when it may go ahead.

    A private key named in `set` or `delete`; a protected key set to anything but its stored
    value (`json_equal`), or set while not stored; a stored protected key in `delete`, even
    if `set` puts it back.  Setting a protected key to its stored value, or deleting one that
    is not stored, changes nothing and is allowed.
    """
    forbidden = {key for key, value in set.items() if _may_not_set(policy, stored, key, value)}
    forbidden.update(
        key
        for key in delete
        if policy.is_private(key) or (policy.is_protected(key) and key in stored)
    )
    return sorted(forbidden)


def member_put(
    policy: Policy, stored: Mapping[str, Any], body: Mapping[str, Any]
) -> dict[str, Any] | list[str]:
    """The document a member's PUT of `body` leaves, or the sorted keys that refuse it.

    `body` replaces the keys the member may change; stored protected and private keys stay.
    A protected key may be in `body` only with its stored value (so GET, edit, PUT works),
    and then keeps its stored value exactly; a private key may not be in it at all.
    """
    forbidden = sorted(
        key for key, value in body.items() if _may_not_set(policy, stored, key, value)
    )
    if forbidden:
        return forbidden
    document = {
        key: stored[key] if policy.is_protected(key) else value for key, value in body.items()
    }
    for key, value in stored.items():
        if key not in document and _restricted(policy, key):
            document[key] = value
    return document


def member_delete(policy: Policy, stored: Mapping[str, Any]) -> dict[str, Any]:
    """What a member's DELETE leaves: the stored protected and private keys (`{}`: none)."""
    return {key: value for key, value in stored.items() if _restricted(policy, key)}


# --- the schema --------------------------------------------------------------------------


class _SchemaRefused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _compile(schema: object, limits: PolicyLimits) -> tuple[dict[str, Any] | bool, _Compiled]:
    """A private copy of `schema` and its validator, or `_SchemaRefused`.

    The cheap bounds run before jsonschema-rs sees the schema, so no hostile schema gets to
    the compiler.
    """
    if not isinstance(schema, (dict, bool)):
        raise _SchemaRefused(SCHEMA_NOT_A_SCHEMA.format(type(schema).__name__))
    if not _within_depth(schema, limits.max_schema_depth):
        raise _SchemaRefused(SCHEMA_TOO_DEEP.format(limits.max_schema_depth))
    try:
        text = dump(schema)
    except (TypeError, ValueError):
        raise _SchemaRefused(SCHEMA_NOT_JSON) from None
    if len(text.encode()) > limits.max_schema_bytes:
        raise _SchemaRefused(SCHEMA_TOO_LARGE.format(limits.max_schema_bytes))
    copy: dict[str, Any] | bool = json.loads(text)
    weight, context_weight = _Weigher(copy, limits).weigh()
    try:
        validator = jsonschema_rs.Draft202012Validator(
            copy,
            # Formats are annotations in 2020-12.  Asserting them would tie validity to this
            # library's format checkers (which change between releases, flipping stored
            # documents), and `"format": "regex"` would compile member-supplied regexes.
            validate_formats=False,
            retriever=_refuse_retrieval,
            mask=_MASK,
            pattern_options=jsonschema_rs.RegexOptions(
                size_limit=limits.max_regex_bytes,
                dfa_size_limit=limits.max_regex_cache_bytes,
            ),
        )
    except jsonschema_rs.ValidationError as error:
        raise _SchemaRefused(_schema_message(error, limits)) from None
    except (jsonschema_rs.ReferencingError, ValueError) as error:
        raise _SchemaRefused(_truncate(str(error))) from None
    return copy, _Compiled(
        validator, weight, context_weight, limits.max_errors, limits.max_error_work
    )


def _refuse_retrieval(uri: str, /) -> NoReturn:
    # jsonschema-rs would otherwise fetch `$ref`s over HTTP or from files.
    raise ValueError(f"{uri} is not fetched: references must resolve inside the schema")


def _schema_message(error: jsonschema_rs.ValidationError, limits: PolicyLimits) -> str:
    if isinstance(error.kind, jsonschema_rs.ValidationErrorKind.Referencing):
        return _truncate(error.message)
    message = error.message
    if isinstance(error.kind, jsonschema_rs.ValidationErrorKind.Format):
        if error.kind.format == "regex":
            message += SCHEMA_BAD_REGEX.format(limits.max_regex_bytes)
    return _truncate(f"{_pointer(error.instance_path)}: {message}")


def located(error: jsonschema_rs.ValidationError) -> str:
    """A schema error as the contract words it: `"<JSON Pointer, / for the root>: <message>"`."""
    return _truncate(f"{_pointer(error.instance_path)}: {error.message}")


def _pointer(path: Iterable[str | int]) -> str:
    """RFC 6901 JSON Pointer, except that the root is `/`, as the contract says."""
    tokens = [str(token).replace("~", "~0").replace("/", "~1") for token in path]
    return "/" + "/".join(tokens)


def _truncate(message: str) -> str:
    if len(message) <= _MAX_MESSAGE:
        return message
    return message[: _MAX_MESSAGE - 1] + "\u2026"


def _within_depth(value: Any, limit: int, depth: int = 1) -> bool:
    """True when `value` (at `depth`) nests no deeper than `limit`; stops at the limit."""
    if depth > limit:
        return False
    if isinstance(value, dict):
        value = value.values()
    elif not isinstance(value, list):
        return True
    return all(
        _within_depth(item, limit, depth + 1) for item in value if isinstance(item, (dict, list))
    )


def _count_values(document: Any, cap: int) -> int:
    """Values and member names in `document`, counting no further than `cap`."""
    count = 0
    stack = [document]
    while stack and count < cap:
        value = stack.pop()
        count += 1
        if isinstance(value, dict):
            count += len(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return min(count, cap)


# Where 2020-12 (and the legacy keywords jsonschema-rs still honours) keeps subschemas.
_SCHEMA_MAPS = frozenset(
    {"$defs", "definitions", "properties", "patternProperties", "dependentSchemas", "dependencies"}
)
_SCHEMA_VALUES = frozenset(
    {
        "additionalItems",
        "additionalProperties",
        "contains",
        "contentSchema",
        "else",
        "if",
        "items",
        "not",
        "propertyNames",
        "then",
        "unevaluatedItems",
        "unevaluatedProperties",
    }
)
_SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
# Flags of where a subschema sits.  Under `anyOf`/`oneOf`, its errors are carried by the
# error of every branch (see `PolicyLimits.max_error_work`).
_IN_CONTEXT = 1
_CONTEXT_LISTS = frozenset({"anyOf", "oneOf"})
# Under these it applies to every item of an array or member of an object, not to one value.
_IN_ELEMENTS = 2
_ELEMENT_KEYWORDS = frozenset(
    {
        "additionalItems",
        "additionalProperties",
        "contains",
        "items",
        "patternProperties",
        "propertyNames",
        "unevaluatedItems",
        "unevaluatedProperties",
    }
)
_DIALECTS = frozenset({DRAFT_2020_12, DRAFT_2020_12 + "#"})
_BYTES_PER_WEIGHT = 64


@dataclass(slots=True)
class _Node:
    """What the weigher needs of one subschema, worked out once however often it is reached."""

    weight: int
    children: list[tuple[Any, int]]  # (subschema, the flags its keyword sets)
    refs: list[tuple[str, bool]]  # (reference, is a $dynamicRef)


def _rebase(base: str, node: dict[str, Any]) -> str:
    identifier = node.get("$id")
    return urldefrag(urljoin(base, identifier))[0] if isinstance(identifier, str) else base


def _is_schema(value: object) -> bool:
    return isinstance(value, (dict, bool))


class _Weigher:
    """Weighs the schema as jsonschema-rs will walk it: every `$ref` expanded.

    Also refuses what the library would accept but we do not: another dialect in `$schema`,
    a reference that does not resolve inside the schema, too many regular expressions.
    Each step adds at least one to the weight, which is capped, so this costs no more than
    `max_schema_weight` steps however the references multiply.
    """

    def __init__(self, schema: dict[str, Any] | bool, limits: PolicyLimits) -> None:
        self.limits = limits
        self.root = schema
        self.nodes: dict[int, _Node] = {}
        self.patterns = 0
        # Embedded resources by absolute URI, and their anchors, as 2020-12 finds them.
        self.resources: dict[str, Any] = {_ROOT_BASE: schema}
        self.anchors: dict[tuple[str, str], tuple[Any, str]] = {}
        self.dynamic_anchors: dict[str, list[tuple[Any, str]]] = {}
        self._index()

    def _index(self) -> None:
        stack: list[tuple[Any, str]] = [(self.root, _ROOT_BASE)]
        while stack:
            node, base = stack.pop()
            if not isinstance(node, dict):
                continue
            base = _rebase(base, node)
            if isinstance(node.get("$id"), str):
                self.resources.setdefault(base, node)
            for keyword in ("$anchor", "$dynamicAnchor"):
                name = node.get(keyword)
                if isinstance(name, str):
                    self.anchors.setdefault((base, name), (node, base))
                    if keyword == "$dynamicAnchor":
                        self.dynamic_anchors.setdefault(name, []).append((node, base))
            stack.extend((child, base) for child, _ in self._node(node).children)

    def _node(self, node: Any) -> _Node:
        known = self.nodes.get(id(node))
        if known is not None:
            return known
        own_bytes = 0
        children: list[tuple[Any, int]] = []
        refs: list[tuple[str, bool]] = []
        if isinstance(node, dict):
            schema = node.get("$schema", DRAFT_2020_12)
            if schema not in _DIALECTS:
                raise _SchemaRefused(SCHEMA_DIALECT)
            for keyword, value in node.items():
                flags = (_IN_CONTEXT if keyword in _CONTEXT_LISTS else 0) | (
                    _IN_ELEMENTS if keyword in _ELEMENT_KEYWORDS else 0
                )
                if keyword in _SCHEMA_MAPS and isinstance(value, dict):
                    children.extend((sub, flags) for sub in value.values() if _is_schema(sub))
                    own_bytes += sum(len(name) for name in value)
                    if keyword == "patternProperties":
                        self._count_patterns(len(value))
                elif keyword in _SCHEMA_VALUES and _is_schema(value):
                    children.append((value, flags))
                elif keyword in _SCHEMA_LISTS and isinstance(value, list):
                    children.extend((sub, flags) for sub in value if _is_schema(sub))
                elif keyword in ("$ref", "$dynamicRef") and isinstance(value, str):
                    refs.append((value, keyword == "$dynamicRef"))
                else:
                    if keyword == "pattern" and isinstance(value, str):
                        self._count_patterns(1)
                    own_bytes += len(keyword) + len(dump(value))
        described = _Node(1 + own_bytes // _BYTES_PER_WEIGHT, children, refs)
        self.nodes[id(node)] = described
        return described

    def _count_patterns(self, count: int) -> None:
        self.patterns += count
        if self.patterns > self.limits.max_patterns:
            raise _SchemaRefused(SCHEMA_TOO_MANY_PATTERNS.format(self.limits.max_patterns))

    def weigh(self) -> tuple[int, int]:
        """(weight, the part of it under `anyOf`/`oneOf`), or `_SchemaRefused`."""
        limits = self.limits
        weight = context_weight = element_weight = 0
        # How many times each $ref target is being expanded on the current path.
        on_path: dict[int, int] = {}
        # A (schema, base URI, flags) to weigh, or the id of a $ref target to leave.
        stack: list[tuple[Any, str, int] | int] = [(self.root, _ROOT_BASE, 0)]
        while stack:
            item = stack.pop()
            if isinstance(item, int):
                on_path[item] -= 1
                continue
            node, base, flags = item
            described = self._node(node)
            weight += described.weight
            if flags & _IN_CONTEXT:
                context_weight += described.weight
            if flags & _IN_ELEMENTS:
                element_weight += described.weight
            if weight > limits.max_schema_weight:
                raise _SchemaRefused(SCHEMA_TOO_COMPLEX.format(limits.max_schema_weight))
            if element_weight > limits.max_element_weight:
                limit = limits.max_element_weight
                raise _SchemaRefused(SCHEMA_TOO_COMPLEX_ELEMENTS.format(limit))
            if not isinstance(node, dict):
                continue
            base = _rebase(base, node)
            for child, entered in described.children:
                stack.append((child, base, flags | entered))
            for reference, dynamic in described.refs:
                for target, target_base in self._resolve(reference, dynamic, base):
                    key = id(target)
                    if on_path.get(key, 0) >= limits.max_ref_unroll:
                        weight += 1
                        continue
                    on_path[key] = on_path.get(key, 0) + 1
                    stack.append(key)
                    stack.append((target, target_base, flags))
        return weight, context_weight

    def _resolve(self, reference: str, dynamic: bool, base: str) -> list[tuple[Any, str]]:
        """The targets of a reference; a `$dynamicRef` may land on any same-named anchor."""
        if reference.startswith("#"):
            uri, fragment = base, reference[1:]
        else:
            uri, fragment = urldefrag(urljoin(base, reference))
        resource = self.resources.get(uri)
        target: tuple[Any, str] | None = None
        if resource is not None:
            if not fragment:
                target = (resource, uri)
            elif fragment.startswith("/"):
                target = _follow(resource, uri, unquote(fragment))
            else:
                target = self.anchors.get((uri, fragment))
        if target is None:
            raise _SchemaRefused(_truncate(SCHEMA_UNRESOLVABLE.format(_quote(reference))))
        if dynamic and fragment and not fragment.startswith("/"):
            targets = {id(target[0]): target}
            for candidate in self.dynamic_anchors.get(fragment, []):
                targets.setdefault(id(candidate[0]), candidate)
            return list(targets.values())
        return [target]


def _follow(resource: Any, base: str, pointer: str) -> tuple[Any, str] | None:
    """The subschema at a JSON Pointer inside `resource`, with the base URI in force there."""
    node = resource
    for raw in pointer.split("/")[1:]:
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            base = _rebase(base, node)
            node = node[token]
        elif (
            isinstance(node, list)
            and token.isascii()
            and token.isdigit()
            and (token == "0" or not token.startswith("0"))
            and int(token) < len(node)
        ):
            node = node[int(token)]
        else:
            return None
    return (node, base) if _is_schema(node) else None
