"""The policy core (EXTENSIONS.md section 1): parsing, key patterns, the schema, member views.

Pure functions, no HTTP: every DRF error body is compared byte for byte, and each hostile
schema is timed to show it is refused or checked in bounded time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from starlette_platform_metadata.policy import cost as policy_cost
from starlette_platform_metadata.policy import schema as policy_schema
from starlette_platform_metadata.jsontext import dump as _dump
from starlette_platform_metadata.policy import (
    DEFAULT_POLICY,
    DRAFT_2020_12,
    Policy,
    PolicyInvalid,
    PolicyLimits,
    forbidden_patch_keys,
    json_equal,
    member_delete,
    member_put,
    member_view,
    parse_policy,
)

LIMITS = PolicyLimits()
# Generous for a 2-core shared machine: the point is "no stall", not a benchmark.
BOUND_SECONDS = 1.0


def parse(body: object, limits: PolicyLimits = LIMITS) -> Policy:
    return parse_policy(body, limits)


def refusal(body: object, limits: PolicyLimits = LIMITS) -> dict[str, Any]:
    with pytest.raises(PolicyInvalid) as caught:
        parse_policy(body, limits)
    return caught.value.errors


def schema_refusal(schema: object, limits: PolicyLimits = LIMITS) -> str:
    errors = refusal({"schema": schema}, limits)
    assert list(errors) == ["schema"]
    assert len(errors["schema"]) == 1
    message: str = errors["schema"][0]
    return message


def with_schema(schema: object, limits: PolicyLimits = LIMITS) -> Policy:
    return parse({"schema": schema}, limits)


@contextmanager
def bounded(seconds: float = BOUND_SECONDS) -> Iterator[None]:
    start = time.perf_counter()
    yield
    elapsed = time.perf_counter() - start
    assert elapsed < seconds, f"took {elapsed:.2f}s"


def compact_size(value: object) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())


# --- the body ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "type_name"),
    [([], "list"), ("text", "str"), (7, "int"), (1.5, "float"), (True, "bool")],
)
def test_a_body_that_is_not_an_object_is_refused_as_drf_does(body: object, type_name: str) -> None:
    assert refusal(body) == {
        "non_field_errors": [f"Invalid data. Expected a dictionary, but got {type_name}."]
    }


def test_a_null_body_is_no_data_as_drf_says() -> None:
    assert refusal(None) == {"non_field_errors": ["No data provided"]}


def test_an_empty_body_is_the_default_policy() -> None:
    policy = parse({})
    assert policy == DEFAULT_POLICY
    assert policy.is_default


def test_missing_fields_take_their_defaults_and_unknown_fields_are_ignored() -> None:
    policy = parse({"private_keys": ["secret"], "version": 9, "whatever": {"x": 1}})
    assert policy.protected_keys == ()
    assert policy.private_keys == ("secret",)
    assert policy.schema is None


def test_explicit_nulls_and_defaults() -> None:
    """`schema: null` is "no schema"; empty lists are empty lists."""
    assert parse({"protected_keys": [], "private_keys": [], "schema": None}) == DEFAULT_POLICY


def test_the_default_policy_protects_nothing_and_has_no_schema() -> None:
    assert DEFAULT_POLICY.is_default
    assert not DEFAULT_POLICY.is_protected("anything")
    assert not DEFAULT_POLICY.is_private("anything")
    assert DEFAULT_POLICY.valid({"a": 1})
    assert DEFAULT_POLICY.schema_errors({"a": 1}) == []


@pytest.mark.parametrize(
    ("value", "type_name"),
    [("billing_*", "str"), ({"a": 1}, "dict"), (3, "int"), (2.5, "float"), (False, "bool")],
)
@pytest.mark.parametrize("field", ["protected_keys", "private_keys"])
def test_a_key_list_that_is_not_a_list_has_drfs_listfield_message(
    field: str, value: object, type_name: str
) -> None:
    assert refusal({field: value}) == {
        field: [f'Expected a list of items but got type "{type_name}".']
    }


@pytest.mark.parametrize("field", ["protected_keys", "private_keys"])
def test_a_null_key_list_may_not_be_null(field: str) -> None:
    assert refusal({field: None}) == {field: ["This field may not be null."]}


def test_each_bad_entry_is_reported_at_its_index_in_drfs_shape() -> None:
    body = {"protected_keys": ["ok", 1, None, "", "x" * 257, True, ["a"], {"a": 1}, 2.5]}
    assert refusal(body) == {
        "protected_keys": {
            "1": ["Not a valid string."],
            "2": ["This field may not be null."],
            "3": ["This field may not be blank."],
            "4": ["Ensure this field has no more than 256 characters."],
            "5": ["Not a valid string."],
            "6": ["Not a valid string."],
            "7": ["Not a valid string."],
            "8": ["Not a valid string."],
        }
    }


def test_the_contracts_example_body_byte_for_byte() -> None:
    errors = refusal({"protected_keys": [7]})
    assert json.dumps(errors, separators=(",", ":")) == (
        '{"protected_keys":{"0":["Not a valid string."]}}'
    )


def test_an_entry_of_exactly_the_key_length_limit_is_accepted() -> None:
    assert parse({"private_keys": ["x" * 256]}).private_keys == ("x" * 256,)
    assert parse({"private_keys": ["x" * 255 + "*"]}).is_private("x" * 255 + "y")


def test_more_than_256_entries_are_refused_and_256_are_accepted() -> None:
    keys = [f"k{i}" for i in range(257)]
    assert refusal({"private_keys": keys}) == {
        "private_keys": ["Ensure this field has no more than 256 elements."]
    }
    assert len(parse({"private_keys": keys[:256]}).private_keys) == 256


def test_the_entry_count_is_checked_before_the_entries() -> None:
    """A huge list is refused by its length alone, whatever it holds."""
    assert refusal({"protected_keys": [None] * 100_000}) == {
        "protected_keys": ["Ensure this field has no more than 256 elements."]
    }


def test_the_limits_are_configurable() -> None:
    limits = PolicyLimits(max_entries=2, max_key_length=3)
    assert refusal({"protected_keys": ["a", "b", "c"]}, limits) == {
        "protected_keys": ["Ensure this field has no more than 2 elements."]
    }
    assert refusal({"protected_keys": ["abcd"]}, limits) == {
        "protected_keys": {"0": ["Ensure this field has no more than 3 characters."]}
    }


def test_every_field_error_is_reported_at_once_in_field_order() -> None:
    errors = refusal({"schema": [], "private_keys": "x", "protected_keys": [1]})
    assert list(errors) == ["protected_keys", "private_keys", "schema"]
    assert errors["protected_keys"] == {"0": ["Not a valid string."]}
    assert errors["private_keys"] == ['Expected a list of items but got type "str".']


def test_duplicate_entries_are_kept_once_at_their_first_position() -> None:
    policy = parse({"protected_keys": ["b", "a", "b", "c", "a"], "private_keys": ["x", "x"]})
    assert policy.protected_keys == ("b", "a", "c")
    assert policy.private_keys == ("x",)


def test_entries_are_taken_verbatim_without_trimming() -> None:
    policy = parse({"protected_keys": [" plan "]})
    assert policy.is_protected(" plan ")
    assert not policy.is_protected("plan")


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "3"])
def test_policy_limits_must_be_positive_integers(value: Any) -> None:
    with pytest.raises(ValueError, match="PolicyLimits.max_entries must be a positive integer"):
        PolicyLimits(max_entries=value)


# --- key patterns ------------------------------------------------------------------------


def test_an_exact_entry_matches_only_that_key() -> None:
    policy = parse({"protected_keys": ["plan"]})
    assert policy.is_protected("plan")
    assert not policy.is_protected("plans")
    assert not policy.is_protected("pla")


def test_a_prefix_entry_matches_every_key_starting_with_it_including_the_stem() -> None:
    policy = parse({"private_keys": ["billing_*"]})
    for key in ("billing_", "billing_id", "billing_address_line"):
        assert policy.is_private(key)
    for key in ("billing", "Billing_id", "xbilling_id"):
        assert not policy.is_private(key)


def test_a_lone_star_matches_every_key() -> None:
    policy = parse({"protected_keys": ["*"]})
    assert all(policy.is_protected(key) for key in ("a", "*", "billing_id", " "))


def test_a_star_that_is_not_last_is_part_of_the_key() -> None:
    policy = parse({"protected_keys": ["a*b"]})
    assert policy.is_protected("a*b")
    assert not policy.is_protected("axb")
    assert not policy.is_protected("a")


def test_a_double_star_is_a_prefix_ending_in_a_star() -> None:
    policy = parse({"protected_keys": ["a**"]})
    assert policy.is_protected("a*")
    assert policy.is_protected("a*b")
    assert not policy.is_protected("ab")


# --- keys matched by both lists ----------------------------------------------------------


@pytest.mark.parametrize(
    ("protected", "private"),
    [
        ("a", "a"),  # the same exact key
        ("a*", "ab*"),  # ab... is matched by both
        ("ab*", "a*"),
        ("a*", "a*"),
        ("a*", "a"),  # a prefix matches its own stem
        ("a", "a*"),
        ("ab", "a*"),
        ("*", "x"),
        ("x", "*"),
        ("*", "*"),
        ("*", "z*"),
        ("a*b", "a*"),  # the exact key "a*b" starts with "a"
        ("billing_*", "billing_"),
    ],
)
def test_entries_matching_a_common_key_are_refused(protected: str, private: str) -> None:
    assert refusal({"protected_keys": [protected], "private_keys": [private]}) == {
        "non_field_errors": [
            "Keys matched by both protected_keys and private_keys: "
            f'protected "{protected}" and private "{private}".'
        ]
    }


@pytest.mark.parametrize(
    ("protected", "private"),
    [
        ("a", "b"),
        ("a*", "b*"),  # no key starts with both
        ("ab*", "ac*"),
        ("a", "ab*"),  # "a" does not start with "ab"
        ("ab*", "a"),
        ("a*b", "a*c"),  # two exact keys with a star inside
        ("a*b", "b*"),
        ("plan", "Plan"),
    ],
)
def test_entries_without_a_common_key_are_accepted(protected: str, private: str) -> None:
    policy = parse({"protected_keys": [protected], "private_keys": [private]})
    assert policy.protected_keys == (protected,)
    assert policy.private_keys == (private,)


def test_every_overlapping_pair_is_named_up_to_ten() -> None:
    protected = [f"k{i}" for i in range(12)]
    errors = refusal({"protected_keys": protected, "private_keys": ["k*", "other"]})
    (message,) = errors["non_field_errors"]
    assert message.startswith(
        'Keys matched by both protected_keys and private_keys: protected "k0" and private "k*";'
        ' protected "k1" and private "k*";'
    )
    assert message.endswith('protected "k9" and private "k*" (and 2 more).')


def test_overlap_is_checked_only_once_the_fields_are_valid() -> None:
    """As DRF runs `validate()` only after every field passed."""
    errors = refusal({"protected_keys": ["a", 1], "private_keys": ["a"]})
    assert errors == {"protected_keys": {"1": ["Not a valid string."]}}


# --- the schema: shape, size, dialect ----------------------------------------------------


def test_a_schema_is_kept_as_given_and_compiled() -> None:
    schema = {"type": "object", "properties": {"plan": {"enum": ["free", "pro"]}}}
    policy = with_schema(schema)
    assert policy.schema == schema
    assert not policy.is_default
    assert policy.valid({"plan": "pro"})
    assert not policy.valid({"plan": "gold"})


def test_the_policy_keeps_its_own_copy_of_the_schema() -> None:
    schema: dict[str, Any] = {"type": "object"}
    policy = with_schema(schema)
    schema["type"] = "string"
    assert policy.schema == {"type": "object"}
    assert policy.valid({})


def test_boolean_schemas_are_schemas() -> None:
    assert with_schema(True).valid({"anything": 1})
    never = with_schema(False)
    assert not never.valid({})
    assert never.schema_errors({}) == ["/: False schema does not allow value"]


@pytest.mark.parametrize(
    ("schema", "type_name"), [([], "list"), ("string", "str"), (3, "int"), (1.5, "float")]
)
def test_a_schema_must_be_an_object_or_a_boolean(schema: object, type_name: str) -> None:
    assert schema_refusal(schema) == (
        f'Expected a JSON Schema (an object or a boolean) but got type "{type_name}".'
    )


def test_a_schema_larger_than_the_limit_is_refused() -> None:
    limits = PolicyLimits(max_schema_bytes=100)
    schema = {"enum": ["x" * 80]}
    assert compact_size(schema) <= 100
    assert with_schema(schema, limits).valid("x" * 80)  # type: ignore[arg-type]
    assert schema_refusal({"enum": ["x" * 90]}, limits) == (
        "Ensure the schema has no more than 100 bytes as compact JSON."
    )


def test_the_size_counts_utf8_bytes() -> None:
    limits = PolicyLimits(max_schema_bytes=50)
    assert schema_refusal({"const": "é" * 20}, limits).startswith("Ensure the schema has")


def test_a_huge_schema_is_refused_quickly() -> None:
    with bounded():
        message = schema_refusal({"enum": list(range(1_000_000))})
    assert message == "Ensure the schema has no more than 65536 bytes as compact JSON."


def nested(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {}
    for _ in range(depth - 1):
        schema = {"not": schema}
    return schema


def test_a_schema_nesting_deeper_than_the_limit_is_refused() -> None:
    assert with_schema(nested(32)).schema is not None
    assert schema_refusal(nested(33)) == "Ensure the schema nests no deeper than 32 levels."


def test_a_very_deeply_nested_schema_is_refused_quickly() -> None:
    with bounded():
        message = schema_refusal(nested(200_000))
    assert message == "Ensure the schema nests no deeper than 32 levels."


@pytest.mark.parametrize("dialect", [DRAFT_2020_12, DRAFT_2020_12 + "#"])
def test_draft_2020_12_may_be_declared(dialect: str) -> None:
    assert with_schema({"$schema": dialect, "type": "object"}).valid({})


@pytest.mark.parametrize(
    "dialect",
    [
        "http://json-schema.org/draft-07/schema#",
        "https://json-schema.org/draft/2019-09/schema",
        "http://json-schema.org/draft-04/schema#",
        "https://example.com/my-meta-schema",
        5,
    ],
)
def test_any_other_dialect_is_refused(dialect: object) -> None:
    expected = (
        'Only JSON Schema draft 2020-12 is supported: "$schema" must be'
        ' "https://json-schema.org/draft/2020-12/schema".'
    )
    assert schema_refusal({"$schema": dialect}) == expected
    # An embedded resource may not switch dialect either.
    embedded = {"$defs": {"old": {"$id": "old.json", "$schema": dialect, "items": [{}]}}}
    assert schema_refusal(embedded) == expected


def test_a_property_named_dollar_schema_is_just_a_property() -> None:
    policy = with_schema({"properties": {"$schema": {"type": "string"}}})
    assert policy.valid({"$schema": "anything"})
    assert not policy.valid({"$schema": 1})


def test_a_schema_the_meta_schema_refuses_names_where() -> None:
    assert schema_refusal({"minimum": "x"}) == '/minimum: value is not of type "number"'
    assert schema_refusal({"properties": {"a": {"type": "foo"}}}) == (
        "/properties/a/type: value is not valid under any of the schemas listed in the"
        " 'anyOf' keyword"
    )


def test_formats_are_annotations_not_assertions() -> None:
    """`validate_formats` is off: validity never depends on a format checker's version."""
    policy = with_schema({"properties": {"mail": {"format": "email"}, "re": {"format": "regex"}}})
    assert policy.valid({"mail": "not an email", "re": "(?:a{1000}){1000}"})


