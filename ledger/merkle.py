"""RFC 9162 (= RFC 6962) Merkle tree hashing and proofs over SHA-256.

This is the arithmetic of the Suyuan log: leaf and node hashing, the naming of
perfect subtrees (:data:`NodeId`), tree roots, inclusion and consistency proofs
(built and verified exactly as RFC 9162 §2.1.3 and §2.1.4 define them), and the
:class:`CompactRange` used to append leaves without re-reading the log.

Everything here is pure: no I/O, no clock.  Storage is reached only through a
:data:`HashReader`, which the proof builders call once with the complete list of
perfect nodes they need (a single batched read), so a proof costs one round
trip and ``O(log n)`` hashes, never a rehash of the log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import TypeGuard

from ledger.errors import InvalidInput, StorageError, VerificationError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_SIZE",
    "CompactRange",
    "HashReader",
    "NodeId",
    "consistency_proof",
    "fold",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_ids",
    "subtree_ids",
    "tree_root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Size in bytes of every hash in the tree (SHA-256)."""

EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()
"""MTH of the empty tree: SHA-256 of the empty string."""

NodeId = tuple[int, int]
"""``(level, index)``: the perfect subtree of ``2**level`` leaves covering
leaves ``[index * 2**level, (index + 1) * 2**level)``.  Level 0 is a leaf hash."""

HashReader = Callable[[Sequence[NodeId]], Sequence[bytes]]
"""The storage edge: given perfect node ids, return their hashes in the same
order.  Callers here invoke it once per operation with every id they need."""

# Pre-seeded hash states: copying one is cheaper than concatenating the prefix.
_LEAF_PREFIX = hashlib.sha256(b"\x00")
_NODE_PREFIX = hashlib.sha256(b"\x01")


def leaf_hash(leaf: bytes) -> bytes:
    """Return the RFC 9162 leaf hash ``SHA-256(0x00 || leaf)``."""
    h = _LEAF_PREFIX.copy()
    h.update(leaf)
    return h.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 9162 interior node hash ``SHA-256(0x01 || left || right)``.

    The caller MUST pass 32-byte hashes; this hot-path function does not check.
    """
    h = _NODE_PREFIX.copy()
    h.update(left)
    h.update(right)
    return h.digest()


# --------------------------------------------------------------------------
# argument checks


MAX_SIZE = (1 << 64) - 1
"""Largest tree size or leaf index accepted: RFC 9162 sizes are uint64."""


def _int_text(value: int) -> str:
    """``value`` for a message; huge ints would hit Python's int-to-str digit limit."""
    return str(value) if value.bit_length() <= 128 else f"a {value.bit_length()}-bit integer"


