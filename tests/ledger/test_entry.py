"""Statements and entries: the leaf bytes, decoding, and every refusal."""

from __future__ import annotations

import base64
import contextlib
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import canonical
from ledger.entry import (
    MAX_LEAF_SIZE,
    STATEMENT_CONTEXT,
    SignatureRecord,
    SignedStatement,
    add_signatures,
    build_entry,
    decode_entry,
    make_statement,
    nfc,
    sign_statement,
    signed_statement_from_json,
    statement_from_json,
    verify_signatures,
)
from ledger.errors import InvalidEntry, InvalidInput, VerificationError
from tests.helpers import ORIGIN, new_signer

CREATED = "2026-11-22T08:00:00Z"
TIME = "2026-11-22T08:00:01.000000Z"
PREV = bytes(range(32))

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=10).map(nfc)
bodies = st.dictionaries(
    text,
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | text,
        lambda c: st.lists(c, max_size=3) | st.dictionaries(text, c, max_size=3),
        max_leaves=8,
    ),
    max_size=5,
)


def _entry_json(seq: int, prev: bytes, time: str, signed: SignedStatement) -> dict[str, Any]:
    return {
        "v": 1,
        "seq": seq,
        "prev": prev.hex(),
        "time": time,
        "statement": signed.statement.to_json(),
        "signatures": [s.to_json() for s in signed.signatures],
    }


@settings(max_examples=150, deadline=None)
@given(
    body=bodies, seq=st.integers(1, 2**53 - 1), name=st.sampled_from(["coop", "合作社", "a.b-c_d"])
)
def test_leaf_is_the_canonical_encoding_of_the_entry(
    body: dict[str, Any], seq: int, name: str
) -> None:
    signer = new_signer(name)
    signed = sign_statement(make_statement("note", body, ORIGIN, CREATED), [signer])
    entry = build_entry(seq, PREV, TIME, signed)
    assert entry.leaf == canonical.dumps(_entry_json(seq, PREV, TIME, signed))
    decoded = decode_entry(entry.leaf)
    assert decoded == entry
    assert decoded.leaf_hash() == entry.leaf_hash()


def test_genesis_has_empty_prev() -> None:
    signed = sign_statement(
        make_statement("note", {"text": "x"}, ORIGIN, CREATED), [new_signer("a")]
    )
    entry = build_entry(0, b"", TIME, signed)
    assert b'"prev":""' in entry.leaf
    assert decode_entry(entry.leaf).prev == b""


def test_signature_covers_context_and_canonical_statement() -> None:
    signer = new_signer("coop")
    statement = make_statement("note", {"text": "赤松茸"}, ORIGIN, CREATED)
    signed = sign_statement(statement, [signer])
    assert statement.signed_message() == STATEMENT_CONTEXT + canonical.dumps(statement.to_json())
    signer.verifier.verify(statement.signed_message(), signed.signatures[0].sig)
    verify_signatures(signed, {signer.verifier.key_id: signer.verifier})
    other = make_statement("note", {"text": "赤松茸!"}, ORIGIN, CREATED)
    forged = SignedStatement(other, signed.signatures)
    with pytest.raises(VerificationError, match=re.escape(signer.verifier.key_id)):
        verify_signatures(forged, {signer.verifier.key_id: signer.verifier})


def test_multi_signatures_are_sorted_and_merged() -> None:
    village, township = new_signer("village"), new_signer("township")
    statement = make_statement("note", {"text": "双认定"}, ORIGIN, CREATED)
    first = sign_statement(statement, [village])
    both = add_signatures(first, sign_statement(statement, [township]).signatures)
    assert [s.key_id for s in both.signatures] == sorted(
        [village.verifier.key_id, township.verifier.key_id]
    )
    verify_signatures(both, {s.verifier.key_id: s.verifier for s in (village, township)})
    # Signing twice with one key keeps one signature.
    assert len(add_signatures(both, first.signatures).signatures) == 2


def test_oversize_entry_is_refused() -> None:
    big = make_statement("note", {"text": "x" * (MAX_LEAF_SIZE)}, ORIGIN, CREATED)
    with pytest.raises(InvalidEntry, match="65535"):
        build_entry(1, PREV, TIME, sign_statement(big, [new_signer("a")]))


