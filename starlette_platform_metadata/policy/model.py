"""The policy model: `Policy` and `parse_policy`, which validates a PUT body as a DRF
serializer would and compiles its schema."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import jsonschema_rs

from ..errors import quoted
from ..field_errors import (
    BLANK,
    DOCUMENT_TOO_COSTLY,
    NO_DATA,
    NOT_A_DICT,
    NOT_A_LIST,
    NOT_A_STRING,
    NULL,
    OVERLAP,
    TOO_LONG,
    TOO_MANY_ENTRIES,
)
from ..exceptions import PlatformMetadataError
from ..jsontext import dump
from ..jsonvalues import count_values
from .cost import SchemaRefused
from .limits import DEFAULT_MAX_ERRORS, PolicyLimits
from .schema import Compiled, compile_schema, located

__all__ = ["DEFAULT_POLICY", "Policy", "PolicyInvalid", "parse_policy"]


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
class Patterns:
    """Key patterns split for matching: exact keys in a set, prefixes for `str.startswith`."""

    exact: frozenset[str]
    prefixes: tuple[str, ...]

    @classmethod
    def of(cls, entries: Iterable[str]) -> Patterns:
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
    _compiled: Compiled | None = field(default=None, compare=False, repr=False)
    _protected: Patterns = field(init=False, compare=False, repr=False)
    _private: Patterns = field(init=False, compare=False, repr=False)
    _private_marks: tuple[str, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if (self.schema is None) != (self._compiled is None):
            raise ValueError("A Policy with a schema is built by parse_policy")
        object.__setattr__(self, "_protected", Patterns.of(self.protected_keys))
        object.__setattr__(self, "_private", Patterns.of(self.private_keys))
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
        return DEFAULT_MAX_ERRORS if self._compiled is None else self._compiled.max_errors

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
        values = count_values(measured, cap)
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
            schema, compiled = compile_schema(schema, limits)
        except SchemaRefused as refused:
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
        f"protected {quoted(p)} and private {quoted(q)}"
        for p in protected
        for q in private
        if _overlap(p, q)
    ]
    shown = "; ".join(pairs[:_MAX_PAIRS_SHOWN])
    if len(pairs) > _MAX_PAIRS_SHOWN:
        shown += f" (and {len(pairs) - _MAX_PAIRS_SHOWN} more)"
    return shown
