"""Writing the log as a static C2SP tlog-tiles tree (``suyuan export DIR``).

Layout under DIR: ``checkpoint``, ``vkey``, ``tile/<L>/<N>[.p/<W>]`` and
``tile/entries/<N>[.p/<W>]`` — any static file server then serves the log, and
``suyuan verify --url`` and ``suyuan mirror`` read it back.

Files are written to a temporary name and renamed, the checkpoint last, so a
reader never sees a checkpoint whose tiles are not there yet.  Full tiles are
immutable: if DIR already holds a full tile with different bytes, the export
stops with an error (the log it came from has forked) instead of overwriting.
"""

from __future__ import annotations

import os
from pathlib import Path

from ledger.errors import ConfigError, VerificationError
from ledger.log import Log
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


def export(log: Log, directory: Path) -> tuple[int, int]:
    """Export the newest checkpoint's tree; return (its size, files written)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {directory}: {exc}") from None
    latest = log.latest_checkpoint()
    size = latest.size
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
