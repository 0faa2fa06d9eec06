"""Shared helpers for the witness tests: an in-memory Merkle log and request bodies."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.cosignature import CosignatureSigner
from ledger.merkle import EMPTY_ROOT, CompactRange, NodeId, consistency_proof, leaf_hash
from ledger.note import Signer
from ledger.witness import format_add_checkpoint
from ledger.witness_store import WitnessStore

PASSPHRASE = b"witness-test-passphrase"
WITNESS_NAME = "witness.audit.example/w1"
LOG_ORIGIN = "log.example/suyuan"


class FixedClock:
    """A settable clock (POSIX seconds) for deterministic cosignature timestamps."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class MemoryLog:
    """A tiny RFC 9162 log in memory, signed by its own key, for the pure witness tests."""

    origin: str = LOG_ORIGIN
    signer: Signer = None  # type: ignore[assignment]  # made from the origin when not given
    leaves: list[bytes] = field(default_factory=list)
    nodes: dict[NodeId, bytes] = field(default_factory=dict)
    range: CompactRange = field(default_factory=CompactRange.empty)

    def __post_init__(self) -> None:
        if self.signer is None:
            self.signer = Signer(self.origin, Ed25519PrivateKey.generate())

    def append(self, count: int, prefix: str = "leaf") -> None:
        for _ in range(count):
            data = f"{prefix} {len(self.leaves)}".encode()
            self.leaves.append(data)
            for node, digest in self.range.append(leaf_hash(data)):
                self.nodes[node] = digest

    @property
    def size(self) -> int:
        return self.range.size

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        if size == 0:
            return EMPTY_ROOT
        rng = CompactRange.empty()
        for data in self.leaves[:size]:
            rng.append(leaf_hash(data))
        return rng.root()

    def read(self, ids: Sequence[NodeId]) -> list[bytes]:
        return [self.nodes[i] for i in ids]

    def proof(self, old: int, new: int | None = None) -> list[bytes]:
        new = self.size if new is None else new
        if old == 0 or old == new:
            return []
        return consistency_proof(old, new, self.read)

    def checkpoint(self, size: int | None = None, root: bytes | None = None) -> Checkpoint:
        size = self.size if size is None else size
        return Checkpoint(self.origin, size, self.root(size) if root is None else root)

    def note(self, size: int | None = None, root: bytes | None = None) -> str:
        return sign_checkpoint(self.checkpoint(size, root), self.signer)

    def body(
        self, old: int, size: int | None = None, proof: Sequence[bytes] | None = None
    ) -> bytes:
        size = self.size if size is None else size
        return format_add_checkpoint(
            old, self.proof(old, size) if proof is None else proof, self.note(size)
        )


def cosigner(clock: FixedClock | None = None, name: str = WITNESS_NAME) -> CosignatureSigner:
    return CosignatureSigner(name, Ed25519PrivateKey.generate(), clock or FixedClock())


def make_witness(
    directory: Path, clock: FixedClock | None = None
) -> tuple[WitnessStore, CosignatureSigner]:
    return WitnessStore.create(directory, WITNESS_NAME, PASSPHRASE, clock or FixedClock())


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
