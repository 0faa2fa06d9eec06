"""Hypothesis properties of the log's formats that tests/ledger and tests/witness lack.

Arbitrary outside input never raises anything but a ledger error (for the
parsers the existing tests do not cover that way: split_note, tile paths,
entry bundles, tiles, proofs with huge sizes, add-checkpoint bodies); a
one-byte change to a valid signed checkpoint, cosignature or leaf never
verifies; canonical JSON with floats and astral keys is a fixed point.
The fixed keys and tree come from :mod:`tests.fuzz.fixtures`.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import canonical
from ledger.checkpoint import Checkpoint, sign_checkpoint, verify_checkpoint
from ledger.cosignature import verify_cosignatures
from ledger.entry import decode_entry, verify_signatures
from ledger.errors import Error, InvalidInput, VerificationError
from ledger.merkle import root_ids, verify_consistency, verify_inclusion
from ledger.note import sign_note, split_note
from ledger.tiles import (
    TILE_WIDTH,
    EntryBundle,
    Tile,
    TileHashReader,
    decode_entry_bundle,
    parse_tile_path,
)
from ledger.witness import (
    MAX_PROOF_LINES,
    Refused,
    check_submission,
    format_add_checkpoint,
    parse_add_checkpoint,
)
from tests.fuzz import fixtures as fx

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _mutations(data: bytes) -> st.SearchStrategy[tuple[int, bytes]]:
    """A position and a one-byte change there: replace (by another byte), insert or delete."""

    def apply(pos: int, kind: int, byte: int) -> tuple[int, bytes]:
        if kind == 0:
            new = byte if byte != data[pos] else (byte + 1) % 256
            return pos, data[:pos] + bytes([new]) + data[pos + 1 :]
        if kind == 1:
            return pos, data[:pos] + bytes([byte]) + data[pos:]
        return pos, data[:pos] + data[pos + 1 :]

    return st.builds(
        apply,
        st.integers(0, len(data) - 1),
        st.integers(0, 2),
        st.integers(0, 255),
    )


# ---------------------------------------------------------------------------
# canonical JSON

_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=8)
_floats = st.floats(allow_nan=False, allow_infinity=False)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | _floats | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=16,
)


def _same_numbers(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_numbers(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_numbers(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@FAST
@given(_json)
def test_canonical_with_floats_is_a_fixed_point(value: Any) -> None:
    encoded = canonical.dumps(value)
    try:
        again = canonical.parse(encoded, allow_floats=True)
    except InvalidInput as exc:
        # A whole float >= 2**53 (e.g. 1e20) is written as an integer RFC 8785 style,
        # which the I-JSON integer check then refuses: refused, never mis-read.
        assert "I-JSON" in str(exc)
        return
    assert _same_numbers(again, value)
    assert canonical.dumps(again) == encoded  # idempotent


@FAST
@given(
    st.from_regex(r"-?(0|[1-9][0-9]{0,400})(\.[0-9]{1,30})?([eE][+-]?[0-9]{1,4})?", fullmatch=True)
)
def test_parsed_floats_are_finite_or_refused(number: str) -> None:
    try:
        value = canonical.parse(f"[{number}]", allow_floats=True)
    except InvalidInput:
        return
    assert all(not isinstance(v, float) or math.isfinite(v) for v in value)
    canonical.dumps(value)  # whatever parses can be encoded


def test_float_overflow_is_refused() -> None:
    # Found by fuzzing: 1e400 parsed to inf, which dumps() then refused.
    with pytest.raises(InvalidInput, match="out of range"):
        canonical.parse(b"[1e400]", allow_floats=True)
    with pytest.raises(InvalidInput, match="not an integer"):
        canonical.parse(b"[1e400]")


# ---------------------------------------------------------------------------
# notes, checkpoints, cosignatures

_NOTE = fx.note_samples()["note-two-keys"].encode()


@FAST
@given(st.binary(max_size=300) | st.sampled_from([_NOTE]).flatmap(_mutations).map(lambda m: m[1]))
def test_split_note_refuses_with_invalid_input_or_reassembles(data: bytes) -> None:
    try:
        text, signatures = split_note(data)
    except InvalidInput:
        return
    assert (text + "\n" + "".join(s.line() for s in signatures)).encode() == data


_CHECKPOINT = fx.checkpoint_note(300).encode()


@settings(max_examples=150, deadline=None)
@given(_mutations(_CHECKPOINT))
def test_one_byte_change_to_a_checkpoint_never_verifies(mutation: tuple[int, bytes]) -> None:
    _, mutated = mutation
    with pytest.raises(Error):
        verify_checkpoint(mutated, fx.LOG_VERIFIER, fx.ORIGIN)


@FAST
@given(
    size=st.integers(0, 2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    data=st.data(),
)
def test_one_byte_change_to_any_checkpoint_never_verifies(
    size: int, root: bytes, data: st.DataObject
) -> None:
    note = sign_checkpoint(Checkpoint(fx.ORIGIN, size, root), fx.LOG_SIGNER).encode()
    cp, _ = verify_checkpoint(note, fx.LOG_VERIFIER, fx.ORIGIN)
    assert (cp.size, cp.root) == (size, root)
    _, mutated = data.draw(_mutations(note))
    with pytest.raises(Error):
        verify_checkpoint(mutated, fx.LOG_VERIFIER, fx.ORIGIN)


_COSIGNED = fx.cosigned_note(300)
_WITNESS_LINE = next(line for line in _COSIGNED.split("\n") if fx.WITNESS_NAME in line)
_LOG_LINE = next(line for line in _COSIGNED.split("\n") if line.startswith(f"— {fx.ORIGIN} "))


@settings(max_examples=150, deadline=None)
@given(_mutations(_COSIGNED.encode()))
def test_one_byte_change_to_a_cosignature_never_verifies(mutation: tuple[int, bytes]) -> None:
    pos, mutated = mutation
    log_start = _COSIGNED.encode().index(_LOG_LINE.encode())
    in_log_line = log_start < pos < log_start + len(_LOG_LINE.encode())
    try:
        found = verify_cosignatures(mutated, [fx.WITNESS_VERIFIER])
    except Error:
        return
    if in_log_line:  # the log's own line is not the witness's business
        assert found in ([(fx.WITNESS_NAME, fx.COSIGN_TIME)], [])
    else:
        assert found == [], f"mutation at {pos} still verified"


# ---------------------------------------------------------------------------
# leaves


_SIGNED = fx.statement_samples()["batch"]
_LEAF = fx.entry(5, _SIGNED).leaf


@settings(max_examples=150, deadline=None)
@given(_mutations(_LEAF))
def test_one_byte_change_to_a_leaf_is_refused_or_unsigned(mutation: tuple[int, bytes]) -> None:
    _, mutated = mutation
    try:
        entry = decode_entry(mutated)
    except Error:
        return
    assert entry.leaf == mutated
    if entry.signed == _SIGNED:  # only the log's own fields (seq, prev, time) changed
        verify_signatures(entry.signed, fx.AUTHORS)
    else:
        with pytest.raises(Error):
            verify_signatures(entry.signed, fx.AUTHORS)


@pytest.mark.parametrize("seq", [2**53, 10**57 + 10])
def test_leaf_with_seq_beyond_i_json_is_refused(seq: int) -> None:
    # Found by fuzzing: json.loads read any integer and str(seq) wrote it back verbatim,
    # so decode_entry accepted a seq that has no RFC 8785 form (the strict parser refuses it).
    leaf = fx.entry(5).leaf.replace(b'"seq":5,', b'"seq":%d,' % seq)
    with pytest.raises(InvalidInput, match="I-JSON"):
        canonical.parse(leaf)
    with pytest.raises(InvalidInput, match="I-JSON"):
        decode_entry(leaf)
    assert decode_entry(fx.entry(2**53 - 1).leaf).seq == 2**53 - 1


# ---------------------------------------------------------------------------
# tiles and bundles


@FAST
@given(
    st.text(max_size=40)
    | st.from_regex(r"tile/(entries|[0-9]{1,3})(/x?[0-9]{1,4}){1,4}(\.p/[0-9]{1,4})?")
)
def test_tile_paths_are_canonical_or_refused(path: str) -> None:
    try:
        parsed = parse_tile_path(path)
    except InvalidInput:
        return
    assert isinstance(parsed, Tile | EntryBundle)
    assert parsed.path() == path


@pytest.mark.parametrize("elements", [7, 1434, 1500])
def test_tile_paths_with_too_many_index_elements_are_refused(elements: int) -> None:
    # Found by fuzzing: 1,434+ elements made int() raise ValueError (the digit limit).
    path = "tile/0/" + "x001/" * (elements - 1) + "000"
    with pytest.raises(InvalidInput, match="at most 6 index elements"):
        parse_tile_path(path)
    with pytest.raises(InvalidInput, match="at most 6 index elements"):
        parse_tile_path(path.replace("tile/0/", "tile/entries/"))


def test_proofs_with_huge_sizes_are_refused_with_verification_error() -> None:
    # Found by fuzzing: messages printing a 4,300+ digit size raised ValueError.
    h = fx.ROOTS[1]
    for index, size in ((10**4400, 10**4400 + 1), (0, 10**4400), (2**64, 2**64 + 1)):
        with pytest.raises(VerificationError, match="at most 2"):
            verify_inclusion(h, index, size, [], h)
        with pytest.raises(VerificationError, match="at most 2"):
            verify_consistency(1 if index == 0 else index, size, [h], h, h)


@FAST
@given(st.binary(max_size=600), st.none() | st.integers(0, TILE_WIDTH))
def test_entry_bundles_decode_exactly_or_refuse(data: bytes, count: int | None) -> None:
    try:
        entries = decode_entry_bundle(data, count)
    except InvalidInput:
        return
    assert count is None or len(entries) == count
    assert b"".join(len(e).to_bytes(2, "big") + e for e in entries) == data


@FAST
@given(size=st.integers(1, 2**64 - 1), bodies=st.lists(st.binary(max_size=200), min_size=1))
def test_tile_reader_refuses_bad_bodies_with_invalid_input(size: int, bodies: list[bytes]) -> None:
    served = iter(bodies * 64)

    def fetch(tile: Tile) -> bytes:
        return next(served)

    reader = TileHashReader(fetch, size)
    with contextlib.suppress(InvalidInput):
        hashes = reader(root_ids(size))
        assert all(len(h) == 32 for h in hashes)


# ---------------------------------------------------------------------------
# proofs

_sizes = (
    st.integers(0, 40)
    | st.integers(0, 2**64)
    | st.integers(0, 2**130)
    | st.integers(10**4300, 10**4400)  # beyond Python's int-to-str digit limit
)
_items = (
    st.binary(min_size=32, max_size=32) | st.binary(max_size=40) | st.sampled_from([None, "x", 3])
)


@FAST
@given(index=_sizes, size=_sizes, proof=st.lists(_items, max_size=140))
def test_inclusion_never_raises_anything_else(index: int, size: int, proof: list[Any]) -> None:
    leaf = fx.LEAF_HASHES[index % fx.TREE_SIZE]
    root = fx.ROOTS[size] if size <= fx.TREE_SIZE else fx.ROOTS[-1]
    try:
        verify_inclusion(leaf, index, size, proof, root)
    except VerificationError:
        return
    assert index < size <= fx.TREE_SIZE and proof == fx.inclusion(index, size)


@FAST
@given(size1=_sizes, size2=_sizes, proof=st.lists(_items, max_size=140))
def test_consistency_never_raises_anything_else(size1: int, size2: int, proof: list[Any]) -> None:
    root1 = fx.ROOTS[size1] if size1 <= fx.TREE_SIZE else fx.ROOTS[1]
    root2 = fx.ROOTS[size2] if size2 <= fx.TREE_SIZE else fx.ROOTS[2]
    try:
        verify_consistency(size1, size2, proof, root1, root2)
    except VerificationError:
        return
    # Only a genuine proof (or equal sizes with equal roots and no proof) gets through.
    assert proof == ([] if size1 == size2 else fx.consistency(size1, size2))


@FAST
@given(st.integers(1, fx.TREE_SIZE).flatmap(lambda n: st.tuples(st.integers(1, n), st.just(n))))
def test_genuine_consistency_proofs_verify_and_any_flipped_bit_fails(
    sizes: tuple[int, int],
) -> None:
    size1, size2 = sizes
    proof = fx.consistency(size1, size2)
    verify_consistency(size1, size2, proof, fx.ROOTS[size1], fx.ROOTS[size2])
    for i, item in enumerate(proof):
        bad = [*proof]
        bad[i] = bytes([item[0] ^ 1]) + item[1:]
        with pytest.raises(VerificationError):
            verify_consistency(size1, size2, bad, fx.ROOTS[size1], fx.ROOTS[size2])


# ---------------------------------------------------------------------------
# witness add-checkpoint bodies

_hashes = st.lists(st.binary(min_size=32, max_size=32), max_size=MAX_PROOF_LINES)
_note_text = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=60)


@FAST
@given(old=st.integers(0, 2**64 - 1), proof=_hashes, note=_note_text)
def test_add_checkpoint_body_round_trips(old: int, proof: list[bytes], note: str) -> None:
    body = format_add_checkpoint(old, proof, note)
    try:
        request = parse_add_checkpoint(body)
    except InvalidInput as exc:
        # The one documented way a well-formed body is refused: a proof with "old 0".
        assert old == 0 and proof, exc
        return
    assert (request.old_size, list(request.proof), request.note) == (old, proof, note)


@FAST
@given(
    st.binary(max_size=400)
    | st.sampled_from([format_add_checkpoint(7, fx.consistency(7, 300), fx.checkpoint_note(300))])
    .flatmap(_mutations)
    .map(lambda m: m[1])
)
def test_check_submission_never_raises(body: bytes) -> None:
    checked = check_submission(body, {fx.ORIGIN: [fx.LOG_VERIFIER]})
    if isinstance(checked, Refused):
        assert checked.status in (400, 403, 404) and checked.message
    else:
        assert checked.checkpoint.root == fx.ROOTS[checked.checkpoint.size]


def test_signed_note_helpers_agree() -> None:
    # The fixtures' notes are what the targets' seeds are built from: they must verify.
    for name, note in fx.note_samples().items():
        text, signatures = split_note(note)
        assert text in fx.signed_texts() or name == "note-other-only", name
        assert signatures
    assert sign_note("x\n", [fx.LOG_SIGNER]).startswith("x\n\n— ")
