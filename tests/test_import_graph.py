"""Dependencies point one way: no module of a package imports, directly or through others, a
module that imports it back.  Read from the source with `ast`, so every import counts where it
stands: at module level and inside functions (a lazy import is still a dependency); only
`if TYPE_CHECKING:` blocks, which never run, are left out."""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest

import starlette_platform_metadata

ROOT = Path(starlette_platform_metadata.__file__).resolve().parent
PACKAGE = ROOT.name


def modules() -> dict[str, tuple[Path, bool]]:
    """Every module of the package by dotted name: its file, and whether it is a package."""
    found: dict[str, tuple[Path, bool]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _type_checking_only(tree: ast.AST) -> set[int]:
    """The ids of the nodes inside `if TYPE_CHECKING:` (or `typing.TYPE_CHECKING`) blocks."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in (
            "TYPE_CHECKING",
            "typing.TYPE_CHECKING",
        ):
            for inner in node.body:
                skipped.update(id(n) for n in ast.walk(inner))
    return skipped


def _imported(name: str, is_package: bool, tree: ast.AST, known: Collection[str]) -> Iterator[str]:
    """The modules `tree` (module `name`) imports: `from package import name` imports the
    submodule `package.name` when there is one, else `package` (a name it defines)."""
    skipped = _type_checking_only(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                submodule = f"{module}.{alias.name}"
                yield submodule if submodule in known else module


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of the package it imports (itself left out)."""
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        edges: set[str] = set()
        for target in _imported(name, is_package, tree, known):
            if target in known and target != name:
                edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]], within: str) -> list[list[str]]:
    """The import cycles among the modules of `within` (a package, or the whole package):
    each strongly connected group of two or more modules, sorted (Tarjan's algorithm)."""
    nodes = {n for n in graph if n == within or n.startswith(within + ".")}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node] & nodes):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(nodes):
        if node not in index:
            visit(node)
    return sorted(found)


@pytest.mark.parametrize("within", [f"{PACKAGE}.stores", PACKAGE])
def test_no_import_cycle(within: str) -> None:
    """No module imports, through any chain of imports, a module that imports it."""
    assert cycles(import_graph(), within) == []


def test_the_graph_sees_lazy_imports_and_a_cycle() -> None:
    """The check itself: an import inside a function is an edge, a TYPE_CHECKING one is not,
    and two modules importing each other are a cycle."""
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "from . import b\n"
        "if TYPE_CHECKING:\n"
        "    from .c import C\n"
        "def f():\n"
        "    from ..d import e\n"
    )
    known = {"p", "p.q", "p.q.a", "p.q.b", "p.q.c", "p.d"}
    assert set(_imported("p.q.a", False, tree, known)) == {"typing", "p.q.b", "p.d"}
    assert cycles({"p.a": {"p.b"}, "p.b": {"p.a"}, "p.c": {"p.a"}}, "p") == [["p.a", "p.b"]]
    assert cycles({"p.a": {"p.b"}, "p.b": set()}, "p") == []
