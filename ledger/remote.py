"""Auditing a log through its C2SP tlog-tiles alone: ``suyuan verify --url URL --vkey VKEY``.

The auditor trusts nothing but the log's verifier key.  It fetches the signed
checkpoint, every entry bundle and every tile, and:

* checks every entry exactly as the database audit does (``ledger.verify.Auditor``);
* rebuilds the tree and checks the checkpoint's root, and that every served
  tile (level 0 and above, full and partial) holds exactly the recomputed hashes;
* given an earlier checkpoint the auditor saved (``--since FILE``), checks that
  the current tree extends it: its root is recomputed from the same entries, and
  an RFC 9162 consistency proof built from the served tiles verifies between the
  two — the auditor's "nothing was rewritten since my last audit".

Fetching is the only I/O, through :class:`Fetcher`: HTTP(S) with gzip, or a
local directory written by ``suyuan export``.
"""

from __future__ import annotations

import gzip
import itertools
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ledger.checkpoint import Checkpoint, verify_checkpoint
from ledger.errors import Error, InvalidInput, NotFound, VerificationError
from ledger.merkle import consistency_proof, verify_consistency
from ledger.note import Verifier
from ledger.tiles import (
    TILE_HEIGHT,
    TILE_WIDTH,
    Tile,
    TileHashReader,
    decode_entry_bundle,
    iter_entry_bundles,
)
from ledger.verify import CHUNK, Auditor, AuditResult, Progress, decoded_stream

Fetcher = Callable[[str], bytes]
#: Largest body accepted for one resource (a full entry bundle is at most 256 × 64 KiB).
MAX_RESOURCE = 256 * 65_537 + 1024


