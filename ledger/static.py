"""Writing the log as a static C2SP tlog-tiles tree (``suyuan export DIR``).

Layout under DIR: ``checkpoint``, ``vkey``, ``tile/<L>/<N>[.p/<W>]`` and
``tile/entries/<N>[.p/<W>]`` — any static file server then serves the log, and
``suyuan verify --url`` and ``suyuan mirror`` read it back.

Files are written to a temporary name and renamed, the checkpoint last, so a
reader never sees a checkpoint whose tiles are not there yet.  Before writing
anything, the export proves (RFC 9162 consistency) that the log extends the
checkpoint DIR already holds, and full tiles are immutable: a forked or
rolled-back log stops with an error instead of overwriting.
"""

from __future__ import annotations

import os
from pathlib import Path

from ledger.checkpoint import Checkpoint, verify_checkpoint
from ledger.errors import ConfigError, Error, VerificationError
from ledger.log import Log
from ledger.merkle import verify_consistency
from ledger.tiles import entry_bundles_for_size, tiles_for_size


def _write(path: Path, data: bytes, *, immutable: bool) -> bool:
    """Write ``data`` at ``path`` atomically; return False if it was already there."""
    if path.exists():
        if path.read_bytes() == data:
            return False
        if immutable:
            raise VerificationError(
                f"{path} exists with different content: refusing to rewrite a full tile"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return True


def _check_extends(log: Log, directory: Path, new: Checkpoint) -> None:
    """Refuse to overwrite DIR's checkpoint with one that does not extend it.

    Full tiles catch most forks, but a fork that diverges inside DIR's partial
    tiles would otherwise replace DIR's checkpoint silently.
    """
    existing = directory / "checkpoint"
    if not existing.exists():
        return
    try:
        old, _ = verify_checkpoint(existing.read_bytes(), log.verifier, log.origin)
    except Error as exc:
        raise VerificationError(
            f"{existing} is not a checkpoint of this log ({exc}); refusing to overwrite it"
        ) from None
    if old.size > new.size:
        raise VerificationError(
            f"{existing} is for size {old.size}, this log has {new.size}: refusing to roll the export back"
        )
    if old.size == new.size:
        if old.root != new.root:
            raise VerificationError(
                f"{existing} has a different root for size {old.size}: the log has forked"
            )
        return
    if old.size:
        try:
            verify_consistency(
                old.size, new.size, log.consistency_proof(old.size, new.size), old.root, new.root
            )
        except VerificationError as exc:
            raise VerificationError(
                f"this log does not extend the one exported in {directory}: {exc}"
            ) from None


def export(log: Log, directory: Path) -> tuple[int, int]:
    """Export the newest checkpoint's tree; return (its size, files written)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {directory}: {exc}") from None
    latest = log.latest_checkpoint()
    size = latest.size
    _check_extends(log, directory, latest.checkpoint)
    written = 0
    for bundle in entry_bundles_for_size(size):
        data = log.entry_bundle(bundle.index, bundle.width)
        written += _write(directory / bundle.path(), data, immutable=bundle.is_full)
    for tile in tiles_for_size(size):
        data = log.tile(tile.level, tile.index, tile.width)
        written += _write(directory / tile.path(), data, immutable=tile.is_full)
    written += _write(directory / "vkey", (log.verifier.vkey + "\n").encode(), immutable=False)
    written += _write(directory / "checkpoint", latest.note.encode("utf-8"), immutable=False)
    return size, written
