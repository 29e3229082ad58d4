"""The pytest plugin this package installs (entry point `pytest11`).

pytest rewrites `assert` statements only in test modules and in plugins; the store contract
kit (`starlette_platform_metadata.testing`) is neither, so a failing contract test in a
host's suite would show a bare `AssertionError`, with none of the values compared.  This
plugin registers the kit for rewriting before any test module imports it; it imports
nothing else.
"""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("starlette_platform_metadata.testing")
