"""The docs against the code: every default a settings table quotes, the figures prose quotes,
the README's numbered store rules and every reference to them, and every link to a section
resolve to what the code and the docs say now (issue 23: docs cited "rule 8" for rule 9, and
quoted an import limit of 8 MiB for a default of 4 MiB)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from starlette_platform_metadata.events import EventSettings
from starlette_platform_metadata.history import DEFAULT_HISTORY_PER_USER
from starlette_platform_metadata.limits import Limits
from starlette_platform_metadata.policy import PolicyLimits

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]
SETTINGS: list[Any] = [Limits(), PolicyLimits(), EventSettings()]
UNITS = {"": 1, "B": 1, "bytes": 1, "KiB": 1024, "MiB": 1024**2, "s": 1, "ms": 0.001}


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _default(name: str) -> Any:
    owners = [s for s in SETTINGS if name in {f.name for f in dataclasses.fields(s)}]
    return getattr(owners[0], name) if len(owners) == 1 else None


def _number(cell: str) -> float | None:
    """The first quantity of a table cell: `262144 (256 KiB)`, `15 s`, `0.2 s`, `1,000`."""
    match = re.match(r"\s*([0-9][0-9,_]*(?:\.[0-9]+)?)\s*(KiB|MiB|bytes|B|ms|s)?\b", cell)
    if match is None:
        return None
    return float(match.group(1).replace(",", "").replace("_", "")) * UNITS[match.group(2) or ""]


def _table_defaults() -> list[tuple[str, str, float, Any]]:
    """(file, setting, documented default, code default) for every settings-table row."""
    found = []
    for path in DOCS:
        default_column: int | None = None
        for line in _text(path).splitlines():
            if not line.startswith("|"):
                default_column = None
                continue
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if default_column is None:
                lowered = [cell.lower() for cell in cells]
                default_column = lowered.index("default") if "default" in lowered else -1
                continue
            if default_column < 1 or len(cells) <= default_column:
                continue
            name = re.fullmatch(r"`(\w+)`", cells[0])
            if name is None or (code := _default(name.group(1))) is None:
                continue
            documented = _number(cells[default_column])
            if documented is not None:
                found.append((path.name, name.group(1), documented, code))
    return found


def test_settings_tables_were_found() -> None:
    """The check below reads real tables: Limits, PolicyLimits and EventSettings rows."""
    names = {name for _, name, _, _ in _table_defaults()}
    assert {"max_body_bytes", "max_import_bytes", "max_schema_bytes", "max_streams",
            "max_streams_per_identity", "send_timeout"} <= names


@pytest.mark.parametrize(("doc", "name", "documented", "code"), _table_defaults())
def test_every_documented_default_is_the_codes(doc: str, name: str, documented: float, code: Any) -> None:
    assert documented == pytest.approx(code), f"{doc}: {name} documented as {documented}, code says {code}"


# Figures quoted in prose: (file, pattern whose group is the figure, the code's value).
PROSE = [
    ("README.md", r"`Limits` bounds request bodies \(([0-9]+ KiB)\)", Limits().max_body_bytes),
    ("README.md", r"stored documents \(([0-9]+ KiB)\)", Limits().max_document_bytes),
    ("client.md", r"`max_import_bytes`, ([0-9]+ MiB) by default", Limits().max_import_bytes),
    ("listing.md", r"`Limits.max_import_bytes` \(default ([0-9]+ MiB)\)", Limits().max_import_bytes),
    ("postgresql.md", r"`max_body_bytes` \(([0-9]+ KiB) by default", Limits().max_body_bytes),
    ("history.md", r"`Limits.max_document_bytes`, ([0-9]+ KiB) by", Limits().max_document_bytes),
    ("events.md", r"bounded \(default ([0-9,]+)\)", EventSettings().max_streams),
    ("events.md", r"per username, default ([0-9,]+)\)", EventSettings().max_streams_per_identity),
    ("events.md", r"one platform's streams \(default ([0-9,]+)\)", EventSettings().max_streams_per_platform),
    ("history.md", r"are kept per \(platform, user\): default \*\*([0-9]+)\*\*", DEFAULT_HISTORY_PER_USER),
]


@pytest.mark.parametrize(("doc", "pattern", "code"), PROSE)
def test_figures_quoted_in_prose_are_the_codes(doc: str, pattern: str, code: float) -> None:
    path = next(p for p in DOCS if p.name == doc)
    quoted = re.findall(pattern, re.sub(r"\s+", " ", _text(path)))
    assert quoted, f"{doc} no longer says {pattern!r}: update this test with the doc"
    for figure in quoted:
        assert _number(figure) == code, f"{doc}: {figure} against {code} in the code"


def test_every_postgresql_write_is_quoted_at_the_same_round_trips() -> None:
    """A write is one compare-and-set, after a read unless the process stored the row last:
    "one or two" round trips, wherever the docs count it."""
    counts = set()
    pattern = r"a write for ([\w ]+?)\b(?:[,(]| round| so)|([\w ]+?) round trips per write|([\w ]+?) for a write\)"
    for path in DOCS:
        text = re.sub(r"\s+", " ", _text(path))
        counts.update(re.findall(pattern, text))
    words = {word.strip() for group in counts for word in group if word}
    assert words and words <= {"one or two", "or two"}, words


def _store_rules() -> dict[int, str]:
    section = _text(ROOT / "README.md").split("## Writing a store", 1)[1].split("\n## ", 1)[0]
    return {int(n): title for n, title in re.findall(r"^(\d+)\. \*\*(.+?)\*\*", section, re.M)}


def test_the_store_rules_are_numbered_as_they_render() -> None:
    """Markdown renders a list's numbers in order: written out of order, "rule 8" on GitHub
    and in the text name different rules."""
    assert list(_store_rules()) == list(range(1, len(_store_rules()) + 1))


def test_every_reference_to_a_store_rule_names_it() -> None:
    """`rule N ("Title")`: the title is the rule's own, so a renumbering cannot go unnoticed."""
    rules = _store_rules()
    references = 0
    for path in DOCS:
        text = re.sub(r"\s+", " ", _text(path))
        for number, title in re.findall(r"\brules? (\d+) \(\"(.+?)\"\)", text) + re.findall(
            r"\band (\d+) \(\"(.+?)\"\)", text
        ):
            references += 1
            assert rules.get(int(number)) == title, f"{path.name}: rule {number} is {rules.get(int(number))!r}, not {title!r}"
        bare = re.findall(r"\brules? (\d+)\b(?! \(\")", text)
        assert not bare, f"{path.name} cites rule(s) {bare} without their titles"
    assert references >= 3


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    in_code = False
    for line in _text(path).splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not line.startswith("#"):
            continue
        slug = _slug(line.lstrip("#"))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def test_every_link_to_a_section_resolves() -> None:
    broken = []
    for path in DOCS:
        for target, anchor in re.findall(r"\]\(([^)#\s]*)#([^)\s]+)\)", _text(path)):
            if target.startswith("http"):
                continue
            linked = (path.parent / target).resolve() if target else path
            if not linked.exists() or anchor not in _anchors(linked):
                broken.append(f"{path.relative_to(ROOT)} -> {target}#{anchor}")
    assert broken == []
