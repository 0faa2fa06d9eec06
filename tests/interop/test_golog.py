"""Suyuan and Go's golang.org/x/mod sumdb/tlog + sumdb/note read each other's logs.

One direction: a C2SP tlog-tiles log written by Go (``tests/interop/golog``)
is read with Suyuan's pure pieces: its vkey with ``ledger.note``, its
checkpoints with ``ledger.checkpoint``, its tiles and entry bundles with
``ledger.tiles``, and Go's RFC 9162 proofs with ``ledger.merkle`` (and
Suyuan's own proofs, computed from Go's tiles, must be the same hashes).
The entries are arbitrary byte strings, not Suyuan entries, so
``ledger.remote.audit_remote`` does not apply.

Other direction: Go verifies a ``suyuan export`` of a real ledger through its
tiles alone, and refuses tampered copies.

The Go log is built once per module, published at sizes chosen for the tile
edges: 1, 5, 6 (entry 5 is empty), 255, 256, 257, 511, 65,535, 65,536 (a full
level-1 tile), 65,537 and 70,000.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.checkpoint import Checkpoint, sign_checkpoint, verify_checkpoint
from ledger.errors import VerificationError
from ledger.merkle import (
    EMPTY_ROOT,
    NodeId,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    tree_root,
    verify_consistency,
    verify_inclusion,
)
from ledger.note import Signer, format_skey, parse_skey, parse_vkey
from ledger.static import export
from ledger.tiles import (
    EntryBundle,
    Tile,
    TileHashReader,
    decode_entry_bundle,
    entry_bundles_for_size,
    parse_tile_path,
    split_tile,
    tiles_for_size,
)
from tests.helpers import Ledger, check_ledger, make_ledger
from tests.interop.golog import (
    GoLog,
    build_go_log,
    go_entry,
    go_verify,
    golog_binary,
    require_go,
)

SIZES = [1, 5, 6, 255, 256, 257, 511, 65_535, 65_536, 65_537, 70_000]
LAST = SIZES[-1]
EMPTY_ENTRY = 5  # go_entry(5) == b""


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def golog(tmp_path_factory: pytest.TempPathFactory) -> GoLog:
    require_go()
    return build_go_log(tmp_path_factory.mktemp("golog") / "log", SIZES)


class Levels:
    """Every perfect node of the tree of ``go_entry(0..n)``, computed by Suyuan from scratch."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.rows = [[leaf_hash(leaf) for leaf in leaves]]
        while len(self.rows[-1]) > 1:
            row = self.rows[-1]
            self.rows.append([node_hash(row[i], row[i + 1]) for i in range(0, len(row) - 1, 2)])

    def __call__(self, ids: Sequence[NodeId]) -> list[bytes]:
        return [self.rows[level][index] for level, index in ids]

    def root(self, size: int) -> bytes:
        return tree_root(size, self)


@pytest.fixture(scope="module")
def levels() -> Levels:
    return Levels([go_entry(i) for i in range(LAST)])


def go_tiles(golog: GoLog, size: int) -> TileHashReader:
    """Suyuan's tile reader over the tiles Go wrote, for the tree of ``size``."""
    return TileHashReader(lambda tile: (golog.directory / tile.path()).read_bytes(), size)


def checkpoint_of(golog: GoLog, size: int) -> Checkpoint:
    cp, _ = verify_checkpoint(golog.checkpoint_note(size), parse_vkey(golog.vkey), golog.origin)
    return cp


def files_under(directory: Path) -> set[str]:
    return {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}


# --- keys and checkpoints -------------------------------------------------------------------


def test_go_keys_are_suyuan_note_keys(golog: GoLog) -> None:
    verifier = parse_vkey(golog.vkey)
    assert verifier.name == golog.origin
    assert verifier.vkey == golog.vkey  # same key hash, same encoding
    signer = parse_skey(golog.skey)
    assert signer.verifier == verifier
    assert format_skey(signer) == golog.skey


def test_every_go_checkpoint_verifies_with_suyuan(golog: GoLog, levels: Levels) -> None:
    verifier = parse_vkey(golog.vkey)
    signer = parse_skey(golog.skey)
    assert sorted(golog.checkpoints) == SIZES
    for size, note in golog.checkpoints.items():
        cp, opened = verify_checkpoint(note, verifier, golog.origin)
        assert (cp.origin, cp.size, cp.extensions) == (golog.origin, size, ())
        assert cp.root == levels.root(size), f"size {size}"
        assert opened.unverified == ()
        # Ed25519 is deterministic: Suyuan signing the same checkpoint gives Go's bytes.
        assert sign_checkpoint(cp, signer) == note
    assert (golog.directory / "checkpoint").read_text() == golog.checkpoints[LAST]


