"""Tests for ledger.merkle: published vectors, an RFC 9162 reference, properties."""

from __future__ import annotations

import base64
import functools
import hashlib
import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle
from ledger.errors import InvalidInput, StorageError, VerificationError
from ledger.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    CompactRange,
    NodeId,
    consistency_proof,
    fold,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_ids,
    subtree_ids,
    tree_root,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "vectors" / "merkle"


# --------------------------------------------------------------------------
# published known-answer vectors (transparency-dev/merkle testdata), read in place


def _vector_files(kind: str) -> list[Path]:
    files = sorted((VECTORS / kind).rglob("*.json"))
    # A missing directory must fail the run, not turn into an empty (skipped) parameter set.
    return files or [VECTORS / kind / "MISSING"]


def _b64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def _proof(value: list[str] | None) -> list[bytes]:
    return [] if value is None else [_b64(item) for item in value]


def _load(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_vectors_are_present() -> None:
    assert VECTORS.is_dir(), f"test vectors missing: {VECTORS}"
    assert len(list((VECTORS / "inclusion").rglob("*.json"))) >= 50
    assert len(list((VECTORS / "consistency").rglob("*.json"))) >= 50
    assert list((VECTORS / "consistency" / "additional").glob("*.json"))


@pytest.mark.parametrize("path", _vector_files("inclusion"), ids=lambda p: p.name)
def test_inclusion_vector(path: Path) -> None:
    v = _load(path)
    args = (_b64(v["leafHash"]), v["leafIdx"], v["treeSize"], _proof(v["proof"]), _b64(v["root"]))
    if v["wantErr"]:
        with pytest.raises(VerificationError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", _vector_files("consistency"), ids=lambda p: p.name)
def test_consistency_vector(path: Path) -> None:
    v = _load(path)
    args = (v["size1"], v["size2"], _proof(v["proof"]), _b64(v["root1"]), _b64(v["root2"]))
    if v["wantErr"]:
        with pytest.raises(VerificationError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


# --------------------------------------------------------------------------
# reference implementation, straight from RFC 9162 §2.1.1, §2.1.3.1, §2.1.4.1

MAX_N = 300
DATA = [b"suyuan entry %d" % i for i in range(2 * MAX_N + 2)]


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


@functools.cache
def ref_mth(lo: int, hi: int) -> bytes:
    """MTH(D[lo:hi])."""
    n = hi - lo
    if n == 0:
        return _sha256(b"")
    if n == 1:
        return _sha256(b"\x00" + DATA[lo])
    k = _k(n)
    return _sha256(b"\x01" + ref_mth(lo, lo + k) + ref_mth(lo + k, hi))


def ref_path(m: int, lo: int, hi: int) -> list[tuple[bytes, bool]]:
    """PATH(m, D[lo:hi]) with m relative to lo, as (hash, sibling-is-on-the-left)."""
    n = hi - lo
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*ref_path(m, lo, lo + k), (ref_mth(lo + k, hi), False)]
    return [*ref_path(m - k, lo + k, hi), (ref_mth(lo, lo + k), True)]


def ref_subproof(m: int, lo: int, hi: int, b: bool) -> list[tuple[bytes, str]]:
    """SUBPROOF(m, D[lo:hi], b), as (hash, role); role is seed/left (in both trees)/right."""
    n = hi - lo
    if m == n:
        return [] if b else [(ref_mth(lo, hi), "seed")]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, lo, lo + k, b), (ref_mth(lo + k, hi), "right")]
    return [*ref_subproof(m - k, lo + k, hi, False), (ref_mth(lo, lo + k), "left")]


def ref_inclusion(index: int, size: int) -> list[bytes]:
    return [h for h, _ in ref_path(index, 0, size)]


def ref_consistency(size1: int, size2: int) -> list[bytes]:
    return [h for h, _ in ref_subproof(size1, 0, size2, True)]


def inclusion_shape(index: int, size: int) -> tuple[bool, ...] | None:
    """What a verifier does with a proof for (index, size); None if no proof exists."""
    if not 0 <= index < size:
        return None
    return tuple(left for _, left in ref_path(index, 0, size))


