"""The repository stands alone: its references resolve to files it holds.

Checks that every item of docs/scenarios.md names tests ("Held by") that exist,
that every "docs/scenarios.md item N" citation names an existing item, that no
file points at design notes kept outside the repository, and that every relative
markdown link resolves to a file inside the repository.
"""

from __future__ import annotations

import ast
import functools
import os
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "docs" / "scenarios.md"

#: folders that are not part of the repository's text (tools, caches, build output)
SKIPPED_DIRS = {".git", ".venv", "__pycache__", "build", "dist", "results", ".hypothesis", ".pytest_cache"}

ITEM = re.compile(r"^(\d+)\. ", re.MULTILINE)
HELD_BY = re.compile(r"`((?:tests|bench)/[\w/.-]+\.py)((?:::\w+)*)`")
CITATION = re.compile(r"scenarios\.md\)?\s+items?\s+(\d+(?:\s*-\s*\d+)?(?:\s*(?:,|and)\s*\d+(?:\s*-\s*\d+)?)*)")

# Built from parts so that this file does not match its own patterns.
_OUTSIDE = ["DESIGN" + r"\.md", "STYLE" + r"\.md", "SCENARIOS" + r"\.md", r"\bSCENARIOS" + r"[ \t]+\d",
            r"\b(?:DESIGN|STYLE)" + r" (?:facts?|traits?)\b", "/work/" + "shared", r"\.\./" + "shared\\b"]
OUTSIDE_REFERENCE = re.compile("|".join(_OUTSIDE))

MARKDOWN_LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
FENCED_BLOCK = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def repository_files(suffixes: tuple[str, ...] | None = None) -> list[pathlib.Path]:
    """Every file of the working tree outside SKIPPED_DIRS (optionally only these suffixes)."""
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info")]
        found.extend(pathlib.Path(folder, name) for name in files
                     if suffixes is None or pathlib.Path(name).suffix in suffixes)
    return sorted(found)


def text_of(path: pathlib.Path) -> str | None:
    """The file's text, or None for binary files."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None


@functools.cache
def scenario_items() -> dict[int, str]:
    """Item number -> its text (up to the next item or heading) in docs/scenarios.md."""
    text = SCENARIOS.read_text(encoding="utf-8")
    starts = list(ITEM.finditer(text))
    items = {}
    for index, match in enumerate(starts):
        end = starts[index + 1].start() if index + 1 < len(starts) else len(text)
        heading = text.find("\n## ", match.start(), end)
        items[int(match.group(1))] = text[match.start():heading if heading != -1 else end]
    return items


def held_by(item: str) -> list[tuple[str, tuple[str, ...]]]:
    """The (file, names) pairs an item's "Held by" list gives."""
    return [(m.group(1), tuple(n for n in m.group(2).split("::") if n)) for m in HELD_BY.finditer(item)]


def defines(tree: ast.AST, names: tuple[str, ...]) -> bool:
    """True if the module defines the function/class path ``names`` (Class, method)."""
    scope = getattr(tree, "body", [])
    for name in names:
        found = [node for node in scope
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name]
        if not found:
            return False
        scope = getattr(found[0], "body", [])
    return True


def cited_numbers(citation: str) -> list[int]:
    """The item numbers of a citation such as "3, 5-7 and 9"."""
    numbers = []
    for part in re.split(r"\s*(?:,|and)\s*", citation.strip()):
        low, _, high = part.partition("-")
        numbers.extend(range(int(low), int(high or low) + 1))
    return numbers


def test_items_are_numbered_one_to_n() -> None:
    numbers = list(scenario_items())
    assert numbers == list(range(1, len(numbers) + 1)), f"docs/scenarios.md items are numbered {numbers}"


@pytest.mark.parametrize("number", sorted(scenario_items()))
def test_every_item_names_tests_that_exist(number: int) -> None:
    references = held_by(scenario_items()[number])
    assert references, f"docs/scenarios.md item {number} names no test (a 'Held by' list)"
    problems = []
    for file, names in references:
        path = ROOT / file
        if not path.is_file():
            problems.append(f"{file}: no such file")
        elif names and not defines(ast.parse(path.read_text(encoding="utf-8")), names):
            problems.append(f"{file}::{'::'.join(names)}: not defined in that file")
    assert not problems, f"docs/scenarios.md item {number}: " + "; ".join(problems)


