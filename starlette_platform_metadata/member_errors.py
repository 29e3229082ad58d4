"""A member's view of why its write does not satisfy the schema (issue 22).

The schema binds the whole document, private keys included, so a member's write can be
refused because of data the member may not read.  Its 400 must then say no more than the
member can see: an error located at or naming a private key, or one whose outcome can depend
on private data, becomes one generic message (`errors.MEMBER_SCHEMA_ERROR`, given once, last);
every other error keeps its precise message, so a member still learns what is wrong with its
own keys.

Which is which is decided from the error's `instance_path`, `evaluation_path` and `kind`
(never from its message text):

- Inside a visible top-level key, reached from the root through unconditional applicators
  only (`allOf`, `$ref`, `$dynamicRef`) and then `properties/<that key>`,
  `patternProperties` or `additionalProperties` (whether a key is "additional" depends on
  the schema and the key's name, both known to the member): precise.  Below that point the
  schema sees only the visible key's value, so anything there (an `anyOf`, an `if`) is the
  member's own.
- At the root, through the same unconditional applicators: `type` and a `false` schema (they
  do not depend on the keys at all), `required` of a visible key, and `additionalProperties`
  or `propertyNames` when every key involved is visible: precise.
- Everything else is hidden: errors at or naming a private key; count keywords at the root
  (`minProperties`, `maxProperties`: private keys count); `const`/`enum` at the root (they
  compare the whole document); conditional and composite applicators on the way (`if`/`then`/
  `else`, `anyOf`, `oneOf`, `not`, `dependentSchemas`, `dependentRequired`,
  `unevaluatedProperties`), whose outcome may turn on a private value; and any keyword not
  named above, so that a keyword this module does not know is never read as safe.

What may still be learnt is one bit the contract implies: that the write is refused (the
schema binds everyone), and so whether the stored private part satisfies the schema.  The
choice does not depend on whether private keys are stored: root-level count rules are hidden
even when none is.  A document too large to list every error is measured on what the member
sees (`Policy.explain`), so that choice cannot tell a member the size of the private part;
there, when only the first error is built, a member gets it or the generic message, which
again says no more than that the document as a whole fails.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import jsonschema_rs

from .errors import MEMBER_SCHEMA_ERROR
from .policy import DOCUMENT_TOO_COSTLY, Policy, located, member_view

__all__ = ["HIDDEN", "member_schema_errors"]

#: The generic message, at the root as the contract's message shape asks.
HIDDEN = f"/: {MEMBER_SCHEMA_ERROR}"

# Applicators that apply their subschema to the same value whatever the data: passing
# through them decides nothing.
_UNCONDITIONAL_REFS = frozenset({"$ref", "$dynamicRef"})
# Keywords that apply a subschema to one member of an object, chosen by its name alone.
_ENTERS_MEMBER = frozenset({"properties", "patternProperties", "additionalProperties"})


def member_schema_errors(policy: Policy, document: dict[str, Any]) -> list[str]:
    """Why `document` does not satisfy `policy`'s schema, as a member may read it.

    `[]` when it does.  Precise messages first, in the validator's order, then `HIDDEN` once
    if any error was hidden; at most `policy.max_errors` messages in all.  Every error is
    looked at (not only the first `max_errors`), so how many precise messages fit never
    depends on how many private errors came first.
    """
    if policy.valid(document):
        return []
    found = policy.explain(document, measured=member_view(policy, document))
    if found is None:
        return [DOCUMENT_TOO_COSTLY]
    precise: list[str] = []
    hidden = False
    for error in found:
        if _readable(policy, error):
            precise.append(located(error))
        else:
            hidden = True
    if hidden:
        return [*precise[: policy.max_errors - 1], HIDDEN]
    return precise[: policy.max_errors]


def _readable(policy: Policy, error: jsonschema_rs.ValidationError) -> bool:
    """Whether a member may read `error` as it is (see the module's docstring)."""
    rest = _after_unconditional(error.evaluation_path)
    if rest is None:
        return False
    instance_path = error.instance_path
    if instance_path:
        key = instance_path[0]
        if not isinstance(key, str) or policy.is_private(key) or not rest:
            return False
        keyword = rest[0]
        if keyword == "properties":
            return len(rest) > 1 and rest[1] == key
        return keyword in _ENTERS_MEMBER
    # At the root.
    if not rest:
        return isinstance(error.kind, jsonschema_rs.ValidationErrorKind.FalseSchema)
    keyword = rest[0]
    kind = error.kind
    if keyword == "type" and len(rest) == 1:
        return True
    if keyword == "required" and len(rest) == 1:
        return isinstance(kind, jsonschema_rs.ValidationErrorKind.Required) and _visible(
            policy, [kind.property]
        )
    if keyword == "additionalProperties" and len(rest) == 1:
        if isinstance(kind, jsonschema_rs.ValidationErrorKind.AdditionalProperties):
            return _visible(policy, kind.unexpected)
        # `false` with no `properties` beside it: every key is unexpected.
        return _visible(policy, _keys(error.instance))
    if keyword == "propertyNames":
        if isinstance(kind, jsonschema_rs.ValidationErrorKind.PropertyNames):
            return _visible(policy, [kind.error.instance])
        # `propertyNames: false`: it names no key, and refuses any.
        return _visible(policy, _keys(error.instance))
    return False


def _after_unconditional(path: Sequence[str | int]) -> Sequence[str | int] | None:
    """`path` past its leading `allOf/<i>`, `$ref` and `$dynamicRef` steps; `None` when it
    is not the shape expected of them."""
    position = 0
    while position < len(path):
        step = path[position]
        if step == "allOf":
            if position + 1 >= len(path) or not isinstance(path[position + 1], int):
                return None
            position += 2
        elif step in _UNCONDITIONAL_REFS:
            position += 1
        else:
            break
    return path[position:]


def _keys(instance: object) -> list[Any]:
    return list(instance) if isinstance(instance, dict) else []


def _visible(policy: Policy, keys: Iterable[object]) -> bool:
    return all(isinstance(key, str) and not policy.is_private(key) for key in keys)