def consistency_shape(size1: int, size2: int) -> tuple[str, ...] | None:
    if not 0 < size1 < size2:
        return None
    return tuple(role for _, role in ref_subproof(size1, 0, size2, True))


# Every perfect node of the largest tree, from the RFC definition.
STORE: dict[NodeId, bytes] = {
    (level, i): ref_mth(i << level, (i + 1) << level)
    for level in range(MAX_N.bit_length())
    for i in range(MAX_N >> level)
}


class Reader:
    """A HashReader over a node dict that records its calls and checks the ids."""

    def __init__(self, store: dict[NodeId, bytes], size: int) -> None:
        self.store = store
        self.size = size
        self.calls: list[list[NodeId]] = []

    def __call__(self, ids: Sequence[NodeId]) -> list[bytes]:
        ids = list(ids)
        self.calls.append(ids)
        for level, index in ids:
            assert level >= 0 and index >= 0
            assert (index + 1) << level <= self.size, f"{(level, index)} not in tree {self.size}"
        return [self.store[node] for node in ids]


def flip(h: bytes, bit: int = 0) -> bytes:
    return bytes([h[0] ^ (1 << bit)]) + h[1:]


# --------------------------------------------------------------------------
# hashing and shape


def test_hash_primitives() -> None:
    assert HASH_SIZE == 32
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    left, right = b"L" * 32, b"R" * 32
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert ref_mth(0, 0) == EMPTY_ROOT


def test_subtree_ids_examples() -> None:
    assert subtree_ids(0, 0) == []
    assert subtree_ids(5, 5) == []
    assert root_ids(1) == [(0, 0)]
    assert root_ids(7) == [(2, 0), (1, 2), (0, 6)]
    assert root_ids(8) == [(3, 0)]
    assert subtree_ids(3, 13) == [(0, 3), (2, 1), (2, 2), (0, 12)]
    assert subtree_ids(3, 11) == [(0, 3), (2, 1), (1, 4), (0, 10)]
    assert subtree_ids(1, 2) == [(0, 1)]


@settings(max_examples=200, deadline=None)
@given(st.integers(0, MAX_N), st.integers(0, MAX_N))
def test_subtree_ids_cover_range_with_maximal_pieces(a: int, b: int) -> None:
    start, end = min(a, b), max(a, b)
    ids = subtree_ids(start, end)
    pos = start
    for level, index in ids:
        assert index << level == pos  # contiguous and aligned
        pos += 1 << level
    assert pos == end
    for (l1, i1), (l2, i2) in itertools.pairwise(ids):
        assert not (l1 == l2 and i1 % 2 == 0 and i2 == i1 + 1), "two pieces could merge"
    # levels rise then fall
    levels = [level for level, _ in ids]
    top = levels.index(max(levels)) if levels else 0
    assert levels[:top] == sorted(levels[:top]) and levels[top:] == sorted(
        levels[top:], reverse=True
    )
    hashes = [STORE[node] for node in ids]
    acc = hashes[-1] if hashes else EMPTY_ROOT
    for h in reversed(hashes[:-1]):
        acc = _sha256(b"\x01" + h + acc)
    assert fold(hashes) == acc
    # fold is MTH(D[start:end]) when start is aligned to a power of two >= the length,
    # which holds for every range a root or an RFC proof uses.
    length = end - start
    if length == 0 or start % (1 << (length - 1).bit_length()) == 0:
        assert fold(hashes) == ref_mth(start, end)


def test_fold() -> None:
    assert fold([]) == EMPTY_ROOT
    assert fold([STORE[(0, 4)]]) == STORE[(0, 4)]
    with pytest.raises(InvalidInput, match="hashes\\[1\\]"):
        fold([STORE[(0, 0)], b"short"])


def test_tree_root_every_size() -> None:
    for size in range(MAX_N + 1):
        reader = Reader(STORE, size)
        assert tree_root(size, reader) == ref_mth(0, size)
        assert len(reader.calls) == (1 if size else 0)
        if size:
            assert reader.calls[0] == root_ids(size)


# --------------------------------------------------------------------------
# proofs against the reference, exhaustively for small trees