# --- the schema: references --------------------------------------------------------------


REMOTE_MESSAGE = (
    '$ref "{}" does not resolve inside the schema; nothing is ever fetched from elsewhere.'
)


@pytest.mark.parametrize(
    "reference",
    [
        "https://example.com/x.json",
        "http://localhost:8000/schema.json",
        "file:///etc/passwd",
        "other.json",
        "#/$defs/missing",
        "#/properties/a/items",
        "#missing-anchor",
        "#/$defs/a/0",
    ],
)
def test_a_ref_that_does_not_resolve_inside_the_schema_is_refused(reference: str) -> None:
    schema = {"$ref": reference, "$defs": {"a": {"type": "string"}}}
    assert schema_refusal(schema) == REMOTE_MESSAGE.format(reference)


def test_a_relative_ref_under_a_remote_id_is_not_fetched() -> None:
    schema = {"$id": "https://example.com/root.json", "$ref": "other.json"}
    assert schema_refusal(schema) == REMOTE_MESSAGE.format("other.json")


def test_an_unresolvable_ref_is_refused_even_where_no_value_reaches_it() -> None:
    schema = {"$defs": {"unused": {"$ref": "https://example.com/x.json"}}}
    assert schema_refusal(schema) == REMOTE_MESSAGE.format("https://example.com/x.json")


