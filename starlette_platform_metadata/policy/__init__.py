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

from ..field_errors import DOCUMENT_TOO_COSTLY, DRAFT_2020_12
from ..jsonvalues import json_equal
from .limits import PolicyLimits
from .model import DEFAULT_POLICY, Policy, PolicyInvalid, parse_policy
from .rules import forbidden_patch_keys, member_delete, member_put, member_view
from .schema import located

__all__ = [
    "DEFAULT_POLICY",
    "DOCUMENT_TOO_COSTLY",
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
