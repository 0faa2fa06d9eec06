"""docs/DOMAIN.md describes exactly the kinds the code registers, with the code's schemas."""

from __future__ import annotations

import json
import re

import pytest
from jsonschema import Draft202012Validator

import ledger.domain  # noqa: F401  (registers the domain kinds)
from ledger.rules import KINDS
from tests.helpers import REPO

DOC = (REPO / "docs" / "DOMAIN.md").read_text(encoding="utf-8")
SECTION = re.compile(r"^### `([a-z][a-z0-9_.]*)`\s*$", re.MULTILINE)


HEADING = re.compile(r"^#{1,3} ", re.MULTILINE)


def _sections() -> dict[str, str]:
    """Each kind's text: from its heading to the next heading of level 1–3."""
    out = {}
    for m in SECTION.finditer(DOC):
        following = HEADING.search(DOC, m.end())
        out[m.group(1)] = DOC[m.end() : following.start() if following else len(DOC)]
    return out


SECTIONS = _sections()


def _json_blocks(text: str) -> list[object]:
    return [json.loads(b) for b in re.findall(r"```json\n(.*?)```", text, re.DOTALL)]


def test_every_registered_kind_is_documented_and_nothing_else() -> None:
    assert sorted(SECTIONS) == sorted(KINDS)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_documented_schema_is_the_codes(kind: str) -> None:
    spec = KINDS[kind]
    assert spec.schema is not None, f"{kind} has no schema"
    Draft202012Validator.check_schema(dict(spec.schema))
    blocks = _json_blocks(SECTIONS[kind])
    assert blocks, f"{kind}: no json blocks in its section"
    assert blocks[0] == spec.schema, f"{kind}: the schema in docs/DOMAIN.md differs from the code"
    assert "Signed by" in SECTIONS[kind], f"{kind}: no 'Signed by' line"
    assert spec.signers, f"{kind}: KindSpec.signers is empty"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_documented_examples_validate(kind: str) -> None:
    spec = KINDS[kind]
    assert spec.schema is not None
    examples = _json_blocks(SECTIONS[kind])[1:]
    assert examples, f"{kind}: no example body"
    validator = Draft202012Validator(dict(spec.schema))
    for example in examples:
        errors = [e.message for e in validator.iter_errors(example)]
        assert not errors, f"{kind}: example does not validate: {errors}"
