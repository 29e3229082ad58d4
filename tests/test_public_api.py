"""The public API is what docs/api.md, "Python API", lists: exactly the root's `__all__`, each
name resolving from the root to the object its documented module defines."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import starlette_platform_metadata

API_MD = Path(__file__).resolve().parent.parent / "docs" / "api.md"
ROW = re.compile(r"^\| `([A-Za-z_][A-Za-z0-9_]*)` \| `([a-z_.]+)` \| .+ \|$")


def documented() -> dict[str, str]:
    """Each name of the "Python API" table, and its module."""
    text = API_MD.read_text(encoding="utf-8")
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    rows = [ROW.match(line) for line in section.splitlines() if line.startswith("| `")]
    assert all(rows), "a table row not of the form | `name` | `module` | what |"
    names = [(m[1], m[2]) for m in rows if m]
    assert len({name for name, _ in names}) == len(names), "a name documented twice"
    return dict(names)


def test_all_is_the_documented_list() -> None:
    assert sorted(starlette_platform_metadata.__all__) == sorted(documented())
    assert len(set(starlette_platform_metadata.__all__)) == len(starlette_platform_metadata.__all__)


@pytest.mark.parametrize("name", starlette_platform_metadata.__all__)
def test_every_public_name_resolves_to_its_documented_module(name: str) -> None:
    module = importlib.import_module(documented()[name])
    assert getattr(starlette_platform_metadata, name) is getattr(module, name)
    assert name in dir(starlette_platform_metadata)


def test_an_unknown_name_is_an_attribute_error() -> None:
    """Not a `KeyError` or `None`: `hasattr` and `from ... import` rely on it."""
    assert not hasattr(starlette_platform_metadata, "sql_connection")
    with pytest.raises(ImportError, match="Write"):
        from starlette_platform_metadata import Write  # type: ignore[attr-defined]  # noqa: F401


def test_submodules_still_import_from_the_root() -> None:
    """`from starlette_platform_metadata import changes` imports the module, as before."""
    from starlette_platform_metadata import changes

    assert changes.__name__ == "starlette_platform_metadata.changes"