def _require_int(name: str, value: object, minimum: int = 0) -> int:
    """Return ``value`` if it is an int in ``minimum``..2**64-1; raise InvalidInput otherwise."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput(f"{name}: expected an integer, found {type(value).__name__}")
    if value < minimum:
        raise InvalidInput(f"{name}: expected an integer >= {minimum}, found {_int_text(value)}")
    if value > MAX_SIZE:
        raise InvalidInput(f"{name}: expected an integer <= 2**64-1, found {_int_text(value)}")
    return value


def _is_hash(value: object) -> TypeGuard[bytes | bytearray]:
    return isinstance(value, (bytes, bytearray)) and len(value) == HASH_SIZE


def _describe(value: object) -> str:
    if isinstance(value, (bytes, bytearray)):
        return f"{len(value)} bytes"
    return type(value).__name__


def _verify_int(name: str, value: object) -> int:
    """Like :func:`_require_int` with minimum 0, but raising VerificationError.

    Sizes above 2**64-1 are refused here, before any message prints them.
    """
    if not isinstance(value, int) or isinstance(value, bool):
        raise VerificationError(f"{name}: expected an integer, found {type(value).__name__}")
    if value < 0:
        raise VerificationError(
            f"{name}: expected a non-negative integer, found {_int_text(value)}"
        )
    if value > MAX_SIZE:
        raise VerificationError(f"{name}: expected at most 2**64-1, found {_int_text(value)}")
    return value


def _verify_hash(name: str, value: object) -> bytes:
    if not _is_hash(value):
        raise VerificationError(
            f"{name}: expected a {HASH_SIZE}-byte hash, found {_describe(value)}"
        )
    return bytes(value)


def _verify_proof(proof: object) -> Sequence[object]:
    """Return ``proof`` if it is a list-like sequence; raise VerificationError otherwise."""
    if not isinstance(proof, Sequence) or isinstance(proof, (str, bytes, bytearray)):
        raise VerificationError(f"proof: expected a sequence of hashes, found {_describe(proof)}")
    return proof


# --------------------------------------------------------------------------
# tree shape


def subtree_ids(start: int, end: int) -> list[NodeId]:
    """Decompose leaf range ``[start, end)`` into maximal perfect aligned subtrees.

    Returns the ids left to right (the "compact range"); levels rise then fall.
    ``start == end`` gives ``[]``.  Raises InvalidInput unless
    ``0 <= start <= end``.
    """
    _require_int("start", start)
    _require_int("end", end)
    if start > end:
        raise InvalidInput(f"range: expected start <= end, found start={start} > end={end}")
    ids: list[NodeId] = []
    while start < end:
        # Largest level that both fits in what remains and keeps `start` aligned.
        level = (end - start).bit_length() - 1
        if start:
            level = min(level, (start & -start).bit_length() - 1)
        ids.append((level, start >> level))
        start += 1 << level
    return ids


def root_ids(size: int) -> list[NodeId]:
    """Return the perfect subtrees whose fold is the root of a tree of ``size`` leaves.

    Equal to ``subtree_ids(0, size)``: one id per set bit of ``size``, largest first.
    """
    return subtree_ids(0, size)


def _fold(hashes: Sequence[bytes]) -> bytes:
    """Fold perfect pieces (left to right, non-empty, unchecked) into one hash."""
    acc = hashes[-1]
    for i in range(len(hashes) - 2, -1, -1):
        acc = node_hash(hashes[i], acc)
    return acc


def fold(hashes: Sequence[bytes]) -> bytes:
    """Return the hash of a leaf range given the hashes of its perfect pieces.

    ``hashes`` MUST be the hashes of ``subtree_ids(start, end)`` in order.  The
    fold runs from the right: ``acc = node_hash(hashes[i], acc)``.  The result
    is MTH(D[start:end]) whenever ``start`` is a multiple of the smallest power
    of two >= ``end - start``; that holds for every tree root (``start == 0``)
    and every subtree an RFC 9162 proof uses.  For other ranges it is only the
    compact-range hash, not an MTH.  An empty sequence gives :data:`EMPTY_ROOT`
    (the MTH of no leaves).  Raises InvalidInput if an item is not a 32-byte
    hash.
    """
    for i, h in enumerate(hashes):
        if not _is_hash(h):
            raise InvalidInput(
                f"hashes[{i}]: expected a {HASH_SIZE}-byte hash, found {_describe(h)}"
            )
    if not hashes:
        return EMPTY_ROOT
    return _fold(hashes)


def _read(read: HashReader, ids: list[NodeId]) -> Sequence[bytes]:
    """Call ``read`` once for ``ids`` and check what it returned.

    Raises StorageError if the reader returns the wrong number of hashes or a
    hash that is not 32 bytes: the store is inconsistent, not the caller's input.
    """
    if not ids:
        return []
    hashes = read(ids)
    if len(hashes) != len(ids):
        raise StorageError(
            f"hash reader: expected {len(ids)} hashes for {len(ids)} node ids, found {len(hashes)}"
        )
    for node, h in zip(ids, hashes, strict=True):
        if not _is_hash(h):
            raise StorageError(
                f"hash reader: node {node}: expected a {HASH_SIZE}-byte hash, found {_describe(h)}"
            )
    return hashes


def _read_ranges(read: HashReader, ranges: list[tuple[int, int]]) -> list[bytes]:
    """Return MTH of each leaf range, fetching all perfect pieces in one read."""
    groups = [subtree_ids(lo, hi) for lo, hi in ranges]
    hashes = _read(read, [node for group in groups for node in group])
    out: list[bytes] = []
    pos = 0
    for group in groups:
        n = len(group)
        out.append(bytes(hashes[pos]) if n == 1 else _fold(hashes[pos : pos + n]))
        pos += n
    return out


def tree_root(size: int, read: HashReader) -> bytes:
    """Return MTH of the first ``size`` leaves (:data:`EMPTY_ROOT` for 0).

    Makes one read of ``root_ids(size)`` (none for size 0).  Raises InvalidInput
    for a negative size, StorageError if the reader misbehaves.
    """
    _require_int("size", size)
    if size == 0:
        return EMPTY_ROOT
    return _fold(_read(read, root_ids(size)))


# --------------------------------------------------------------------------
# proofs


def _largest_power_below(n: int) -> int:
    """Largest power of two strictly less than ``n`` (``n >= 2``): RFC 9162's k."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_proof(index: int, size: int, read: HashReader) -> list[bytes]:
    """Return the RFC 9162 §2.1.3.1 inclusion proof PATH(index, D[0:size]).

    The proof lists sibling hashes from the leaf up.  It MUST verify with any
    RFC 9162 verifier.  Makes one batched read of ``O(log size)`` perfect nodes.
    Raises InvalidInput unless ``0 <= index < size``.
    """
    _require_int("index", index)
    _require_int("size", size)
    if index >= size:
        raise InvalidInput(
            f"inclusion proof: expected index < size, found index={index}, size={size}"
        )
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        mid = lo + _largest_power_below(hi - lo)
        if index < mid:
            ranges.append((mid, hi))
            hi = mid
        else:
            ranges.append((lo, mid))
            lo = mid
    ranges.reverse()
    return _read_ranges(read, ranges)