def test_go_checkpoint_of_an_unpublished_size(golog: GoLog, levels: Levels) -> None:
    cp = checkpoint_of(golog, 1_000)
    assert (cp.size, cp.root) == (1_000, levels.root(1_000))


def test_tampered_go_checkpoints_are_refused(golog: GoLog) -> None:
    note = golog.checkpoints[257]
    verifier = parse_vkey(golog.vkey)
    with pytest.raises(VerificationError):
        verify_checkpoint(note.replace("\n257\n", "\n258\n"), verifier)
    impostor = Signer(golog.origin, Ed25519PrivateKey.generate())  # same name, other key
    cp = checkpoint_of(golog, 257)
    with pytest.raises(VerificationError):
        verify_checkpoint(sign_checkpoint(cp, impostor), verifier)
    with pytest.raises(VerificationError, match="origin"):
        verify_checkpoint(note, verifier, origin="another.example/log")


def test_empty_go_log(tmp_path: Path) -> None:
    require_go()
    empty = build_go_log(tmp_path / "empty", [0])
    cp, _ = verify_checkpoint(empty.checkpoint_note(0), parse_vkey(empty.vkey))
    assert (cp.size, cp.root) == (0, EMPTY_ROOT)
    assert files_under(empty.directory) == {"checkpoint"}
    assert go_verify(empty.directory, empty.vkey).stdout == "OK 0 entries\n"


# --- tiles and entry bundles ----------------------------------------------------------------


def test_go_tiles_are_the_c2sp_tiles(golog: GoLog, levels: Levels) -> None:
    """Every tile Go wrote is where C2SP puts it, and holds the hashes Suyuan computes."""
    expected = {t for size in SIZES for t in tiles_for_size(size)}
    found: set[Tile] = set()
    for path in files_under(golog.directory / "tile"):
        if path.startswith("entries/"):
            continue
        tile = parse_tile_path(f"tile/{path}")
        assert isinstance(tile, Tile), path
        found.add(tile)
        hashes = split_tile((golog.directory / "tile" / path).read_bytes(), tile)
        first = tile.index * 256
        assert hashes == levels.rows[8 * tile.level][first : first + tile.width], path
    assert found == expected


def test_go_entry_bundles_are_the_c2sp_bundles(golog: GoLog) -> None:
    expected = {b for size in SIZES for b in entry_bundles_for_size(size)}
    found: set[EntryBundle] = set()
    for path in files_under(golog.directory / "tile" / "entries"):
        bundle = parse_tile_path(f"tile/entries/{path}")
        assert isinstance(bundle, EntryBundle), path
        found.add(bundle)
    assert found == expected
    assert (golog.directory / "tile/entries/000.p/5").read_bytes() == b"".join(
        len(go_entry(i)).to_bytes(2, "big") + go_entry(i) for i in range(5)
    )
    with_empty = (golog.directory / "tile/entries/000.p/6").read_bytes()
    assert with_empty.endswith(b"\x00\x00")  # C2SP: an empty entry is a zero length prefix


def _bundles(golog: GoLog, *, with_empty: bool) -> list[EntryBundle]:
    bundles = {b for size in SIZES for b in entry_bundles_for_size(size)}
    return sorted(
        (b for b in bundles if (b.index == 0 and b.width > EMPTY_ENTRY) == with_empty),
        key=lambda b: (b.index, b.width),
    )


def _check_bundles(golog: GoLog, bundles: list[EntryBundle]) -> None:
    for bundle in bundles:
        first = bundle.index * 256
        data = (golog.directory / bundle.path()).read_bytes()
        entries = decode_entry_bundle(data, bundle.width)
        assert entries == [go_entry(first + i) for i in range(bundle.width)], bundle.path()
        tile = Tile(0, bundle.index, bundle.width)
        hashes = split_tile((golog.directory / tile.path()).read_bytes(), tile)
        assert [leaf_hash(e) for e in entries] == hashes, bundle.path()


def test_go_entry_bundles_match_the_level_0_tiles(golog: GoLog) -> None:
    bundles = _bundles(golog, with_empty=False)
    assert len(bundles) > 270
    _check_bundles(golog, bundles)


def test_go_entry_bundles_with_an_empty_entry_decode(golog: GoLog) -> None:
    bundles = _bundles(golog, with_empty=True)
    assert [(b.index, b.width) for b in bundles] == [(0, 6), (0, 255), (0, 256)]
    _check_bundles(golog, bundles)


