"""Helpers for the mirror-site tests: mirrored directories of real and foreign logs.

A mirror's directory is ``suyuan export``'s layout plus ``.mirror/vkey`` (what
``suyuan mirror`` keeps), so these tests make one by exporting a real ledger.
A *foreign* log is built here from ledger.merkle, ledger.tiles and ledger.note
alone: opaque leaves, its own key, nothing Suyuan would recognise as an entry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.log import Log
from ledger.merkle import EMPTY_ROOT, CompactRange, NodeId, leaf_hash
from ledger.note import Signer
from ledger.static import export
from ledger.tiles import (
    encode_entry_bundle,
    entry_bundles_for_size,
    tile_node_ids,
    tiles_for_size,
)

UPSTREAM = "https://origin.example/log"


def mirror_of(log: Log, directory: Path, *, upstream: str | None = UPSTREAM) -> Path:
    """Export ``log`` into ``directory`` and give it the state ``suyuan mirror`` keeps."""
    export(log, directory)
    state = directory / ".mirror"
    state.mkdir(exist_ok=True)
    (state / "vkey").write_text(log.verifier.vkey + "\n", encoding="utf-8")
    if upstream is not None:
        (state / "state.json").write_text(json.dumps({"url": upstream}), encoding="utf-8")
    return directory


@dataclass
class ForeignLog:
    """A tiny tlog-tiles log that is not a Suyuan ledger (leaves are arbitrary bytes)."""

    directory: Path
    signer: Signer
    leaves: list[bytes]

    @property
    def origin(self) -> str:
        return self.signer.name

    @property
    def vkey(self) -> str:
        return self.signer.verifier.vkey

    def grow(self, size: int) -> None:
        """Extend to ``size`` leaves and rewrite the tree's files (checkpoint last)."""
        self.leaves.extend(
            f"opaque record {i} \x00\xff".encode("latin-1") for i in range(len(self.leaves), size)
        )
        nodes: dict[NodeId, bytes] = {}
        rng = CompactRange.empty()
        for leaf in self.leaves:
            nodes.update(rng.append(leaf_hash(leaf)))
        for bundle in entry_bundles_for_size(size):
            first = bundle.index * 256
            self._write(
                bundle.path(), encode_entry_bundle(self.leaves[first : first + bundle.width])
            )
        for tile in tiles_for_size(size):
            self._write(tile.path(), b"".join(nodes[node] for node in tile_node_ids(tile)))
        root = rng.root() if size else EMPTY_ROOT
        note = sign_checkpoint(Checkpoint(self.origin, size, root), self.signer)
        self._write("checkpoint", note.encode("utf-8"))

    def _write(self, path: str, data: bytes) -> None:
        target = self.directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def foreign_log(directory: Path, size: int, origin: str = "example.org/foreign-log") -> ForeignLog:
    made = ForeignLog(directory, Signer(origin, Ed25519PrivateKey.generate()), [])
    made.grow(size)
    state = directory / ".mirror"
    state.mkdir(exist_ok=True)
    (state / "vkey").write_text(made.vkey + "\n", encoding="utf-8")
    return made
