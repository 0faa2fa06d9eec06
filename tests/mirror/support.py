"""Helpers for the mirror tests: logs to mirror, a real HTTP server over a directory,
fetchers that count (or fail), and a writer for hand-made tlog-tiles trees.
"""

from __future__ import annotations

import http.server
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.checkpoint import Checkpoint
from ledger.entry import make_statement, sign_statement
from ledger.log import Log
from ledger.merkle import EMPTY_ROOT, CompactRange, NodeId, leaf_hash
from ledger.note import Signer, Verifier, sign_note
from ledger.remote import Fetcher
from ledger.tiles import TILE_HEIGHT, TILE_WIDTH, entry_bundles_for_size, tiles_for_size
from tests.helpers import Ledger, now

SIZES = (300, 500, 700)
BIG = (2_000, 5_002)


@dataclass
class Logs:
    ledger: Ledger
    coop: Signer
    exports: dict[int, Path]
    fork_same: Path  # the fork at 700: same size as the original, another root
    fork_more: Path  # the fork at 720

    @property
    def log(self) -> Log:
        return self.ledger.log

    @property
    def verifier(self) -> Verifier:
        return self.ledger.log.verifier

    def note(self, size: int) -> str:
        return self.ledger.log.checkpoint(size).note


@dataclass
class Big:
    ledger: Ledger
    exports: dict[int, Path]


def grow(log: Log, signer: Signer, upto: int, *, batch: int = 100, text: str = "entry") -> None:
    """Append notes ``f"{text} {seq:05d}"`` until the log has ``upto`` entries;
    a checkpoint at every multiple of ``batch``."""
    size = log.size()
    while size < upto:
        count = min(batch - size % batch, upto - size)
        items = [
            sign_statement(
                make_statement("note", {"text": f"{text} {seq:05d}"}, log.origin, now()), [signer]
            )
            for seq in range(size, size + count)
        ]
        log.append(items, signatures_verified=True)
        size += count


def backup(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def tree(directory: Path, *, state: bool = False) -> dict[str, bytes]:
    """Every file under ``directory`` and its bytes (without ``.mirror/`` unless ``state``)."""
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and (state or not str(p.relative_to(directory)).startswith(".mirror"))
    }


def files_of(size: int) -> set[str]:
    """The paths a static tree of ``size`` entries holds (``suyuan export``'s layout)."""
    return (
        {t.path() for t in tiles_for_size(size)}
        | {b.path() for b in entry_bundles_for_size(size)}
        | {"checkpoint", "vkey"}
    )


def bundles(paths: Sequence[str]) -> list[str]:
    return [p for p in paths if p.startswith("tile/entries/")]


@dataclass
class Counting:
    """A fetcher that records every path it is asked for, and can fail on cue."""

    inner: Fetcher
    paths: list[str] = field(default_factory=list)
    fail: Callable[[str, int], BaseException | None] = lambda _path, _n: None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, path: str) -> bytes:
        with self.lock:
            self.paths.append(path)
            failure = self.fail(path, len(bundles(self.paths)))
        if failure is not None:
            raise failure
        return self.inner(path)


class _Handler(http.server.SimpleHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.lstrip("/")
        with self.server.lock:
            self.server.requests.append(path)
        delay = self.server.delay(path)
        if delay:
            time.sleep(delay)
        super().do_GET()

    def translate_path(self, path: str) -> str:
        return str(self.server.root / path.split("?", 1)[0].lstrip("/"))

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    root: Path
    requests: list[str]
    lock: threading.Lock
    delay: Callable[[str], float]


@dataclass
class Served:
    """A static file server (http.server, real sockets) over ``root``; swap ``root`` freely."""

    server: _Server

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    @property
    def requests(self) -> list[str]:
        return self.server.requests

    @property
    def root(self) -> Path:
        return self.server.root

    @root.setter
    def root(self, value: Path) -> None:
        self.server.root = value

    def set_delay(self, delay: Callable[[str], float]) -> None:
        self.server.delay = delay


@contextmanager
def serve_directory(root: Path) -> Iterator[Served]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.root = root
    server.requests = []
    server.lock = threading.Lock()
    server.delay = lambda _path: 0.0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Served(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def copy_tree(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def write_tree(
    directory: Path, leaves: Sequence[bytes], signer: Signer, origin: str | None = None
) -> str:
    """Write a static tlog-tiles tree of ``leaves`` (any bytes, empty ones too) signed by
    ``signer`` with origin ``origin`` (default: the key's name); return the checkpoint note.

    Earlier trees' files in ``directory`` stay (as a log keeps its old partial tiles).
    """
    edge = CompactRange.empty()
    nodes: dict[NodeId, bytes] = {}
    for leaf in leaves:
        for node, digest in edge.append(leaf_hash(leaf)):
            if node[0] % TILE_HEIGHT == 0:
                nodes[node] = digest
    size = len(leaves)
    for bundle in entry_bundles_for_size(size):
        first = bundle.index * TILE_WIDTH
        data = b"".join(len(x).to_bytes(2, "big") + x for x in leaves[first : first + bundle.width])
        _put(directory / bundle.path(), data)
    for tile in tiles_for_size(size):
        level = tile.level * TILE_HEIGHT
        first = tile.index * TILE_WIDTH
        _put(
            directory / tile.path(),
            b"".join(nodes[(level, first + i)] for i in range(tile.width)),
        )
    root = edge.root() if size else EMPTY_ROOT
    note = sign_note(Checkpoint(origin or signer.name, size, root).text(), [signer])
    _put(directory / "checkpoint", note.encode())
    return note


def _put(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def flip(path: Path, offset: int) -> None:
    """Change one byte of a file (a tamperer's edit that keeps its length)."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