def test_growing_keeps_full_tiles_and_adds_partial_ones(tmp_path: Path) -> None:
    require_go()
    log = build_go_log(tmp_path / "log", [300])
    before = {p: (log.directory / p).read_bytes() for p in files_under(log.directory)}
    assert {"tile/0/000", "tile/0/001.p/44", "tile/1/000.p/1", "tile/entries/001.p/44"} <= set(
        before
    )
    log.grow(600)
    after = {p: (log.directory / p).read_bytes() for p in files_under(log.directory)}
    for path, data in before.items():
        if path != "checkpoint":
            assert after[path] == data, f"{path} changed"  # full ones and old partial ones
    assert set(after) - set(before) == {
        "tile/0/001",
        "tile/0/002.p/88",
        "tile/1/000.p/2",
        "tile/entries/001",
        "tile/entries/002.p/88",
    }
    old = checkpoint_of(log, 300)
    new = checkpoint_of(log, 600)
    verify_consistency(300, 600, log.consistency_proof(300, 600), old.root, new.root)
    refused = subprocess.run(
        [str(golog_binary()), "build", "-dir", str(log.directory), "-skey", log.skey, "-size", "5"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 1
    assert "cannot shrink it to 5" in refused.stderr
    assert checkpoint_of(log, 600).size == 600


# --- proofs ---------------------------------------------------------------------------------

# (old, new): new is a published size, so its partial tiles exist for Suyuan's tile reader.
CONSISTENCY = [
    (1, 1),
    (1, 5),
    (5, 6),
    (1, 256),
    (6, 255),
    (255, 256),
    (256, 257),
    (255, 257),
    (6, 511),
    (257, 511),
    (1, 65_536),
    (256, 65_536),
    (65_535, 65_536),
    (65_535, 65_537),
    (65_536, 65_537),
    (257, 70_000),
    (65_536, 70_000),
    (69_999, 70_000),
]


def test_go_consistency_proofs_are_suyuans(golog: GoLog, levels: Levels) -> None:
    for old, new in CONSISTENCY:
        proof = golog.consistency_proof(old, new)
        assert proof == consistency_proof(old, new, go_tiles(golog, new)), (old, new)
        old_root = levels.root(old)
        new_root = checkpoint_of(golog, new).root
        verify_consistency(old, new, proof, old_root, new_root)
        if proof:
            bad = [*proof[:-1], bytes([proof[-1][0] ^ 1]) + proof[-1][1:]]
            with pytest.raises(VerificationError):
                verify_consistency(old, new, bad, old_root, new_root)


def test_go_consistency_proofs_between_unpublished_sizes(golog: GoLog, levels: Levels) -> None:
    for old, new in [(1_000, 4_097), (3, 65_000), (4_096, 8_192)]:
        proof = golog.consistency_proof(old, new)
        assert proof == consistency_proof(old, new, levels), (old, new)
        verify_consistency(old, new, proof, levels.root(old), levels.root(new))


INCLUSION = [
    (0, 1),
    (0, 6),
    (EMPTY_ENTRY, 6),
    (7, 257),
    (255, 256),
    (256, 257),
    (EMPTY_ENTRY, 70_000),
    (65_535, 65_536),
    (65_536, 65_537),
    (69_999, 70_000),
]


def test_go_inclusion_proofs_are_suyuans(golog: GoLog) -> None:
    for index, size in INCLUSION:
        proof = golog.inclusion_proof(index, size)
        assert proof == inclusion_proof(index, size, go_tiles(golog, size)), (index, size)
        root = checkpoint_of(golog, size).root
        verify_inclusion(leaf_hash(go_entry(index)), index, size, proof, root)
        with pytest.raises(VerificationError):
            verify_inclusion(leaf_hash(b"not the entry"), index, size, proof, root)


# --- Go reads Suyuan ------------------------------------------------------------------------


@dataclass
class Exported:
    ledger: Ledger
    directory: Path
    older: Path  # the export's checkpoint at its first size, saved as a file


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exported]:
    require_go()
    work = tmp_path_factory.mktemp("suyuan-export")
    made = make_ledger(f"sqlite:///{work / 'ledger.db'}")
    directory = work / "export"
    made.notes(299, prefix="first")
    export(made.log, directory)
    older = work / "checkpoint-300"
    shutil.copyfile(directory / "checkpoint", older)
    made.notes(313, prefix="second")
    export(made.log, directory)
    check_ledger(made.engine)
    yield Exported(made, directory, older)
    made.engine.dispose()


def _tampered(exported: Exported, tmp_path: Path) -> Path:
    copy = tmp_path / "tampered"
    shutil.copytree(exported.directory, copy)
    return copy


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_go_verifies_a_suyuan_export(exported: Exported) -> None:
    vkey = exported.ledger.log.verifier.vkey
    assert (exported.directory / "vkey").read_text() == vkey + "\n"
    result = go_verify(exported.directory, vkey, since=exported.older)
    assert (result.returncode, result.stdout, result.stderr) == (0, "OK 613 entries\n", "")
    assert go_verify(exported.directory, vkey).stdout == "OK 613 entries\n"


def test_go_refuses_another_key(exported: Exported, golog: GoLog) -> None:
    result = go_verify(exported.directory, golog.vkey)
    assert result.returncode == 1
    assert "checkpoint" in result.stderr


def test_go_refuses_a_changed_entry(exported: Exported, tmp_path: Path) -> None:
    copy = _tampered(exported, tmp_path)
    bundle = copy / "tile/entries/001"
    leaves = decode_entry_bundle(bundle.read_bytes(), 256)
    _flip(bundle, 2 + len(leaves[0]) + 2 + 10)  # a byte inside entry 257
    result = go_verify(copy, exported.ledger.log.verifier.vkey)
    assert result.returncode == 1
    assert "entry 257 in tile/entries/001 does not match its leaf hash" in result.stderr


def test_go_refuses_a_changed_tile(exported: Exported, tmp_path: Path) -> None:
    copy = _tampered(exported, tmp_path)
    _flip(copy / "tile/0/000", 32 * 17)
    result = go_verify(copy, exported.ledger.log.verifier.vkey)
    assert result.returncode == 1
    assert "tile/0/000: inclusion proof of entry 0" in result.stderr


def test_go_refuses_a_forged_entry_with_a_matching_tile(exported: Exported, tmp_path: Path) -> None:
    """Entry 17 replaced, and its leaf hash in tile/0/000 with it.

    At size 613 Go's tlog.TileHashReader hands out tile/0/000's hashes without
    checking the tile against its parent (see main.go's verify); the inclusion
    proofs golog adds are what catch this.
    """
    copy = _tampered(exported, tmp_path)
    bundle = copy / "tile/entries/000"
    leaves = decode_entry_bundle(bundle.read_bytes(), 256)
    leaves[17] = b'{"forged": true}'
    bundle.write_bytes(b"".join(len(e).to_bytes(2, "big") + e for e in leaves))
    tile = bytearray((copy / "tile/0/000").read_bytes())
    tile[32 * 17 : 32 * 18] = leaf_hash(leaves[17])
    (copy / "tile/0/000").write_bytes(bytes(tile))
    result = go_verify(copy, exported.ledger.log.verifier.vkey)
    assert result.returncode == 1
    assert "tile/0/000: inclusion proof of entry 0" in result.stderr


def test_go_refuses_a_missing_tile(exported: Exported, tmp_path: Path) -> None:
    copy = _tampered(exported, tmp_path)
    (copy / "tile/1/000.p/2").unlink()
    result = go_verify(copy, exported.ledger.log.verifier.vkey)
    assert result.returncode == 1
    assert "tile/1/000.p/2" in result.stderr


def test_go_refuses_a_changed_checkpoint(exported: Exported, tmp_path: Path) -> None:
    copy = _tampered(exported, tmp_path)
    text = (copy / "checkpoint").read_text()
    (copy / "checkpoint").write_text(text.replace("\n613\n", "\n612\n"))
    result = go_verify(copy, exported.ledger.log.verifier.vkey)
    assert result.returncode == 1
    assert "invalid signature" in result.stderr


def test_go_refuses_a_split_view(exported: Exported, tmp_path: Path) -> None:
    """An older checkpoint signed by the same log key, over a different tree of size 300."""
    forged = Checkpoint(exported.ledger.log.origin, 300, bytes(32))
    since = tmp_path / "forged-checkpoint"
    since.write_text(sign_checkpoint(forged, exported.ledger.log_signer))
    result = go_verify(exported.directory, exported.ledger.log.verifier.vkey, since=since)
    assert result.returncode == 1
    assert "not consistent" in result.stderr


def test_go_verifies_its_own_log(golog: GoLog, tmp_path: Path) -> None:
    since = tmp_path / "checkpoint-256"
    since.write_text(golog.checkpoints[256])
    result = go_verify(golog.directory, golog.vkey, since=since)
    assert (result.returncode, result.stdout) == (0, f"OK {LAST} entries\n")


def test_go_proof_output_is_standard_base64(golog: GoLog) -> None:
    """The wrapper decodes Go's lines strictly; re-encoding gives what Go printed."""
    out = subprocess.run(
        [str(golog_binary()), "prove", "-dir", str(golog.directory), "-old", "6", "-new", "257"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    proof = golog.consistency_proof(6, 257)
    assert out == "".join(base64.b64encode(h).decode() + "\n" for h in proof)
    assert all(len(h) == 32 for h in proof)