def http_fetcher(prefix: str, timeout: float = 30.0) -> Fetcher:
    """Fetch ``<prefix>/<path>`` over HTTP(S), accepting gzip."""
    base = prefix.rstrip("/") + "/"

    def fetch(path: str) -> bytes:
        request = urllib.request.Request(
            base + path,
            headers={"Accept-Encoding": "gzip, identity", "User-Agent": "suyuan-verify"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body: bytes = response.read(MAX_RESOURCE + 1)
                encoding = response.headers.get("Content-Encoding", "identity")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise NotFound(f"{base + path}: 404 Not Found") from None
            raise Error(f"{base + path}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise Error(f"cannot fetch {base + path}: {exc}") from None
        if encoding == "gzip":
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError) as exc:
                raise InvalidInput(f"{base + path}: bad gzip body: {exc}") from None
        if len(body) > MAX_RESOURCE:
            raise InvalidInput(f"{base + path}: response larger than {MAX_RESOURCE} bytes")
        return body

    return fetch


def directory_fetcher(root: Path) -> Fetcher:
    """Read an exported tree from a local directory."""

    def fetch(path: str) -> bytes:
        target = root / path
        try:
            return target.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"{target}: no such file") from None
        except OSError as exc:
            raise Error(f"cannot read {target}: {exc}") from None

    return fetch


def fetcher_for(location: str) -> Fetcher:
    if location.startswith(("http://", "https://")):
        return http_fetcher(location)
    root = Path(location.removeprefix("file://"))
    if not root.is_dir():
        raise InvalidInput(f"{location!r} is neither an http(s) URL nor a directory")
    return directory_fetcher(root)


@dataclass(frozen=True)
class RemoteAudit:
    result: AuditResult
    checkpoint: Checkpoint
    note: str
    since: Checkpoint | None


def audit_remote(
    fetch: Fetcher,
    verifier: Verifier,
    *,
    since_note: str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> RemoteAudit:
    """Audit the log behind ``fetch``; raise :class:`VerificationError` at the first problem."""
    note = _text(fetch("checkpoint"), "checkpoint")
    try:
        checkpoint, _ = verify_checkpoint(note, verifier)
    except Error as exc:
        raise VerificationError(f"the served checkpoint does not verify: {exc}") from None
    since: Checkpoint | None = None
    if since_note is not None:
        try:
            since, _ = verify_checkpoint(since_note, verifier)
        except Error as exc:
            raise VerificationError(
                f"your saved checkpoint does not verify with this key: {exc}"
            ) from None
        if since.size > checkpoint.size:
            raise VerificationError(
                f"the log shrank: your saved checkpoint is for size {since.size}, "
                f"the log now serves size {checkpoint.size} (a rollback)"
            )
    size = checkpoint.size
    tiles = _TileChecker(fetch, size)
    expected = [checkpoint] + ([since] if since is not None else [])
    leaf_tile_paths: dict[int, str] = {}
    auditor = Auditor(
        checkpoint.origin,
        expected,
        lambda seq: (
            f"tile {leaf_tile_paths.get(seq, '?')} does not hold the hashes of the entries it covers"
        ),
    )

    def chunks() -> Iterator[tuple[int, list[bytes]]]:
        # The bundles are made as needed: the first that is not served ends the audit.
        bundles = iter_entry_bundles(size)
        per_chunk = max(1, CHUNK // TILE_WIDTH)
        while chunk := list(itertools.islice(bundles, per_chunk)):
            leaves: list[bytes] = []
            for bundle in chunk:
                data = fetch(bundle.path())
                try:
                    leaves.extend(decode_entry_bundle(data, bundle.width))
                except InvalidInput as exc:
                    raise VerificationError(f"entry bundle {bundle.path()}: {exc}") from None
                tile = Tile(0, bundle.index, bundle.width)
                served = fetch(tile.path())
                base = bundle.index * TILE_WIDTH
                if len(served) != bundle.width * 32:
                    raise VerificationError(
                        f"seq {base}: tile {tile.path()} does not hold the hashes of the entries "
                        f"it covers ({len(served)} bytes, expected {bundle.width * 32})"
                    )
                leaf_tiles.update(
                    (base + i, (served[i * 32 : (i + 1) * 32], tile.path()))
                    for i in range(bundle.width)
                )
            # Workers check signatures against the keys registered so far (hints only:
            # the auditor re-checks any signature whose key differs from its own replay).
            hints.update({key_id: record.vkey for key_id, record in auditor.state.keys.items()})
            yield chunk[0].index * TILE_WIDTH, leaves

    hints: dict[str, str] = {}
    leaf_tiles: dict[int, tuple[bytes, str]] = {}  # level-0 tile hashes, checked leaf by leaf
    for decoded in decoded_stream(chunks(), hints, workers if size >= 4096 else 0):
        served_hash, tile_path = leaf_tiles.pop(decoded.seq)
        leaf_tile_paths[decoded.seq] = tile_path  # a suspect is judged within the next entry
        leaf_tile_paths.pop(decoded.seq - 2, None)
        for node, digest in auditor.feed(decoded, served_hash):
            tiles.add(node, digest)
        if progress is not None and decoded.seq % 10_000 == 0:
            progress(decoded.seq, size)
    result = auditor.finish()
    tiles.finish()
    if since is not None and 0 < since.size < size:
        # The recomputed roots already agree; also prove it the way any client would.
        reader = TileHashReader(lambda tile: fetch(tile.path()), size)
        try:
            proof = consistency_proof(since.size, size, reader)
            verify_consistency(since.size, size, proof, since.root, checkpoint.root)
        except Error as exc:
            raise VerificationError(
                f"consistency proof from size {since.size} to {size}: {exc}"
            ) from None
    if progress is not None:
        progress(size, size)
    return RemoteAudit(result, checkpoint, note, since)


def _text(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise VerificationError(f"{what} is not UTF-8") from None


class _TileChecker:
    """Compares served tiles with the hashes the auditor recomputes, tile by tile."""

    def __init__(self, fetch: Fetcher, size: int) -> None:
        self.fetch = fetch
        self.size = size
        self.pending: dict[tuple[int, int], list[bytes]] = {}

    def add(self, node: tuple[int, int], digest: bytes) -> None:
        level, idx = node
        if level == 0 or level % TILE_HEIGHT:
            return  # level-0 tiles are checked leaf by leaf as the bundles are read
        key = (level // TILE_HEIGHT, idx // TILE_WIDTH)
        hashes = self.pending.setdefault(key, [])
        hashes.append(digest)
        if len(hashes) == TILE_WIDTH:
            self._compare(Tile(key[0], key[1]), self.pending.pop(key))

    def finish(self) -> None:
        for (level, index), hashes in sorted(self.pending.items()):
            self._compare(Tile(level, index, len(hashes)), hashes)

    def _compare(self, tile: Tile, hashes: list[bytes]) -> None:
        served = self.fetch(tile.path())
        if served != b"".join(hashes):
            first = tile.index * TILE_WIDTH << (tile.level * TILE_HEIGHT)
            raise VerificationError(
                f"seq {first}: tile {tile.path()} does not hold the hashes of the entries it covers"
            )
