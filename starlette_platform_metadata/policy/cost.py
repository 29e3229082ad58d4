"""What a policy schema costs to run: `Weigher` weighs it with every `$ref` expanded, before
jsonschema-rs ever compiles it, and refuses what the library would accept but we do not."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin

from ..errors import quoted, truncate
from ..field_errors import (
    DRAFT_2020_12,
    SCHEMA_DIALECT,
    SCHEMA_TOO_COMPLEX,
    SCHEMA_TOO_COMPLEX_ELEMENTS,
    SCHEMA_TOO_MANY_PATTERNS,
    SCHEMA_UNRESOLVABLE,
)
from ..jsontext import dump
from .limits import PolicyLimits

__all__ = ["SchemaRefused", "Weigher"]


class SchemaRefused(Exception):
    """A policy schema refused before or while it is compiled: `message` is the 400's text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# Relative `$id`s and `$ref`s resolve against this when the root declares no `$id`; the
# reserved `.invalid` domain can name nothing real.
_ROOT_BASE = "https://policy.invalid/schema.json"

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


class Weigher:
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
                raise SchemaRefused(SCHEMA_DIALECT)
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
            raise SchemaRefused(SCHEMA_TOO_MANY_PATTERNS.format(self.limits.max_patterns))

    def weigh(self) -> tuple[int, int]:
        """(weight, the part of it under `anyOf`/`oneOf`), or `SchemaRefused`."""
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
                raise SchemaRefused(SCHEMA_TOO_COMPLEX.format(limits.max_schema_weight))
            if element_weight > limits.max_element_weight:
                limit = limits.max_element_weight
                raise SchemaRefused(SCHEMA_TOO_COMPLEX_ELEMENTS.format(limit))
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
            raise SchemaRefused(truncate(SCHEMA_UNRESOLVABLE.format(quoted(reference))))
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