def consistency_proof(size1: int, size2: int, read: HashReader) -> list[bytes]:
    """Return the RFC 9162 §2.1.4.1 consistency proof PROOF(size1, D[0:size2]).

    Equal sizes give ``[]``.  It MUST verify with any RFC 9162 verifier.  Makes
    one batched read of ``O(log size2)`` perfect nodes.  Raises InvalidInput
    unless ``1 <= size1 <= size2`` (a proof from the empty tree is not defined).
    """
    _require_int("size1", size1, minimum=1)
    _require_int("size2", size2)
    if size1 > size2:
        raise InvalidInput(
            f"consistency proof: expected size1 <= size2, found size1={size1}, size2={size2}"
        )
    # SUBPROOF(m, D[lo:hi], b), unrolled; m is always size1 - lo.
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size2
    complete = True  # RFC's b: the subtree is a complete subtree of the old tree
    while size1 - lo != hi - lo:
        mid = lo + _largest_power_below(hi - lo)
        if size1 <= mid:
            ranges.append((mid, hi))
            hi = mid
        else:
            ranges.append((lo, mid))
            lo = mid
            complete = False
    if not complete:
        ranges.append((lo, hi))
    ranges.reverse()
    return _read_ranges(read, ranges)


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` with ``root``.

    Implements RFC 9162 §2.1.3.2.  Returns None on success; raises
    VerificationError on any failure: index not below size, either above
    2**64-1 (RFC 9162 sizes are uint64), a hash (leaf, root
    or proof item) that is not 32 bytes, a proof of the wrong length, or a
    computed root that differs.  It MUST NOT raise anything else.
    """
    index = _verify_int("index", index)
    size = _verify_int("size", size)
    if index >= size:
        raise VerificationError(
            f"inclusion: expected index < size, found index={index}, size={size}"
        )
    r = _verify_hash("leaf hash", leaf_hash)
    root = _verify_hash("root", root)
    _verify_proof(proof)
    fn, sn = index, size - 1
    for i, p in enumerate(proof):
        if not _is_hash(p):
            raise VerificationError(
                f"inclusion: proof[{i}]: expected a {HASH_SIZE}-byte hash, found {_describe(p)}"
            )
        if sn == 0:
            raise VerificationError(
                f"inclusion: proof too long: expected {i} hashes, found {len(proof)}"
            )
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError(
            f"inclusion: proof too short for index {index} in size {size}: "
            f"found {len(proof)} hashes"
        )
    if r != root:
        raise VerificationError(
            f"inclusion: computed root {r.hex()} does not match expected root {root.hex()}"
        )


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree (size1, root1) is a prefix of the tree (size2, root2).

    Implements RFC 9162 §2.1.4.2.  Returns None on success; raises
    VerificationError on any failure.  Rules beyond the RFC text:

    - sizes MUST be at most 2**64-1 (RFC 9162 sizes are uint64).
    - ``size1`` MUST be >= 1: consistency from the empty tree is refused (the
      C2SP witness rule for an old size of 0 is the caller's business).
    - ``size1 == size2`` needs an empty proof and ``root1 == root2`` (compared
      as bytes; their length is not checked in this case).
    - otherwise both roots and every proof item MUST be 32-byte hashes.

    It MUST NOT raise anything but VerificationError.
    """
    size1 = _verify_int("size1", size1)
    size2 = _verify_int("size2", size2)
    if size1 > size2:
        raise VerificationError(
            f"consistency: expected size1 <= size2, found size1={size1}, size2={size2}"
        )
    if size1 == 0:
        raise VerificationError(f"consistency: expected size1 >= 1, found size1=0 (size2={size2})")
    _verify_proof(proof)
    if size1 == size2:
        if len(proof) != 0:
            raise VerificationError(
                f"consistency: sizes are equal ({size1}), expected an empty proof, "
                f"found {len(proof)} hashes"
            )
        if not isinstance(root1, (bytes, bytearray)) or not isinstance(root2, (bytes, bytearray)):
            raise VerificationError(
                f"consistency: expected byte roots, found {_describe(root1)} and {_describe(root2)}"
            )
        if root1 != root2:
            raise VerificationError(f"consistency: sizes are equal ({size1}) but the roots differ")
        return
    root1 = _verify_hash("root1", root1)
    root2 = _verify_hash("root2", root2)
    if len(proof) == 0:
        raise VerificationError(
            f"consistency: expected a non-empty proof from size {size1} to {size2}, found none"
        )
    for i, p in enumerate(proof):
        if not _is_hash(p):
            raise VerificationError(
                f"consistency: proof[{i}]: expected a {HASH_SIZE}-byte hash, found {_describe(p)}"
            )

    fn, sn = size1 - 1, size2 - 1
    if size1 & (size1 - 1) == 0:
        # size1 is a power of two: root1 is the implicit first proof item.
        fr = sr = root1
        rest = 0
    else:
        fr = sr = bytes(proof[0])
        rest = 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    for i in range(rest, len(proof)):
        c = proof[i]
        if sn == 0:
            raise VerificationError(
                f"consistency: proof too long: expected {i} hashes, found {len(proof)}"
            )
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError(
            f"consistency: proof too short from size {size1} to {size2}: found {len(proof)} hashes"
        )
    if fr != root1:
        raise VerificationError(
            f"consistency: computed old root {fr.hex()} does not match root1 {root1.hex()}"
        )
    if sr != root2:
        raise VerificationError(
            f"consistency: computed new root {sr.hex()} does not match root2 {root2.hex()}"
        )


# --------------------------------------------------------------------------
# integration


class CompactRange:
    """The right edge of a tree: the hashes of ``root_ids(size)``, left to right.

    Used to integrate new leaves without re-reading the log.  Appending every
    leaf one by one and storing every node that :meth:`append` returns yields
    exactly the perfect nodes that :func:`tree_root` and the proof builders
    read.  Not thread-safe: one writer at a time.
    """

    __slots__ = ("hashes", "size")

    size: int
    hashes: list[bytes]

    def __init__(self, size: int, hashes: Sequence[bytes]) -> None:
        """Build from a size and the hashes of ``root_ids(size)``.

        Raises InvalidInput if ``size`` is negative, ``len(hashes)`` is not
        the number of set bits of ``size``, or a hash is not 32 bytes.
        """
        _require_int("size", size)
        if len(hashes) != size.bit_count():
            raise InvalidInput(
                f"compact range: size {size} needs {size.bit_count()} hashes, found {len(hashes)}"
            )
        for i, h in enumerate(hashes):
            if not _is_hash(h):
                raise InvalidInput(
                    f"compact range: hashes[{i}]: expected a {HASH_SIZE}-byte hash, "
                    f"found {_describe(h)}"
                )
        self.size = size
        self.hashes = [bytes(h) for h in hashes]

    @classmethod
    def empty(cls) -> CompactRange:
        """Return the compact range of the empty tree."""
        return cls(0, [])

    @classmethod
    def load(cls, size: int, read: HashReader) -> CompactRange:
        """Load the right edge of a tree of ``size`` leaves with one read of ``root_ids(size)``."""
        _require_int("size", size)
        return cls(size, _read(read, root_ids(size)))

    def append(self, leaf_hash: bytes) -> list[tuple[NodeId, bytes]]:
        """Append one leaf hash; return every perfect node this creates.

        The list starts with the leaf ``((0, old_size), leaf_hash)`` and goes on
        with each parent completed by it, upward.  The caller MUST store them
        all.  Raises InvalidInput if ``leaf_hash`` is not 32 bytes (the range is
        left unchanged).
        """
        if not _is_hash(leaf_hash):
            raise InvalidInput(
                f"leaf hash: expected a {HASH_SIZE}-byte hash, found {_describe(leaf_hash)}"
            )
        h = bytes(leaf_hash)
        index = self.size
        created: list[tuple[NodeId, bytes]] = [((0, index), h)]
        level = 0
        while index & 1:
            h = node_hash(self.hashes.pop(), h)
            level += 1
            index >>= 1
            created.append(((level, index), h))
        self.hashes.append(h)
        self.size += 1
        return created

    def root(self) -> bytes:
        """Return the root of the tree of ``size`` leaves (:data:`EMPTY_ROOT` if empty)."""
        return _fold(self.hashes) if self.hashes else EMPTY_ROOT

    def __repr__(self) -> str:
        return f"CompactRange(size={self.size}, hashes=<{len(self.hashes)}>)"
