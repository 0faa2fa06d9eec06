"""RFC 9162 proof verification (``ledger.merkle.verify_inclusion`` / ``verify_consistency``)
with attacker-chosen proof bytes, sizes and indexes.

Input layout (see :func:`encode`): one mode byte (even: inclusion, odd:
consistency); two integers, each a length byte ``L`` and then ``L`` big-endian
bytes (``8 * L`` bytes when ``L > 16``, so integers beyond Python's 4300-digit
conversion limit occur); then the proof, cut into 32-byte
items (a short last item is kept, so wrong-sized items occur).  Leaf and roots
are the fixed tree's where the sizes are within it (else fixed non-tree hashes).

Invariants: only VerificationError, never IndexError/ValueError, and fast for
any size; an accepted proof is for a real tree size and equals the proof the
log builds (no other proof can reach the root without a hash collision).
"""

from __future__ import annotations

import hashlib

from ledger.errors import VerificationError
from ledger.merkle import verify_consistency, verify_inclusion
from tests.fuzz import fixtures

_FAKE = hashlib.sha256(b"not a root of the fixed tree").digest()


def encode(mode: int, a: int, b: int, proof: list[bytes]) -> bytes:
    """The input that :func:`one` decodes back to (mode, a, b, proof)."""

    def num(n: int) -> bytes:
        size = (n.bit_length() + 7) // 8
        if size > 16:
            size = -(-size // 8) * 8
        raw = n.to_bytes(size, "big")
        return bytes([size if size <= 16 else size // 8]) + raw

    return bytes([mode]) + num(a) + num(b) + b"".join(proof)


def _decode(data: bytes) -> tuple[int, int, int, list[bytes]]:
    mode, pos = (data[0] if data else 0), 1
    nums = []
    for _ in range(2):
        length = data[pos] if pos < len(data) else 0
        length = length if length <= 16 else 8 * length  # up to 2040 bytes: > 4300 digits
        nums.append(int.from_bytes(data[pos + 1 : pos + 1 + length], "big"))
        pos += 1 + length
    rest = data[pos:]
    proof = [rest[i : i + 32] for i in range(0, len(rest), 32)]
    return mode, nums[0], nums[1], proof


def _root(size: int) -> bytes:
    return fixtures.ROOTS[size] if size <= fixtures.TREE_SIZE else _FAKE


def one(data: bytes) -> None:
    mode, a, b, proof = _decode(data)
    if mode % 2 == 0:
        index, size = a, b
        leaf = fixtures.LEAF_HASHES[index] if index < fixtures.TREE_SIZE else _FAKE
        try:
            verify_inclusion(leaf, index, size, proof, _root(size))
        except VerificationError as exc:
            fixtures.check_refusal(exc)
            return
        assert index < size <= fixtures.TREE_SIZE
        assert proof == fixtures.inclusion(index, size), "a second inclusion proof verified"
    else:
        size1, size2 = a, b
        try:
            verify_consistency(size1, size2, proof, _root(size1), _root(size2))
        except VerificationError as exc:
            fixtures.check_refusal(exc)
            return
        assert 1 <= size1 <= size2
        if size2 > fixtures.TREE_SIZE:
            assert size1 == size2 and not proof  # equal sizes compare the roots only
        else:
            assert proof == fixtures.consistency(size1, size2), "a second proof verified"
