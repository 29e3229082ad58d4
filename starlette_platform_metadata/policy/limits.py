"""`PolicyLimits`: what a policy PUT may hold, each bound with its reason."""

from __future__ import annotations

from dataclasses import dataclass

from ..limits import check_positive

__all__ = ["DEFAULT_MAX_ERRORS", "PolicyLimits"]


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


DEFAULT_MAX_ERRORS = PolicyLimits().max_errors
