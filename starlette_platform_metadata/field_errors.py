"""The wording of field-level refusals: DRF's serializer sentences for a request body, the
reasons a body is not strict JSON, and a policy's or its schema's refusals.  `errors.py` holds
the answers; these are the sentences inside them (`{"metadata": [...]}`, `{"schema": [...]}`).
"""

from __future__ import annotations

# --- a policy PUT (EXTENSIONS.md section 1), and a document its schema refuses -----------

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
# A body that is not strict JSON (400 `{"detail": "JSON parse error - ..."}`): DRF's wording
# where it has one (rest_framework.utils.json.strict_constant), ours for the rest.
OUT_OF_RANGE_FLOAT = "Out of range float values are not JSON compliant: {}"
INTEGER_OUT_OF_RANGE = "Integer out of the 64-bit signed range"
DUPLICATE_KEY = "Duplicate key {} in object"
TOO_DEEP = "Nesting deeper than the limit of {} levels"
NUL_CHARACTER = "The NUL character (\\u0000) is not allowed"
LONE_SURROGATE = "Lone surrogate characters are not allowed"
NOT_A_DICT_OF_ITEMS = 'Expected a dictionary of items but got type "{}".'
TOO_MANY_KEYS = "Ensure this field has no more than {} keys."
# Our wording: DRF's DictField has no rule on keys.
BAD_KEY = "Keys must be non-empty strings of at most {} characters."
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