def test_held_by_parser_reads_file_and_names() -> None:
    item = "1. Text.\n\n    Held by:\n    - `tests/unit/a.py::Klass::test_x`\n    - `bench/b.py`\n"
    assert held_by(item) == [("tests/unit/a.py", ("Klass", "test_x")), ("bench/b.py", ())]


def test_citations_name_existing_items() -> None:
    known = set(scenario_items())
    problems = []
    citations = 0
    for path in repository_files((".py", ".md", ".toml", ".yaml", ".yml", ".sh", ".txt", ".cfg", ".service")):
        text = text_of(path)
        for match in CITATION.finditer(text or ""):
            citations += 1
            missing = [n for n in cited_numbers(match.group(1)) if n not in known]
            if missing:
                problems.append(f"{path.relative_to(ROOT)}: {match.group(0)!r} names no item {missing}")
    assert citations > 0, "no 'docs/scenarios.md item N' citation found: is the pattern still the one in use?"
    assert not problems, "\n".join(problems)


def test_cited_numbers_reads_lists_and_ranges() -> None:
    assert cited_numbers("8-11, 15, 16") == [8, 9, 10, 11, 15, 16]
    assert cited_numbers("16 and 17") == [16, 17]
    assert CITATION.search("the router ([scenarios.md](scenarios.md) item 8): no state").group(1) == "8"


def test_no_file_refers_to_notes_outside_the_repository() -> None:
    problems = []
    for path in repository_files():
        text = text_of(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            match = OUTSIDE_REFERENCE.search(line)
            if match:
                problems.append(f"{path.relative_to(ROOT)}:{number}: {match.group(0)!r}")
    assert not problems, "references to files outside the repository:\n" + "\n".join(problems)


@pytest.mark.parametrize("line", ["see " + "DESIGN" + ".md", "(" + "SCENARIOS" + " 3)", "the " + "STYLE" + " trait 6",
                                  "/work/" + "shared/x", "../" + "shared/y"])
def test_outside_reference_pattern_catches_the_old_forms(line: str) -> None:
    assert OUTSIDE_REFERENCE.search(line)


def test_outside_reference_pattern_leaves_ordinary_words() -> None:
    for line in ('SCENARIOS = {"latency": 1}', "docs/scenarios.md item 3", "aioquic style", "design decisions"):
        assert not OUTSIDE_REFERENCE.search(line), line


def markdown_targets(text: str) -> list[str]:
    """Relative link targets of a markdown text, code blocks and code spans left out."""
    prose = INLINE_CODE.sub("", FENCED_BLOCK.sub("", text))
    targets = []
    for match in MARKDOWN_LINK.finditer(prose):
        target = match.group(1)
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0])
    return targets


def test_markdown_targets_skip_urls_anchors_and_code() -> None:
    text = "[a](docs/x.md#part) [b](https://example.org) [c](#top) `[d](e.md)`\n```\n[f](g.md)\n```\n"
    assert markdown_targets(text) == ["docs/x.md"]


@pytest.mark.parametrize("path", repository_files((".md",)), ids=lambda p: str(p.relative_to(ROOT)))
def test_markdown_links_resolve_inside_the_repository(path: pathlib.Path) -> None:
    problems = []
    for target in markdown_targets(path.read_text(encoding="utf-8")):
        resolved = (path.parent / target).resolve()
        if not resolved.is_relative_to(ROOT):
            problems.append(f"{target}: outside the repository")
        elif not resolved.exists():
            problems.append(f"{target}: no such file")
    assert not problems, f"{path.relative_to(ROOT)}: " + "; ".join(problems)


def test_the_docs_this_guide_promises_exist() -> None:
    for name in ("README.md", "CONTRIBUTING.md", "docs/scenarios.md", "docs/design-facts.md",
                 "docs/architecture.md", "docs/plugins.md", "bench/README.md"):
        assert (ROOT / name).is_file(), f"{name} is missing"
