"""docs/SECURITY.md names the tests that show each defence: every one must exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "SECURITY.md"
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?`")


def _test_names(path: Path) -> set[str]:
    """Names of the test functions in one file, top level or in classes."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


def test_every_cited_test_exists() -> None:
    references = REFERENCE.findall(DOC.read_text(encoding="utf-8"))
    assert len(references) >= 40, "the threat model should cite the tests that show it"
    missing = []
    for file, name in references:
        path = ROOT / file
        if not path.is_file():
            missing.append(file)
        elif name and name not in _test_names(path):
            missing.append(f"{file}::{name}")
    assert not missing, f"docs/SECURITY.md cites tests that do not exist: {missing}"


def test_every_adversary_has_defences_tests_and_limits() -> None:
    sections = re.split(r"^### ", DOC.read_text(encoding="utf-8"), flags=re.M)[1:]
    adversaries = [s for s in sections if re.match(r"\d\. ", s)]
    assert len(adversaries) == 5
    for section in adversaries:
        title = section.splitlines()[0]
        for part in ("**Defences.**", "**Tests.**", "**Not defended.**"):
            assert part in section, f"{title}: no {part}"
        assert REFERENCE.search(section.split("**Tests.**")[1]), f"{title}: cites no test"