def test_small_trees_exhaustive() -> None:
    for size in range(1, 41):
        root = ref_mth(0, size)
        for index in range(size):
            proof = inclusion_proof(index, size, Reader(STORE, size))
            assert proof == ref_inclusion(index, size)
            verify_inclusion(STORE[(0, index)], index, size, proof, root)
        for size1 in range(1, size + 1):
            proof = consistency_proof(size1, size, Reader(STORE, size))
            assert proof == ref_consistency(size1, size)
            verify_consistency(size1, size, proof, ref_mth(0, size1), root)


@st.composite
def index_and_size(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, MAX_N))
    return draw(st.integers(0, size - 1)), size


@st.composite
def two_sizes(draw: st.DrawFn) -> tuple[int, int]:
    size2 = draw(st.integers(2, MAX_N))
    return draw(st.integers(1, size2 - 1)), size2


@settings(max_examples=150, deadline=None)
@given(index_and_size())
def test_inclusion_matches_reference_and_tampering_fails(case: tuple[int, int]) -> None:
    index, size = case
    reader = Reader(STORE, size)
    proof = inclusion_proof(index, size, reader)
    assert proof == ref_inclusion(index, size)
    assert len(reader.calls) == (1 if size > 1 else 0)
    leaf, root = STORE[(0, index)], ref_mth(0, size)
    verify_inclusion(leaf, index, size, proof, root)

    def fails(lh: bytes, i: int, n: int, p: list[bytes], r: bytes) -> None:
        with pytest.raises(VerificationError):
            verify_inclusion(lh, i, n, p, r)

    for pos in range(len(proof)):
        fails(leaf, index, size, [*proof[:pos], flip(proof[pos], pos % 8), *proof[pos + 1 :]], root)
        fails(leaf, index, size, proof[:pos] + proof[pos + 1 :], root)
    for pos in range(len(proof) + 1):
        fails(leaf, index, size, [*proof[:pos], STORE[(0, 0)], *proof[pos:]], root)
    fails(flip(leaf), index, size, proof, root)
    fails(leaf, index, size, proof, flip(root, 7))
    if size > 1:
        fails(leaf, index, size, proof, leaf)
    for other in {index ^ 1, index + 1, index - 1, index ^ 4, 0, size - 1, size, -1} - {index}:
        fails(leaf, other, size, proof, root)
    # A different size only verifies when the verifier would do exactly the same hashing.
    for other in {size + 1, size - 1, size * 2, size // 2, size ^ 1, size ^ 8, index, 0} - {size}:
        if other >= 0 and inclusion_shape(index, other) == inclusion_shape(index, size):
            verify_inclusion(leaf, index, other, proof, root)
        else:
            fails(leaf, index, other, proof, root)


@settings(max_examples=150, deadline=None)
@given(two_sizes())
def test_consistency_matches_reference_and_tampering_fails(case: tuple[int, int]) -> None:
    size1, size2 = case
    reader = Reader(STORE, size2)
    proof = consistency_proof(size1, size2, reader)
    assert proof == ref_consistency(size1, size2)
    assert len(reader.calls) == 1
    root1, root2 = ref_mth(0, size1), ref_mth(0, size2)
    verify_consistency(size1, size2, proof, root1, root2)

    def fails(m: int, n: int, p: list[bytes], r1: bytes, r2: bytes) -> None:
        with pytest.raises(VerificationError):
            verify_consistency(m, n, p, r1, r2)

    for pos in range(len(proof)):
        fails(
            size1, size2, [*proof[:pos], flip(proof[pos], pos % 8), *proof[pos + 1 :]], root1, root2
        )
        fails(size1, size2, proof[:pos] + proof[pos + 1 :], root1, root2)
    for pos in range(len(proof) + 1):
        fails(size1, size2, [*proof[:pos], STORE[(0, 0)], *proof[pos:]], root1, root2)
    fails(size1, size2, proof, flip(root1), root2)
    fails(size1, size2, proof, root1, flip(root2, 3))
    fails(size1, size2, proof, root2, root1)
    fails(size1, size2, [], root1, root2)
    variants = {size1 + 1, size1 - 1, size1 ^ 1, size1 * 2, size1 // 2, size2, 0, -1}
    for other in variants - {size1}:
        if consistency_shape(other, size2) == consistency_shape(size1, size2):
            verify_consistency(other, size2, proof, root1, root2)
        else:
            fails(other, size2, proof, root1, root2)
    variants = {size2 + 1, size2 - 1, size2 ^ 1, size2 * 2, size2 // 2, size1, 0}
    for other in variants - {size2}:
        if consistency_shape(size1, other) == consistency_shape(size1, size2):
            verify_consistency(size1, other, proof, root1, root2)
        else:
            fails(size1, other, proof, root1, root2)


def test_equal_sizes() -> None:
    for size in (1, 2, 7, 8, 300):
        root = ref_mth(0, size)
        reader = Reader(STORE, size)
        assert consistency_proof(size, size, reader) == []
        assert reader.calls == []
        verify_consistency(size, size, [], root, root)
        with pytest.raises(VerificationError):
            verify_consistency(size, size, [root], root, root)
        with pytest.raises(VerificationError):
            verify_consistency(size, size, [], root, flip(root))


def test_reader_is_called_once_with_few_ids() -> None:
    for size in (1, 2, 3, 255, 256, 257, 299, 300):
        bound = 2 * size.bit_length()
        for index in {0, 1 % size, size // 2, size - 2 if size > 1 else 0, size - 1}:
            reader = Reader(STORE, size)
            inclusion_proof(index, size, reader)
            assert len(reader.calls) <= 1
            assert sum(len(c) for c in reader.calls) <= bound
        for size1 in {1, size // 2 or 1, size - 1 or 1}:
            reader = Reader(STORE, size)
            consistency_proof(size1, size, reader)
            assert len(reader.calls) <= 1
            assert sum(len(c) for c in reader.calls) <= bound


# --------------------------------------------------------------------------
# CompactRange


def test_compact_range_appends_build_the_node_store() -> None:
    cr = CompactRange.empty()
    assert cr.size == 0 and cr.hashes == [] and cr.root() == EMPTY_ROOT
    nodes: dict[NodeId, bytes] = {}
    for i in range(MAX_N):
        created = cr.append(leaf_hash(DATA[i]))
        assert created[0] == ((0, i), leaf_hash(DATA[i]))
        assert [node[0] for node, _ in created] == list(range(len(created)))
        for node, h in created:
            assert node not in nodes
            nodes[node] = h
        assert cr.size == i + 1
        assert cr.root() == ref_mth(0, i + 1)
        assert cr.hashes == [STORE[node] for node in root_ids(i + 1)]
    assert nodes == STORE

    for size in range(1, MAX_N + 1):
        reader = Reader(nodes, size)
        assert tree_root(size, reader) == ref_mth(0, size)
        for index in {0, size // 3, size - 1}:
            assert inclusion_proof(index, size, reader) == ref_inclusion(index, size)
        for size1 in {1, size // 2 or 1, size}:
            assert consistency_proof(size1, size, reader) == ref_consistency(size1, size)


def test_compact_range_load_then_continue() -> None:
    for size in (0, 1, 5, 64, 255, 256):
        reader = Reader(STORE, size)
        cr = CompactRange.load(size, reader)
        assert len(reader.calls) == (1 if size else 0)
        assert cr.size == size and cr.root() == ref_mth(0, size)
        for i in range(size, size + 40):
            for node, h in cr.append(leaf_hash(DATA[i])):
                assert STORE[node] == h
        assert cr.root() == ref_mth(0, size + 40)


def test_compact_range_rejects_bad_input() -> None:
    with pytest.raises(InvalidInput, match="needs 2 hashes, found 1"):
        CompactRange(3, [STORE[(1, 0)]])
    with pytest.raises(InvalidInput, match="32-byte"):
        CompactRange(1, [b"x" * 31])
    with pytest.raises(InvalidInput):
        CompactRange(-1, [])
    cr = CompactRange(3, [STORE[(1, 0)], STORE[(0, 2)]])
    assert cr.root() == ref_mth(0, 3)
    with pytest.raises(InvalidInput, match="leaf hash"):
        cr.append(b"x" * 33)
    assert cr.size == 3 and cr.root() == ref_mth(0, 3)


# --------------------------------------------------------------------------
# bad arguments: InvalidInput / VerificationError / StorageError, never raw errors


def never_read(ids: Sequence[NodeId]) -> list[bytes]:
    raise AssertionError("the reader must not be called for invalid arguments")


@pytest.mark.parametrize(
    ("index", "size"),
    [(5, 5), (6, 5), (0, 0), (-1, 5), (0, -1), ("0", 5), (0, 5.0), (True, 5)],
)
def test_inclusion_proof_bad_arguments(index: Any, size: Any) -> None:
    with pytest.raises(InvalidInput, match="expected"):
        inclusion_proof(index, size, never_read)


@pytest.mark.parametrize(
    ("size1", "size2"), [(0, 5), (0, 0), (6, 5), (-1, 5), (1, -1), (None, 5), (1, "2")]
)
def test_consistency_proof_bad_arguments(size1: Any, size2: Any) -> None:
    with pytest.raises(InvalidInput, match="expected"):
        consistency_proof(size1, size2, never_read)


def test_shape_bad_arguments() -> None:
    for args in [(5, 3), (-1, 3), (0, -2), ("a", 3)]:
        with pytest.raises(InvalidInput):
            subtree_ids(*args)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        tree_root(-1, never_read)
    with pytest.raises(InvalidInput):
        root_ids(-3)


def test_verify_bad_arguments() -> None:
    leaf, root = STORE[(0, 0)], ref_mth(0, 2)
    good = [STORE[(0, 1)]]
    verify_inclusion(leaf, 0, 2, good, root)
    bad_inclusion: list[tuple[Any, ...]] = [
        (leaf, 2, 2, good, root),
        (leaf, -1, 2, good, root),
        (leaf, 0, -2, good, root),
        (leaf, "0", 2, good, root),
        (leaf, 0, None, good, root),
        (leaf[:31], 0, 2, good, root),
        ("x" * 32, 0, 2, good, root),
        (leaf, 0, 2, good, root + b"\x00"),
        (leaf, 0, 2, ["x" * 32], root),
        (leaf, 0, 2, [good[0][:16]], root),
        (leaf, 0, 2, [None], root),
        (leaf, 0, 2, None, root),
        (leaf, 0, 2, good[0], root),
    ]
    for args in bad_inclusion:
        with pytest.raises(VerificationError):
            verify_inclusion(*args)
    r1, r2 = ref_mth(0, 1), ref_mth(0, 2)
    verify_consistency(1, 2, good, r1, r2)
    bad_consistency: list[tuple[Any, ...]] = [
        (2, 1, good, r1, r2),
        (0, 2, good, r1, r2),
        (0, 0, [], EMPTY_ROOT, EMPTY_ROOT),
        (-1, 2, good, r1, r2),
        ("1", 2, good, r1, r2),
        (1, 2, good, r1[:5], r2),
        (1, 2, good, r1, None),
        (1, 2, [b""], r1, r2),
        (1, 2, ["x" * 32], r1, r2),
        (1, 1, [], "a", "a"),
        (1, 2, None, r1, r2),
        (1, 1, None, r1, r1),
        (1, 2, good[0], r1, r2),
    ]
    for args in bad_consistency:
        with pytest.raises(VerificationError):
            verify_consistency(*args)


def test_misbehaving_reader_raises_storage_error() -> None:
    def too_few(ids: Sequence[NodeId]) -> list[bytes]:
        return [STORE[node] for node in ids][:-1]

    def short_hash(ids: Sequence[NodeId]) -> list[bytes]:
        return [STORE[node][:20] for node in ids]

    for reader in (too_few, short_hash):
        with pytest.raises(StorageError, match="hash reader"):
            tree_root(7, reader)
        with pytest.raises(StorageError, match="hash reader"):
            inclusion_proof(3, 7, reader)
        with pytest.raises(StorageError, match="hash reader"):
            consistency_proof(3, 7, reader)
        with pytest.raises(StorageError, match="hash reader"):
            CompactRange.load(7, reader)


def test_public_surface() -> None:
    assert set(merkle.__all__) >= {
        "CompactRange",
        "consistency_proof",
        "inclusion_proof",
        "tree_root",
        "verify_consistency",
        "verify_inclusion",
    }