def test_the_validator_itself_never_fetches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Below our own resolution check, jsonschema-rs asks our retriever, which refuses."""
    asked: list[str] = []
    refuse: Callable[[str], Any] = policy_schema._refuse_retrieval

    def spy(uri: str, /) -> Any:
        asked.append(uri)
        return refuse(uri)

    monkeypatch.setattr(policy_cost.Weigher, "weigh", lambda self: (1, 0))
    monkeypatch.setattr(policy_schema, "_refuse_retrieval", spy)
    message = schema_refusal({"$ref": "https://example.com/x.json"})
    assert asked == ["https://example.com/x.json"]
    assert "https://example.com/x.json is not fetched" in message


@pytest.mark.parametrize(
    "schema",
    [
        {"$defs": {"s": {"type": "string"}}, "$ref": "#/$defs/s"},
        {"definitions": {"s": {"type": "string"}}, "$ref": "#/definitions/s"},
        {"$defs": {"s": {"$anchor": "str", "type": "string"}}, "$ref": "#str"},
        {"$defs": {"a/b~c": {"type": "string"}}, "$ref": "#/$defs/a~1b~0c"},
        {"$defs": {"a b": {"type": "string"}}, "$ref": "#/$defs/a%20b"},
        {"anyOf": [{"type": "string"}], "$ref": "#/anyOf/0"},
        {
            "$id": "https://example.com/root.json",
            "$defs": {"s": {"$id": "string.json", "type": "string"}},
            "$ref": "string.json",
        },
        {
            "$id": "urn:example:root",
            "$defs": {"s": {"type": "string"}},
            "$ref": "urn:example:root#/$defs/s",
        },
        {"$defs": {"s": {"$id": "s.json", "type": "string"}}, "$ref": "s.json"},
        {
            "$dynamicAnchor": "meta",
            "$defs": {"s": {"type": "string"}},
            "allOf": [{"$ref": "#/$defs/s"}],
        },
    ],
)
def test_refs_inside_the_schema_resolve(schema: dict[str, Any]) -> None:
    policy = with_schema(schema)
    assert policy.valid("text")  # type: ignore[arg-type]
    assert not policy.valid(1)  # type: ignore[arg-type]


def test_a_recursive_schema_is_accepted() -> None:
    tree = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                },
            }
        },
        "$ref": "#/$defs/node",
    }
    policy = with_schema(tree)
    assert policy.valid({"name": "a", "children": [{"name": "b", "children": []}]})
    assert policy.schema_errors({"children": [{"name": 1}]}) == [
        '/children/0/name: value is not of type "string"'
    ]


def test_a_dynamic_ref_resolves_to_its_anchor() -> None:
    schema = {
        "$dynamicAnchor": "node",
        "type": "object",
        "additionalProperties": {"anyOf": [{"type": "integer"}, {"$dynamicRef": "#node"}]},
    }
    policy = with_schema(schema)
    assert policy.valid({"a": 1, "b": {"c": 2}})
    assert not policy.valid({"a": "x"})


# --- the schema: hostile input -----------------------------------------------------------


def ref_bomb(levels: int) -> dict[str, Any]:
    """Each definition refers twice to the next: 2**levels paths, a few hundred bytes."""
    defs: dict[str, Any] = {
        f"d{i}": {"anyOf": [{"$ref": f"#/$defs/d{i + 1}"}, {"$ref": f"#/$defs/d{i + 1}"}]}
        for i in range(levels)
    }
    defs[f"d{levels}"] = {"type": "string"}
    return {"$defs": defs, "properties": {"x": {"$ref": "#/$defs/d0"}}}


def test_a_ref_bomb_is_refused_quickly() -> None:
    """Unbounded, jsonschema-rs took 77 s to list the errors of 2**20 paths for one value."""
    schema = ref_bomb(40)
    assert compact_size(schema) < 4096
    with bounded():
        message = schema_refusal(schema)
    assert message == (
        "The schema is too complex: with every $ref expanded it weighs more than 4096"
        " (one per subschema, one per 64 bytes of keyword values)."
    )


def test_a_small_ref_fan_out_is_accepted_and_weighed_with_its_expansion() -> None:
    policy = with_schema(ref_bomb(4))
    assert policy.valid({"x": "s"})
    assert not policy.valid({"x": 1})


def test_recursion_fanning_out_at_every_level_is_refused() -> None:
    """8 branches per level over a 10-level document: 8**10 paths when it fails."""
    schema = {
        "$defs": {
            "a": {
                "type": "object",
                "additionalProperties": {"anyOf": [{"$ref": "#/$defs/a"}] * 8},
            }
        },
        "$ref": "#/$defs/a",
    }
    with bounded():
        message = schema_refusal(schema)
    assert message == (
        "The schema is too complex: the subschemas applying to every item of an array or member"
        " of an object weigh more than 128 with every $ref expanded."
    )


def test_many_subschemas_applied_to_every_item_are_refused() -> None:
    """4,000 branches over 30,000 items took 15 s to validate, for a 60 KB schema."""
    schema = {"items": {"anyOf": [{"const": i} for i in range(4000)]}}
    assert compact_size(schema) < 64 * 1024
    assert schema_refusal(schema).startswith(
        "The schema is too complex: the subschemas applying to every item"
    )


def largest_element_schema() -> dict[str, Any]:
    """As many subschemas per array item as `max_element_weight` admits, all of them run."""
    return element_schema(127)


def element_schema(branches: int) -> dict[str, Any]:
    """Weighs 1 per branch plus 1 for `items` where every item is checked."""
    items = {"anyOf": [{"const": i} for i in range(branches)]}
    return {"type": "object", "properties": {"a": {"type": "array", "items": items}}}


def test_the_element_weight_limit_is_exact() -> None:
    assert with_schema(element_schema(127)).valid({"a": [126]})
    assert schema_refusal(element_schema(128)).startswith(
        "The schema is too complex: the subschemas applying to every item"
    )


def test_the_costliest_accepted_element_schema_checks_a_64_kib_document_in_bounded_time() -> None:
    policy = with_schema(largest_element_schema())
    matching = {"a": [126] * 16_000}  # every item tries every branch
    failing = {"a": [-1] * 16_000}
    assert compact_size(matching) <= 64 * 1024
    with bounded():
        assert policy.valid(matching)
    with bounded():
        assert policy.schema_errors(matching) == []
    with bounded():
        assert not policy.valid(failing)
    with bounded():
        errors = policy.schema_errors(failing)
    assert len(errors) == 1


def test_a_catastrophic_backtracking_pattern_runs_in_linear_time() -> None:
    policy = with_schema({"properties": {"s": {"pattern": "^(a+)+$"}}})
    with bounded():
        assert not policy.valid({"s": "a" * 50_000 + "b"})
        errors = policy.schema_errors({"s": "a" * 50_000 + "b"})
    assert errors == ['/s: value does not match "^(a+)+$"']


@pytest.mark.parametrize(
    "pattern", ["(?:a{1000}){1000}", "a{100000}", "^.{0,1000}$", "[\\s\\S]{0,10000}"]
)
def test_a_regex_too_large_once_compiled_is_refused_quickly(pattern: str) -> None:
    with bounded():
        message = schema_refusal({"properties": {"s": {"pattern": pattern}}})
    assert message == (
        '/properties/s/pattern: value is not a "regex" (patterns use a linear-time engine:'
        " no look-around or back-references, and at most 131072 bytes once compiled)"
    )


def test_a_large_regex_in_pattern_properties_is_refused() -> None:
    message = schema_refusal({"patternProperties": {"(?:a{1000}){1000}": {}}})
    assert message.startswith('/patternProperties/(?:a{1000}){1000}: value is not a "regex"')


@pytest.mark.parametrize("pattern", ["(?<=a)b", "(a)\\1", "(?=a)"])
def test_look_around_and_back_references_are_refused(pattern: str) -> None:
    assert schema_refusal({"pattern": pattern}).startswith('/pattern: value is not a "regex"')


def test_realistic_patterns_compile() -> None:
    patterns = [
        r"^\w{1,256}$",
        r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
        r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
        r"^\+?[0-9 ()-]{7,20}$",
        r"^\d{4}-\d{2}-\d{2}$",
    ]
    schema = {"properties": {f"p{i}": {"pattern": p} for i, p in enumerate(patterns)}}
    assert with_schema(schema).valid({"p0": "abc", "p4": "2024-01-31"})


def test_more_regexes_than_the_limit_are_refused() -> None:
    """Each compiled regex stays in memory: 1,000 of 1 MB each took 2 GB."""
    accepted = {"properties": {f"p{i}": {"pattern": f"^x{i}$"} for i in range(64)}}
    assert with_schema(accepted).valid({"p1": "x1"})
    refused = {
        "properties": {f"p{i}": {"pattern": f"^x{i}$"} for i in range(63)},
        "patternProperties": {"^a": {}, "^b": {}},
    }
    assert schema_refusal(refused) == "Ensure the schema has no more than 64 regular expressions."


def test_the_most_regex_memory_a_policy_may_hold_compiles_quickly() -> None:
    schema = {
        "properties": {f"p{i}": {"pattern": f"^[a-z]{{0,1000}}x{i}$"} for i in range(64)}
    }
    with bounded():
        policy = with_schema(schema)
        assert policy.valid({f"p{i}": "a" * 999 + f"x{i}" for i in range(64)})


# --- schema errors -----------------------------------------------------------------------


PLAN_SCHEMA = {
    "type": "object",
    "properties": {
        "plan": {"enum": ["free", "pro"]},
        "seats": {"type": "integer", "minimum": 1},
        "tags": {"type": "array", "items": {"type": "string"}},
        "a/b~c": {"type": "string"},
    },
    "required": ["plan"],
}


def test_a_valid_document_has_no_errors() -> None:
    policy = with_schema(PLAN_SCHEMA)
    assert policy.valid({"plan": "pro", "seats": 3})
    assert policy.schema_errors({"plan": "pro", "seats": 3}) == []


def test_errors_name_the_json_pointer_of_the_failing_value() -> None:
    policy = with_schema(PLAN_SCHEMA)
    errors = policy.schema_errors({"plan": "gold", "seats": 0, "tags": ["x", 2], "a/b~c": 1})
    assert sorted(errors) == [
        '/a~1b~0c: value is not of type "string"',
        '/plan: value is not one of "free" or "pro"',
        "/seats: value is less than the minimum of 1",
        '/tags/1: value is not of type "string"',
    ]


def test_the_root_is_a_slash() -> None:
    assert with_schema(PLAN_SCHEMA).schema_errors({}) == ['/: "plan" is a required property']


def test_document_values_never_appear_in_messages() -> None:
    """A member must not read private values, nor a document be copied into every message."""
    policy = with_schema({"anyOf": [{"required": ["a"]}], "properties": {"n": {"maximum": 1}}})
    errors = policy.schema_errors({"secret": "hunter2", "n": 12345})
    assert errors
    assert not any("hunter2" in error or "12345" in error for error in errors)


def test_at_most_max_errors_are_reported() -> None:
    limits = PolicyLimits(max_errors=3)
    policy = with_schema({"additionalProperties": {"type": "string"}}, limits)
    errors = policy.schema_errors({f"k{i}": i for i in range(10)})
    assert len(errors) == 3
    assert all(error.endswith(': value is not of type "string"') for error in errors)


def test_past_the_error_work_budget_only_the_first_error_is_reported() -> None:
    limits = PolicyLimits(max_error_work=20)
    policy = with_schema({"additionalProperties": {"type": "string"}}, limits)
    assert len(policy.schema_errors({"a": 1, "b": 2})) == 2
    document = {f"k{i}": i for i in range(50)}
    assert policy.schema_errors(document) == ['/k0: value is not of type "string"']


def test_when_even_the_first_error_may_be_costly_one_message_names_the_root() -> None:
    """An `anyOf` error carries the errors of every branch over the whole value."""
    limits = PolicyLimits(max_error_work=20)
    policy = with_schema({"anyOf": [{"items": {"type": "string"}}, {"type": "object"}]}, limits)
    assert policy.schema_errors([1, 2]) == [  # type: ignore[arg-type]
        "/: value is not valid under any of the schemas listed in the 'anyOf' keyword"
    ]
    assert policy.schema_errors(list(range(50))) == [  # type: ignore[arg-type]
        "/: the document does not satisfy the schema; it is too large to list where in the"
        " time allowed."
    ]


def test_long_messages_are_cut() -> None:
    """A `not` error quotes its subschema, which may be kilobytes long."""
    policy = with_schema({"properties": {"a": {"not": {"enum": [f"v{i}" for i in range(500)]}}}})
    (error,) = policy.schema_errors({"a": "v1"})
    assert len(error) == 500
    assert error.startswith('/a: {"enum":["v0","v1",')
    assert error.endswith("\u2026")


def test_many_errors_on_a_large_document_stay_bounded() -> None:
    """30,000 failing items against a required-heavy schema: no error storm."""
    schema = {"allOf": [{"required": [f"r{i}"]} for i in range(1500)]}
    policy = with_schema(schema)
    document = {f"k{i}": [0] * 5 for i in range(2000)}
    with bounded():
        errors = policy.schema_errors(document)
    assert errors == ['/: "r0" is a required property']


# --- to_json -----------------------------------------------------------------------------


def test_the_admin_view_has_every_field_in_contract_order() -> None:
    policy = parse({"protected_keys": ["plan"], "private_keys": ["s_*"], "schema": True})
    assert policy.to_json("admin") == {
        "protected_keys": ["plan"],
        "private_keys": ["s_*"],
        "schema": True,
    }
    assert list(policy.to_json("admin")) == ["protected_keys", "private_keys", "schema"]


def test_members_do_not_get_private_keys() -> None:
    policy = parse({"protected_keys": ["plan"], "private_keys": ["s_*"]})
    assert policy.to_json("member") == {"protected_keys": ["plan"], "schema": None}


def test_the_default_policy_as_json() -> None:
    assert DEFAULT_POLICY.to_json("admin") == {
        "protected_keys": [],
        "private_keys": [],
        "schema": None,
    }


def test_to_json_returns_a_copy_of_the_schema() -> None:
    policy = with_schema({"type": "object"})
    policy.to_json("admin")["schema"]["type"] = "string"
    assert policy.schema == {"type": "object"}


def test_to_json_refuses_an_unknown_view() -> None:
    with pytest.raises(ValueError, match="view must be"):
        DEFAULT_POLICY.to_json("owner")  # type: ignore[arg-type]


def test_a_policy_with_a_schema_is_built_by_parse_policy() -> None:
    with pytest.raises(ValueError, match="parse_policy"):
        Policy(schema={"type": "object"})


def test_policies_compare_by_their_fields() -> None:
    body = {"protected_keys": ["a"], "schema": {"type": "object"}}
    assert parse(body) == parse(body)
    assert parse(body) != parse({"protected_keys": ["a"]})


# --- JSON equality -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (1, 1),
        (7, 7.0),  # one number type in JSON
        (0, -0.0),
        ("a", "a"),
        (None, None),
        (True, True),
        ([1, {"a": 2}], [1.0, {"a": 2.0}]),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),  # key order does not matter
    ],
)
def test_json_equal_values(a: Any, b: Any) -> None:
    assert json_equal(a, b)
    assert json_equal(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (1, True),  # booleans never equal numbers
        (0, False),
        (1.0, True),
        (1, "1"),
        (None, False),
        (None, 0),
        ("", None),
        ([1], [1, 1]),
        ([1, 2], [2, 1]),
        ({"a": 1}, {"a": 1, "b": 1}),
        ({"a": None}, {}),
        ({"a": True}, {"a": 1}),
        ([], {}),
        (2**63 - 1, float(2**63 - 1)),  # compared exactly, not through floats
    ],
)
def test_json_unequal_values(a: Any, b: Any) -> None:
    assert not json_equal(a, b)
    assert not json_equal(b, a)


# --- member view -------------------------------------------------------------------------


POLICY = parse_policy(
    {"protected_keys": ["plan", "quota_*"], "private_keys": ["secret", "internal_*"]}, LIMITS
)
STORED = {
    "plan": "pro",
    "quota_seats": 7.0,
    "secret": "s3",
    "internal_note": {"x": 1},
    "theme": "dark",
}


def test_get_member_view_leaves_private_keys_out() -> None:
    assert member_view(POLICY, STORED) == {"plan": "pro", "quota_seats": 7.0, "theme": "dark"}


def test_get_member_view_of_the_default_policy_is_the_document() -> None:
    assert member_view(DEFAULT_POLICY, STORED) == STORED


def test_patch_may_change_unrestricted_keys() -> None:
    assert forbidden_patch_keys(POLICY, STORED, {"theme": "light", "new": 1}, ["theme"]) == []


def test_patch_naming_a_private_key_in_metadata_is_refused_even_with_its_value() -> None:
    assert forbidden_patch_keys(POLICY, STORED, {"secret": "s3"}, []) == ["secret"]
    assert forbidden_patch_keys(POLICY, STORED, {"internal_new": 1}, []) == ["internal_new"]


def test_patch_naming_a_private_key_in_delete_keys_is_refused_even_if_not_stored() -> None:
    assert forbidden_patch_keys(POLICY, STORED, {}, ["secret"]) == ["secret"]
    assert forbidden_patch_keys(POLICY, STORED, {}, ["internal_missing"]) == ["internal_missing"]


def test_patch_setting_a_protected_key_to_another_value_is_refused() -> None:
    assert forbidden_patch_keys(POLICY, STORED, {"plan": "free"}, []) == ["plan"]
    assert forbidden_patch_keys(POLICY, STORED, {"quota_seats": True}, []) == ["quota_seats"]
    assert forbidden_patch_keys(POLICY, STORED, {"quota_seats": "7"}, []) == ["quota_seats"]


def test_patch_setting_a_protected_key_that_is_not_stored_is_refused() -> None:
    assert forbidden_patch_keys(POLICY, STORED, {"quota_new": None}, []) == ["quota_new"]


def test_patch_setting_a_protected_key_to_its_stored_value_is_allowed() -> None:
    assert forbidden_patch_keys(POLICY, STORED, {"plan": "pro"}, []) == []
    assert forbidden_patch_keys(POLICY, STORED, {"quota_seats": 7}, []) == []  # 7 is 7.0


def test_patch_deleting_a_stored_protected_key_is_refused() -> None:
    assert forbidden_patch_keys(POLICY, STORED, {}, ["plan"]) == ["plan"]


def test_patch_deleting_and_setting_back_a_protected_key_is_still_a_delete() -> None:
    assert forbidden_patch_keys(POLICY, STORED, {"plan": "pro"}, ["plan"]) == ["plan"]


def test_patch_deleting_a_protected_key_that_is_not_stored_is_allowed() -> None:
    assert forbidden_patch_keys(POLICY, STORED, {}, ["quota_missing"]) == []


def test_patch_lists_every_forbidden_key_once_sorted() -> None:
    found = forbidden_patch_keys(
        POLICY,
        STORED,
        {"secret": 1, "plan": "free", "theme": "x", "internal_a": 0},
        ["plan", "secret", "internal_note", "theme", "quota_seats"],
    )
    assert found == ["internal_a", "internal_note", "plan", "quota_seats", "secret"]


def test_put_replaces_what_the_member_may_change_and_keeps_the_rest() -> None:
    assert member_put(POLICY, STORED, {"theme": "light", "lang": "fr"}) == {
        "theme": "light",
        "lang": "fr",
        "plan": "pro",
        "quota_seats": 7.0,
        "secret": "s3",
        "internal_note": {"x": 1},
    }


def test_put_of_a_protected_key_with_its_stored_value_keeps_the_stored_value() -> None:
    """GET, edit, PUT works, even from a client that writes 7.0 back as 7."""
    result = member_put(POLICY, STORED, {"plan": "pro", "quota_seats": 7, "theme": "x"})
    assert isinstance(result, dict)
    assert result["quota_seats"] == 7.0
    assert isinstance(result["quota_seats"], float)


def test_put_get_edit_put_round_trip() -> None:
    edited = dict(member_view(POLICY, STORED), theme="light")
    assert member_put(POLICY, STORED, edited) == dict(STORED, theme="light")


def test_put_of_a_protected_key_with_another_value_is_refused() -> None:
    assert member_put(POLICY, STORED, {"plan": "free", "theme": "x"}) == ["plan"]
    assert member_put(POLICY, STORED, {"quota_seats": True}) == ["quota_seats"]


def test_put_of_a_protected_key_that_is_not_stored_is_refused() -> None:
    assert member_put(POLICY, STORED, {"quota_new": 1}) == ["quota_new"]


def test_put_of_any_private_key_is_refused_even_with_its_stored_value() -> None:
    assert member_put(POLICY, STORED, {"secret": "s3", "internal_x": 1, "plan": "free"}) == [
        "internal_x",
        "plan",
        "secret",
    ]


def test_put_without_restricted_keys_stored_is_the_body() -> None:
    assert member_put(POLICY, {"theme": "dark"}, {"lang": "fr"}) == {"lang": "fr"}
    assert member_put(POLICY, {}, {}) == {}


def test_delete_keeps_protected_and_private_keys() -> None:
    assert member_delete(POLICY, STORED) == {
        "plan": "pro",
        "quota_seats": 7.0,
        "secret": "s3",
        "internal_note": {"x": 1},
    }


def test_delete_of_a_document_without_restricted_keys_leaves_nothing() -> None:
    assert member_delete(POLICY, {"theme": "dark"}) == {}
    assert member_delete(DEFAULT_POLICY, STORED) == {}


_KEY = st.text(alphabet=st.sampled_from(list('ab"\\\n\u2028é*_')), max_size=4)


@settings(max_examples=300, deadline=None)
@given(
    private=st.lists(_KEY.filter(bool), max_size=3),
    document=st.dictionaries(_KEY, st.one_of(st.integers(), _KEY), max_size=5),
)
def test_may_hold_private_never_misses_a_private_key(
    private: list[str], document: dict[str, object]
) -> None:
    """The fast check a response takes before hiding private keys: when it says no, the
    member view is the document itself, whatever quotes, escapes or prefixes are involved."""
    policy = parse_policy({"private_keys": private}, PolicyLimits())
    if not policy.may_hold_private(_dump(document)):
        assert member_view(policy, document) == document


def test_may_hold_private_is_no_for_an_unrelated_document() -> None:
    policy = parse_policy({"private_keys": ["billing_*", "secret"]}, PolicyLimits())
    assert not policy.may_hold_private(_dump({"theme": "dark", "k1": 3}))
    assert policy.may_hold_private(_dump({"billing_id": 1}))
    assert policy.may_hold_private(_dump({"note": "secret"}))  # a value: merely looks like one
