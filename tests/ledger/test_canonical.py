"""RFC 8785 canonical JSON: the published vectors, the fast path against the reference, strict parsing."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import canonical
from ledger.errors import InvalidInput
from tests.helpers import VECTORS

JCS = VECTORS / "jcs"
NAMES = ["arrays", "french", "structures", "unicode", "values", "weird"]


def test_vectors_are_present() -> None:
    assert sorted(p.stem for p in (JCS / "input").glob("*.json")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_published_vectors(name: str) -> None:
    value = canonical.parse((JCS / "input" / f"{name}.json").read_bytes(), allow_floats=True)
    expected = (JCS / "output" / f"{name}.json").read_bytes()
    assert canonical.dumps(value) == expected
    hex_bytes = bytes.fromhex(
        (JCS / "outhex" / f"{name}.txt").read_text().replace(" ", "").replace("\n", "")
    )
    assert canonical.dumps(value) == hex_bytes


# Values the ledger holds: no floats.  Keys and strings range over all of Unicode
# except lone surrogates, including astral characters (which force the reference path).
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
ledger_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(ledger_values)
def test_fast_path_equals_reference(value: Any) -> None:
    assert canonical.dumps(value) == rfc8785.dumps(value)


@settings(max_examples=200, deadline=None)
@given(ledger_values)
def test_parse_round_trip(value: Any) -> None:
    encoded = canonical.dumps(value)
    assert canonical.parse(encoded) == value
    assert canonical.dumps(canonical.parse(encoded)) == encoded


def test_keys_sort_by_utf16_code_units() -> None:
    # U+FB33 sorts after U+1F602 in UTF-16 (0xD83D < 0xFB33), before it by code point.
    value = {"\ufb33": 1, "\U0001f602": 2}
    assert canonical.dumps(value) == '{"\U0001f602":2,"\ufb33":1}'.encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"a": 1, "a": 2}', "duplicate object key"),
        (b'{"amount": 1.5}', "not an integer"),
        (b'{"amount": 1e3}', "not an integer"),
        (b'{"amount": NaN}', "not valid JSON"),
        (b'{"amount": Infinity}', "not valid JSON"),
        (b'{"amount": 9007199254740992}', "I-JSON"),
        (b'"\\ud800"', "lone surrogate"),
        (b'{"a": "\\udc00x"}', "lone surrogate"),
        (b"\xff\xfe", "UTF-8"),
        (b'{"a": ', "invalid JSON"),
        (b"[" * 40 + b"]" * 40, "nested deeper"),
        (b"", "invalid JSON"),
    ],
)
def test_parse_refuses(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        canonical.parse(data)


def test_parse_allows_floats_only_when_asked() -> None:
    assert canonical.parse(b"[1.5]", allow_floats=True) == [1.5]


def test_strict_dumps_refuses_floats() -> None:
    assert canonical.dumps({"a": 1.5}) == b'{"a":1.5}'
    with pytest.raises(InvalidInput, match="integer fen"):
        canonical.dumps({"a": [1, {"b": 1.0}]}, strict=True)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"a": float("nan")}, "not finite"),
        ({1: "a"}, "not a string"),
        ({"a": 2**60}, "I-JSON"),
        ({"a": object()}, "cannot be encoded"),
        ({"a": "\ud800"}, "lone surrogate"),
        ({"a": "e\u0301"}, None),  # not NFC, but allowed unless NFC is required
    ],
)
def test_dumps_refuses(value: Any, message: str | None) -> None:
    if message is None:
        assert canonical.dumps(value)
        with pytest.raises(InvalidInput, match="NFC"):
            canonical.dumps(value, strict=True)
    else:
        with pytest.raises(InvalidInput, match=message):
            canonical.dumps(value)


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=200)
    | st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass"))
)
def test_parse_raises_only_invalid_input(data: bytes) -> None:
    with contextlib.suppress(InvalidInput):
        canonical.parse(data)


def test_vectors_dir_is_the_shared_one() -> None:
    assert Path(JCS).is_dir() and json.loads((JCS / "input" / "arrays.json").read_text())