def _statement(**changes: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "kind": "note",
        "body": {"text": "x"},
        "origin": ORIGIN,
        "created": CREATED,
    }
    value.update(changes)
    return {k: v for k, v in value.items() if v is not ...}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not an object", "must be a JSON object"),
        (_statement(extra=1), "unexpected"),
        (_statement(kind=...), "missing"),
        (_statement(kind="Batch.Registered"), "dotted lower-case"),
        (_statement(kind="batch..x"), "dotted lower-case"),
        (_statement(body=[1]), "body must be a JSON object"),
        (_statement(origin=""), "origin"),
        (_statement(created="2026-11-22 08:00:00"), "not of the form"),
        (_statement(created="2026-11-22T08:00:00+08:00"), "not of the form"),
        (_statement(created="2026-02-30T08:00:00Z"), "not a real date"),
        (_statement(created="2026-11-22T08:00:00Z\n"), "not of the form"),
        (_statement(body={"amount": 1.5}), "integer fen"),
        (_statement(body={"text": "e\u0301"}), "NFC"),
        (_statement(body={"e\u0301": "x"}), "NFC"),
        (_statement(body={"n": 2**60}), "I-JSON"),
    ],
)
def test_statement_refusals(value: Any, message: str) -> None:
    with pytest.raises(InvalidEntry, match=message):
        statement_from_json(value)


def _signed(sigs: Any) -> dict[str, Any]:
    return {"statement": _statement(), "signatures": sigs}


GOOD_SIG = base64.b64encode(bytes(64)).decode()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"statement": _statement()}, "exactly"),
        (_signed([]), "non-empty list"),
        (_signed([{"key": "a+0000000g", "sig": GOOD_SIG}]), "not a key id"),
        (_signed([{"key": "a b+00000000", "sig": GOOD_SIG}]), "not a key id"),
        (_signed([{"key": "a+00000000", "sig": "!!"}]), "base64"),
        (_signed([{"key": "a+00000000", "sig": base64.b64encode(bytes(63)).decode()}]), "64 bytes"),
        (_signed([{"key": "a+00000000", "sig": GOOD_SIG, "x": 1}]), "exactly 'key' and 'sig'"),
        (
            _signed(
                [{"key": "b+00000000", "sig": GOOD_SIG}, {"key": "a+00000000", "sig": GOOD_SIG}]
            ),
            "sorted",
        ),
        (_signed([{"key": "a+00000000", "sig": GOOD_SIG}] * 2), "sorted"),
        (
            _signed([{"key": f"k{i:02d}+00000000", "sig": GOOD_SIG} for i in range(17)]),
            "at most 16",
        ),
    ],
)
def test_signed_statement_refusals(value: Any, message: str) -> None:
    with pytest.raises(InvalidEntry, match=message):
        signed_statement_from_json(value)


def _leaf(**changes: Any) -> bytes:
    signed = sign_statement(
        make_statement("note", {"text": "x"}, ORIGIN, CREATED), [new_signer("a")]
    )
    value = _entry_json(3, PREV, TIME, signed)
    value.update(changes)
    return canonical.dumps(value)


@pytest.mark.parametrize(
    ("leaf", "message"),
    [
        (_leaf(v=2), "version"),
        (_leaf(seq=-1), "non-negative"),
        (_leaf(seq=True), "non-negative"),
        (_leaf(prev="AB" * 32), "hex"),
        (_leaf(prev=""), "exactly for seq 0"),
        (_leaf(time="2026-11-22T08:00:01Z"), "not of the form"),
        (b'{"v":1}', "exactly the fields"),
        (b"[]", "exactly the fields"),
        (_leaf().replace(b'{"prev"', b'{ "prev"'), "canonical"),
        (_leaf().replace(b'"seq":3', b'"seq":03'), "invalid JSON"),
        (b"x" * (MAX_LEAF_SIZE + 1), "limit"),
    ],
)
def test_decode_refusals(leaf: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_entry(leaf)


def test_decode_refuses_reordered_keys() -> None:
    leaf = _leaf()
    value = canonical.parse(leaf)
    import json

    reordered = json.dumps(
        dict(reversed(list(value.items()))), separators=(",", ":"), ensure_ascii=False
    ).encode()
    with pytest.raises(InvalidEntry, match="canonical"):
        decode_entry(reordered)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_decode_raises_only_ledger_errors(data: bytes) -> None:
    with contextlib.suppress(InvalidInput):
        decode_entry(data)


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=9), c, max_size=4),
        max_leaves=12,
    )
)
def test_signed_statement_parser_raises_only_ledger_errors(value: Any) -> None:
    for candidate in (value, {"statement": value, "signatures": value}):
        with contextlib.suppress(InvalidInput):
            signed_statement_from_json(candidate)


def test_signature_record_json() -> None:
    record = SignatureRecord("a+00000000", bytes(64))
    assert record.to_json() == {"key": "a+00000000", "sig": GOOD_SIG}
