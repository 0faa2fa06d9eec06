"""Mirroring a C2SP tlog-tiles log: ``suyuan mirror URL --vkey VKEY --dir DIR``.

A mirror keeps a complete, verified copy of a remote transparency log, fetched
through its tiles alone (https://c2sp.org/tlog-tiles), trusting nothing but the
log's verifier key.  It works for ANY tlog-tiles log whose checkpoints are
C2SP tlog-checkpoint notes signed with an Ed25519 signed-note key (Suyuan's,
Go's sumdb/tlog, …): entries are opaque bytes to the tree verification.  For a
Suyuan log the ledger's rules are checked too (below).

The directory
-------------

``DIR`` is itself a static tlog-tiles tree, in exactly the layout ``suyuan
export`` writes, so any static file server, ``suyuan verify --url DIR --vkey
VKEY`` or ``suyuan serve --mirror DIR`` can use it:

* ``checkpoint`` — the newest checkpoint the mirror verified, byte for byte the
  note the log served (witness cosignatures included);
* ``tile/<L>/<N>[.p/<W>]`` and ``tile/entries/<N>[.p/<W>]`` — every tile and
  entry bundle of that tree, byte for byte equal to the log's, plus the partial
  tiles of every earlier size the mirror held (tlog-tiles "Partial Tiles": a
  log MUST serve the partial tiles of every checkpoint it published);
* ``vkey`` — the log's verifier key.

and a state folder ``DIR/.mirror/`` that a static server need not serve:

* ``vkey`` — the verifier key this DIR mirrors, written at the first verified
  checkpoint; a later run with another key is refused;
* ``state.json`` — ``vkey``, ``origin``, ``url`` (the last URL mirrored from),
  ``size``, ``checked`` (when a run last verified the remote, UTC) and ``log``
  (``"suyuan"`` or ``"opaque"``: whether the log is a Suyuan log, decided once,
  from entry 0);
* ``lock`` — ``flock``-ed for the whole of a run: two runs on one DIR never
  interleave (the second is refused at once, naming the holder's pid);
* ``staging/`` — entry bundles downloaded by a run that did not finish, and the
  tiles a run computes before it commits;
* ``rules.pickle`` — a snapshot of the rule auditor's state (Suyuan logs);
* ``evidence/<time>-<what>-<digest>/`` — what a refused run saw: ``reason.txt``,
  ``mirrored.checkpoint`` (the note the mirror held), ``remote.checkpoint`` (the
  note it refused) and, under ``served/``, the resources that did not verify.
  Two checkpoint notes with one size and two roots, both signed by the log key,
  are proof of a fork anyone can check.

One run (:meth:`Mirror.run`, :func:`mirror_once`)
---------------------------------------------------

1. Take the lock.  Verify ``DIR/checkpoint`` (size *m*) with the vkey and
   rebuild the tree's right edge (a :class:`~ledger.merkle.CompactRange`) from
   DIR's own tiles; its root MUST equal the checkpoint's (else DIR is damaged:
   :class:`~ledger.errors.StorageError`).
2. Fetch the remote checkpoint (size *n*); its Ed25519 signature by the vkey
   MUST verify and its origin MUST be the expected one (the key's name unless
   ``origin`` says otherwise).  Then:

   * *n* < *m*: refused, "the remote log rolled back" (the message says whether
     its root matches the mirrored tree at *n* — an old checkpoint, perhaps a
     stale cache — or not — a fork); evidence kept.
   * *n* = *m*: the roots MUST be equal, else refused as a fork with evidence.
     An equal checkpoint with new cosignatures replaces ``DIR/checkpoint``.
   * *n* > *m*: every entry bundle from the one holding entry *m* (the first
     partial one) to the end is fetched — or taken from staging, re-verified,
     if an interrupted run downloaded it — and checked: it decodes to exactly
     its width; its entries below *m* MUST be the ones already mirrored (one
     that differs but that an inclusion proof from the remote's tiles shows in
     the new signed tree is a fork: two signed trees, two entries at one seq);
     its leaf hashes MUST equal the served level-0 tile (a disagreement is
     pinned on the bundle or on the tile by checking each against the signed
     root with an inclusion proof from the remote's tiles).  New leaf hashes
     extend the compact range, which yields every new tile; each MUST equal
     the tile the remote serves.  The computed root MUST equal the new
     checkpoint's root: this proves every kept entry is in the signed tree and
     that the new tree extends the mirrored one (it was computed from it).
     Finally an RFC 9162 consistency proof from *m* to *n* built from the
     remote's tiles MUST verify between the two signed roots, as it would for
     any client of the log (this one is fetched first, as an early warning:
     when it fails, the entries are still downloaded, to name what is wrong —
     a tile, a bundle, or the log itself, forked).

3. Commit, only after all of that: staged bundles and tiles are renamed into
   DIR and flushed to disk (one ``sync()``: staged files are not fsync-ed one
   by one, since a torn staged file is caught by its re-verification),
   ``on_entries`` is called, and ``DIR/checkpoint`` is replaced LAST by an
   atomic rename (fsync-ed, with its directory).

Crash safety: DIR/checkpoint only ever names a tree whose files are all in DIR
and verified.  A run killed at any point leaves the previous checkpoint and its
tree intact; at worst some verified files of the next size are already in DIR
(harmless: immutable, and a reader only fetches what a checkpoint requires).
The next run resumes: full bundles in staging (or in DIR beyond its
checkpoint) are re-verified, not re-downloaded.  A run that finds a problem
(rather than crashing) empties staging: the next one starts clean.

Memory is bounded whatever the catch-up: bundles stream through (a few in
flight), the tree is held as its right edge plus one partial tile per level,
and computed tiles are staged on disk.  Only hashes are kept, never leaves.

Suyuan logs: the rules
----------------------

A log is a *Suyuan log* when its key name equals its origin and entry 0
decodes as a Suyuan entry for that origin (decided once and recorded in
``state.json``; any later entry that does not decode is then a violation).
For a Suyuan log, unless ``rules=False`` (``--no-rules``), every new entry is
also replayed through :class:`ledger.verify.Auditor`: canonical encoding, the
hash chain, log time, every author signature against the key registry, and
every kind's rules.  The auditor's state survives between runs as
``rules.pickle`` (stamped with the size and root it reflects, loaded with an
unpickler restricted to ``ledger`` classes); when it is missing or behind,
the state is rebuilt by replaying DIR's own entries from the snapshot (or from
0) up to *m*.  A rule violation is reported only after the tree verified — so
the bad entry is proven to be in the signed log — and kept as evidence.
Foreign logs get tree verification only.

Hooks: ``on_entries(start_seq, leaves)`` receives the verified new leaves in
order, after the root check and after the files are in DIR but before
``DIR/checkpoint`` moves: if the run dies in between, the next run calls it
again for the same seqs, so it MUST be idempotent (skip what it has).
``progress(done, size)`` is called as entries are verified.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import pickle
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from ledger.checkpoint import Checkpoint, parse_checkpoint_text
from ledger.entry import decode_entry
from ledger.errors import (
    ConfigError,
    Error,
    InvalidInput,
    NotFound,
    StorageError,
    VerificationError,
)
from ledger.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    CompactRange,
    NodeId,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    tree_root,
    verify_consistency,
    verify_inclusion,
)
from ledger.note import Verifier, open_note
from ledger.remote import Fetcher, directory_fetcher
from ledger.rules import RuleState
from ledger.tiles import (
    TILE_HEIGHT,
    TILE_WIDTH,
    EntryBundle,
    Tile,
    TileHashReader,
    iter_entry_bundles,
    split_tile,
)
from ledger.verify import CHUNK, PARALLEL_THRESHOLD, Auditor, decoded_stream, default_workers

__all__ = [
    "STATE_DIR",
    "Mirror",
    "MirrorBusy",
    "MirrorRefused",
    "MirrorResult",
    "OnEntries",
    "Progress",
    "mirror_once",
    "open_checkpoint",
]

STATE_DIR = ".mirror"
"""The mirror's state folder inside DIR."""

Progress = Callable[[int, int], None]
"""``progress(done, size)``: entries verified so far of the tree of ``size`` being mirrored."""

OnEntries = Callable[[int, list[bytes]], None]
"""``on_entries(start_seq, leaves)``: verified new leaves, in order (see the module contract)."""

Say = Callable[[str], None]

#: Bundles fetched ahead of the one being verified (threads; the fetch is I/O).
PREFETCH = 4
#: Snapshot format of ``rules.pickle``.
_SNAPSHOT_VERSION = 1


class MirrorRefused(VerificationError):
    """The remote log failed verification; DIR is unchanged.  ``evidence``: what was kept."""

    def __init__(self, message: str, evidence: Path | None = None) -> None:
        super().__init__(message)
        self.evidence = evidence


class MirrorBusy(ConfigError):
    """Another run holds DIR's lock."""


@dataclass(frozen=True)
class MirrorResult:
    """What one run did.  ``fetched`` counts resources fetched from the remote,
    ``reused`` the bundles taken from staging or DIR instead; ``rules`` is True
    when the ledger's rules were checked for the new entries."""

    origin: str
    old_size: int
    size: int
    note: str
    fetched: int
    reused: int
    rules: bool
    log: str  # "suyuan", "opaque", or "" while the log is empty

    @property
    def new(self) -> int:
        return self.size - self.old_size


# --- pure helpers -------------------------------------------------------------------------


def open_checkpoint(
    note: bytes | str, verifier: Verifier, origin: str | None = None
) -> tuple[Checkpoint, str]:
    """Verify a checkpoint note signed by ``verifier``; return it and the note text.

    The origin line MUST equal ``origin`` (default: the key's name, the C2SP
    tlog-checkpoint convention).  Other signature lines (cosignatures) are left
    unchecked.  Raises VerificationError, naming the key, for anything wrong.
    """
    expected = verifier.name if origin is None else origin
    try:
        opened = open_note(note, [verifier])
        cp = parse_checkpoint_text(opened.text)
    except Error as exc:
        raise VerificationError(
            f"it does not verify with the key {verifier.key_id}: {exc}"
        ) from None
    if cp.origin != expected:
        raise VerificationError(f"its origin {cp.origin!r} is not the expected origin {expected!r}")
    text = note.decode("utf-8") if isinstance(note, bytes) else note
    return cp, text


def decode_bundle(data: bytes, width: int, path: str) -> list[bytes]:
    """Decode a tlog-tiles entry bundle of exactly ``width`` entries (uint16 length prefixes).

    Unlike :func:`ledger.tiles.decode_entry_bundle` an empty entry is allowed:
    tlog-tiles does not forbid one, and entries are opaque here.
    """
    out: list[bytes] = []
    pos, end = 0, len(data)
    while pos < end:
        if len(out) == width:
            raise VerificationError(
                f"entry bundle {path}: expected {width} entries, found {end - pos} more bytes"
            )
        if end - pos < 2:
            raise VerificationError(f"entry bundle {path}: truncated length at offset {pos}")
        length = int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
        if end - pos < length:
            raise VerificationError(
                f"entry bundle {path}: entry {len(out)} is truncated "
                f"(expected {length} bytes, found {end - pos})"
            )
        out.append(bytes(data[pos : pos + length]))
        pos += length
    if len(out) != width:
        raise VerificationError(f"entry bundle {path}: expected {width} entries, found {len(out)}")
    return out


def _truncate_bundle(data: bytes, width: int) -> bytes:
    """The first ``width`` entries of a bundle (for the full-bundle fallback); malformed → as is."""
    pos = 0
    for _ in range(width):
        if pos + 2 > len(data):
            return data
        pos += 2 + int.from_bytes(data[pos : pos + 2], "big")
    return data[:pos]


class _TileBuilder:
    """The tiles of a growing tree, from the nodes :meth:`CompactRange.append` returns.

    Holds one partial tile per level (at most 256 hashes each), seeded from the
    mirrored tree's partial tiles.
    """

    def __init__(self, size: int, read: Callable[[Tile], bytes]) -> None:
        self.buffers: dict[int, list[bytes]] = {}
        level = 0
        while size >> (level * TILE_HEIGHT):
            count = size >> (level * TILE_HEIGHT)
            if count % TILE_WIDTH:
                tile = Tile(level, count // TILE_WIDTH, count % TILE_WIDTH)
                self.buffers[level] = split_tile(read(tile), tile)
            level += 1

    def add(self, nodes: Iterable[tuple[NodeId, bytes]]) -> list[tuple[Tile, list[bytes]]]:
        """Take new nodes; return the full tiles they complete."""
        done = []
        for (level, index), digest in nodes:
            if level % TILE_HEIGHT:
                continue
            tile_level = level // TILE_HEIGHT
            buffer = self.buffers.setdefault(tile_level, [])
            if len(buffer) != index % TILE_WIDTH:  # pragma: no cover - CompactRange's contract
                raise StorageError(f"tile builder: node {(level, index)} out of order")
            buffer.append(digest)
            if len(buffer) == TILE_WIDTH:
                done.append((Tile(tile_level, index // TILE_WIDTH), self.buffers.pop(tile_level)))
        return done

    def partial(self, size: int) -> list[tuple[Tile, list[bytes]]]:
        """The partial tiles of the tree of ``size`` (which MUST be the size reached)."""
        out = []
        for level, hashes in sorted(self.buffers.items()):
            if hashes:
                count = size >> (level * TILE_HEIGHT)
                out.append((Tile(level, count // TILE_WIDTH, len(hashes)), hashes))
        return out


class _RestrictedUnpickler(pickle.Unpickler):
    """Loads a rules snapshot: only classes of ``ledger`` and a few plain builtins."""

    _SAFE = frozenset(
        {
            ("builtins", n)
            for n in ("dict", "list", "set", "frozenset", "tuple", "int", "str", "bytes", "bool")
        }
        | {("datetime", "datetime"), ("datetime", "date"), ("datetime", "timedelta")}
        | {("datetime", "timezone"), ("decimal", "Decimal"), ("collections", "OrderedDict")}
    )

    def find_class(self, module: str, name: str) -> Any:
        found = super().find_class(module, name)
        if isinstance(found, type) and (
            module == "ledger" or module.startswith("ledger.") or (module, name) in self._SAFE
        ):
            return found
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a rules snapshot")


@dataclass
class _RuleSnapshot:
    size: int
    root: bytes
    prev: bytes
    time: str
    edge: list[bytes]
    state: RuleState


# --- I/O edges ----------------------------------------------------------------------------


class _Remote:
    """The remote log: fetches with retries (transient errors only) and the tlog-tiles
    fallback from a missing partial tile or bundle to the full one."""

    def __init__(
        self, fetch: Fetcher, retries: int, backoff: float, sleep: Callable[[float], None]
    ) -> None:
        self._fetch = fetch
        self._retries = retries
        self._backoff = backoff
        self._sleep = sleep
        self._lock = threading.Lock()
        self.count = 0

    def get(self, path: str) -> bytes:
        attempt = 0
        while True:
            try:
                data = self._fetch(path)
            except Error as exc:
                # NotFound, InvalidInput, VerificationError are answers, not hiccups.
                if type(exc) is not Error or attempt >= self._retries:
                    raise
                self._sleep(self._backoff * (2**attempt))
                attempt += 1
                continue
            with self._lock:
                self.count += 1
            return data

    def tile(self, tile: Tile) -> bytes:
        try:
            return self.get(tile.path())
        except NotFound:
            if tile.is_full:
                raise
            # c2sp tlog-tiles: a log MAY delete a partial tile once the full one exists.
            return self.get(Tile(tile.level, tile.index).path())[: tile.width * HASH_SIZE]

    def bundle(self, bundle: EntryBundle) -> bytes:
        try:
            return self.get(bundle.path())
        except NotFound:
            if bundle.is_full:
                raise
            return _truncate_bundle(self.get(EntryBundle(bundle.index).path()), bundle.width)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes, *, fsync: bool) -> None:
    """Write ``path`` through a temporary name and a rename (readers see old or new, whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.{threading.get_ident()}")
    with open(tmp, "wb") as out:
        out.write(data)
        if fsync:
            out.flush()
            os.fsync(out.fileno())
    os.replace(tmp, path)


@dataclass
class _Work:
    """One bundle on its way through a run."""

    bundle: EntryBundle
    data: bytes
    source: str  # "remote", "staging" or "dir"
    served_tile: bytes


# --- the mirror ---------------------------------------------------------------------------


class Mirror:
    """A mirror of the log behind ``fetch`` (verified with ``verifier``) in ``directory``.

    Construction checks the directory without writing anything (ConfigError:
    a file, a non-empty directory that is not a mirror, a mirror of another
    key or origin).  :meth:`run` does one catch-up; call it again to follow
    the log (the rule auditor's state stays in memory between calls).
    """

    def __init__(
        self,
        fetch: Fetcher,
        verifier: Verifier,
        directory: Path,
        *,
        origin: str | None = None,
        source: str | None = None,
        rules: bool = True,
        on_entries: OnEntries | None = None,
        progress: Progress | None = None,
        say: Say | None = None,
        workers: int | None = None,
        prefetch: int = PREFETCH,
        retries: int = 3,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        fsync: bool = True,
    ) -> None:
        self.verifier = verifier
        self._origin = origin  # as given; None: the one DIR recorded, else the key's name
        self.origin = verifier.name if origin is None else origin
        self.directory = Path(directory)
        self.source = source
        self.rules = rules
        self.on_entries = on_entries
        self.progress = progress
        self.say: Say = say or (lambda _message: None)
        self.workers = workers
        self.prefetch = max(1, prefetch)
        self.fsync = fsync
        self._fetch = fetch
        self._retries, self._backoff, self._sleep = retries, backoff, sleep
        self.state = self.directory / STATE_DIR
        self.staging = self.state / "staging"
        self._cached: _RuleSnapshot | None = None  # the auditor's state after the last run
        self.config = self._check_directory()

    # -- the directory ------------------------------------------------------------------

    def _check_directory(self) -> dict[str, Any]:
        d = self.directory
        if d.exists() and not d.is_dir():
            raise ConfigError(f"{d} is not a directory")
        if not d.exists():
            return {}
        try:
            names = sorted(p.name for p in d.iterdir())
        except OSError as exc:
            raise ConfigError(f"cannot read {d}: {exc}") from None
        if names and not self.state.is_dir():
            raise ConfigError(
                f"{d} holds files ({', '.join(names[:3])}…) but is not a mirror (no {STATE_DIR}/ "
                "folder): give an empty or new directory"
            )
        path = self.state / "state.json"
        config: dict[str, Any] = {}
        try:
            if path.exists():
                config = json.loads(path.read_text(encoding="utf-8"))
                if not isinstance(config, dict):
                    raise ValueError("expected a JSON object")
            if (self.state / "vkey").exists():
                config.setdefault("vkey", (self.state / "vkey").read_text("utf-8").strip())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path} is unreadable: {exc}") from None
        vkey = str(config.get("vkey", self.verifier.vkey))
        origin = str(config.get("origin", self.origin))
        if self._origin is None:
            self.origin = origin
        if vkey != self.verifier.vkey:
            raise ConfigError(
                f"{d} mirrors the log with key {vkey}, not {self.verifier.vkey}: "
                "use another directory for another log"
            )
        if origin != self.origin:
            raise ConfigError(f"{d} mirrors the log with origin {origin!r}, not {self.origin!r}")
        return config

    def _save_config(self, **changes: Any) -> None:
        vkey = self.state / "vkey"
        if not vkey.exists():
            _write_atomic(vkey, (self.verifier.vkey + "\n").encode(), fsync=self.fsync)
        config = {**self.config, "vkey": self.verifier.vkey, "origin": self.origin, **changes}
        if config != self.config or not (self.state / "state.json").exists():
            _write_atomic(
                self.state / "state.json",
                (json.dumps(config, indent=2, sort_keys=True) + "\n").encode(),
                fsync=self.fsync,
            )
            self.config = config

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.state.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.state / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot create {self.state}: {exc}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
                raise MirrorBusy(
                    f"{self.directory} is being mirrored by another run (pid {holder} holds "
                    f"{self.state / 'lock'}); try again when it has finished"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _local_checkpoint(self) -> tuple[Checkpoint, str] | None:
        path = self.directory / "checkpoint"
        if not path.exists():
            return None
        try:
            return open_checkpoint(path.read_bytes(), self.verifier, self.origin)
        except (Error, OSError) as exc:
            raise StorageError(f"{path} is damaged: {exc}") from None

    def _local_reader(self, size: int) -> TileHashReader:
        local = directory_fetcher(self.directory)

        def read(tile: Tile) -> bytes:
            try:
                return local(tile.path())
            except Error as exc:
                raise StorageError(f"{self.directory} is damaged: {exc}") from None

        return TileHashReader(read, size)

    def _local_leaves(self, start: int, end: int) -> Iterator[tuple[int, list[bytes]]]:
        """DIR's own entries ``start .. end - 1``, bundle by bundle: (first seq, leaves)."""
        for bundle in iter_entry_bundles(end, start):
            path = self.directory / bundle.path()
            try:
                leaves = decode_bundle(path.read_bytes(), bundle.width, bundle.path())
            except (Error, OSError) as exc:
                raise StorageError(f"{self.directory} is damaged: {exc}") from None
            first = bundle.index * TILE_WIDTH
            skip = max(0, start - first)
            yield first + skip, leaves[skip:]

    # -- evidence -----------------------------------------------------------------------

    def _evidence(
        self,
        what: str,
        message: str,
        notes: dict[str, str],
        served: dict[str, bytes] | None = None,
    ) -> Path | None:
        """Keep what a refused run saw; return its folder (one per distinct incident)."""
        served = served or {}
        digest = hashlib.sha256()
        for name, text in sorted(notes.items()):
            digest.update(f"{name}\0{text}\0".encode())
        for name, data in sorted(served.items()):
            digest.update(name.encode() + b"\0" + data)
        tag = f"{what}-{digest.hexdigest()[:16]}"
        root = self.state / "evidence"
        try:
            existing = sorted(root.glob(f"*-{tag}")) if root.is_dir() else []
            if existing:
                return existing[0]
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            folder = root / f"{stamp}-{tag}"
            tmp = root / f".{stamp}-{tag}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            reason = (
                f"{message}\n\nremote: {self.source or '?'}\nvkey: {self.verifier.vkey}\n"
                f"seen: {datetime.now(UTC).isoformat()}\n"
            )
            (tmp / "reason.txt").write_text(reason, encoding="utf-8")
            for name, text in notes.items():
                (tmp / name).write_text(text, encoding="utf-8")
            for name, data in served.items():
                target = tmp / "served" / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            os.replace(tmp, folder)
            return folder
        except OSError as exc:
            self.say(f"warning: could not keep evidence in {root}: {exc}")
            return None

    # -- a run ---------------------------------------------------------------------------

    def run(self) -> MirrorResult:
        """One catch-up with the remote log (see the module contract)."""
        with self._locked():
            self.config = self._check_directory()  # another run may have started the mirror
            try:
                return _Run(self).run()
            except MirrorRefused:
                # Nothing unverified survives a refusal.  Only here, once the run has
                # unwound: its fetch threads MUST have stopped writing into staging.
                shutil.rmtree(self.staging, ignore_errors=True)
                raise


class _Run:
    """The state of one run (one lock holding)."""

    def __init__(self, mirror: Mirror) -> None:
        self.m = mirror
        self.remote = _Remote(mirror._fetch, mirror._retries, mirror._backoff, mirror._sleep)
        self.reused = 0
        self.staged: list[str] = []  # paths staged by this run, in commit order
        self.local_note = ""
        self.remote_note = ""
        self.new_cp: Checkpoint | None = None
        self._remote_reader: TileHashReader | None = None
        self.proof_tiles: dict[str, bytes] = {}  # remote tiles read for proofs, by path
        self.early = ""  # why the consistency proof failed, if it did

    # -- helpers --------------------------------------------------------------------------

    def notes(self) -> dict[str, str]:
        out = {"remote.checkpoint": self.remote_note}
        if self.local_note:
            out["mirrored.checkpoint"] = self.local_note
        return out

    def refuse(self, what: str, message: str, served: dict[str, bytes] | None = None) -> NoReturn:
        raise MirrorRefused(message, self.m._evidence(what, message, self.notes(), served))

    def remote_reader(self) -> TileHashReader:
        assert self.new_cp is not None
        if self._remote_reader is None:

            def read(tile: Tile) -> bytes:
                data = self.remote.tile(tile)
                self.proof_tiles[tile.path()] = data
                return data

            self._remote_reader = TileHashReader(read, self.new_cp.size)
        return self._remote_reader

    def backed(self, digest: bytes, seq: int) -> bool:
        """Whether the remote's tiles prove ``digest`` leaf ``seq`` of the new signed tree."""
        assert self.new_cp is not None
        size, root = self.new_cp.size, self.new_cp.root
        try:
            proof = inclusion_proof(seq, size, self.remote_reader())
            verify_inclusion(digest, seq, size, proof, root)
        except Error:
            return False
        return True

    def stage(self, path: str, data: bytes) -> None:
        _write_atomic(self.m.staging / path, data, fsync=False)  # flushed at the commit
        self.staged.append(path)

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> MirrorResult:
        m = self.m
        local = m._local_checkpoint()
        if local is not None:
            old, self.local_note = local
        else:
            old = Checkpoint(m.origin, 0, EMPTY_ROOT)
        edge = CompactRange.empty()
        if old.size:
            try:
                edge = CompactRange.load(old.size, m._local_reader(old.size))
            except InvalidInput as exc:  # a local tile of the wrong length
                raise StorageError(f"{m.directory} is damaged: {exc}") from None
            if edge.root() != old.root:
                raise StorageError(
                    f"{m.directory} is damaged: its tiles do not produce the root of its "
                    f"checkpoint for size {old.size}"
                )
        try:
            fetched = self.remote.get("checkpoint")
        except NotFound as exc:
            raise NotFound(
                f"no checkpoint at the remote: {exc} (is the URL the log's prefix, the one "
                "under which checkpoint and tile/ are served, e.g. https://host/log?)"
            ) from None
        try:
            new, self.remote_note = open_checkpoint(fetched, m.verifier, m.origin)
        except VerificationError as exc:
            raise MirrorRefused(f"the remote checkpoint was refused: {exc}") from None
        self.new_cp = new
        if new.size == 0 and new.root != EMPTY_ROOT:
            raise MirrorRefused(
                "the remote checkpoint was refused: size 0 with a root that is not SHA-256('')"
            )
        m._save_config(**({"url": m.source} if m.source else {}))
        log = str(m.config.get("log", ""))

        if new.size < old.size:
            at = tree_root(new.size, m._local_reader(old.size)) if new.size else EMPTY_ROOT
            how = (
                "its root matches the mirrored tree at that size: an older checkpoint, "
                "perhaps from a stale cache"
                if at == new.root
                else "and its root does NOT match the mirrored tree at that size: a fork"
            )
            self.refuse(
                "rollback",
                f"the remote log rolled back: it serves a checkpoint for size {new.size}, "
                f"the mirror holds size {old.size} ({how})",
            )
        if new.size == old.size:
            if new.root != old.root:
                self.refuse(
                    "fork",
                    f"the remote log forked: its checkpoint for size {new.size} has a different "
                    "root than the one mirrored, both signed by the log key",
                )
            if local is None or fetched != self.local_note.encode("utf-8"):
                # The empty log's first checkpoint, or the same tree in a newer note (e.g.
                # more witness cosignatures): serve that one.
                self._commit_checkpoint(fetched)
            m._save_config(size=new.size, checked=_now())
            return self._result(old.size, new, log, rules=False)

        if old.size:
            self.early = self._consistency(old, new)
            if self.early:
                m.say(f"warning: {self.early}; fetching the entries to find out why")
        catch_up = self._catch_up(old, new, edge, log)
        log, rules_checked, snapshot = catch_up
        self._commit(old.size, new, fetched)
        m._save_config(log=log, size=new.size, checked=_now())
        if snapshot is not None:
            self._save_snapshot(snapshot)
        shutil.rmtree(m.staging, ignore_errors=True)
        return self._result(old.size, new, log, rules=rules_checked)

    def _result(self, old: int, new: Checkpoint, log: str, *, rules: bool) -> MirrorResult:
        return MirrorResult(
            new.origin, old, new.size, self.remote_note, self.remote.count, self.reused, rules, log
        )

    def _consistency(self, old: Checkpoint, new: Checkpoint) -> str:
        """Check an RFC 9162 consistency proof built from the remote's tiles; "" if it
        verifies, else what went wrong."""
        try:
            proof = consistency_proof(old.size, new.size, self.remote_reader())
            verify_consistency(old.size, new.size, proof, old.root, new.root)
        except (VerificationError, InvalidInput, StorageError, NotFound) as exc:
            return (
                f"the remote's tiles do not prove its checkpoint for size {new.size} consistent "
                f"with the one mirrored at size {old.size}: {exc}"
            )
        return ""

    def _bad_proof_tile(self) -> None:
        """The tree verified but the consistency proof did not: name the remote tile that
        differs from the verified tree (this run's staged tiles, or DIR's)."""
        for path, served in self.proof_tiles.items():
            for root in (self.m.staging, self.m.directory):
                with contextlib.suppress(OSError):
                    ours = (root / path).read_bytes()
                    break
            else:
                continue
            if ours != served:
                self.refuse(
                    "tile",
                    f"tile {path} served by the remote differs from the verified tree (it "
                    f"breaks the consistency proof from the mirrored checkpoint): the log serves "
                    "a tile that disagrees with its entries",
                    {path: served},
                )
        self.refuse("inconsistent", self.early)

    # -- catching up -------------------------------------------------------------------------

    def _catch_up(
        self, old: Checkpoint, new: Checkpoint, edge: CompactRange, log: str
    ) -> tuple[str, bool, _RuleSnapshot | None]:
        m = self.m
        local = directory_fetcher(m.directory)

        def read_local(tile: Tile) -> bytes:
            try:
                return local(tile.path())
            except Error as exc:
                raise StorageError(f"{m.directory} is damaged: {exc}") from None

        try:
            builder = _TileBuilder(old.size, read_local)
        except InvalidInput as exc:
            raise StorageError(f"{m.directory} is damaged: {exc}") from None
        # Made as needed (iter_entry_bundles): the first one not served ends the run.
        bundles = iter_entry_bundles(new.size, old.size)
        preloaded: dict[int, _Work] = {}
        if not log and old.size == 0:
            first = self._obtain(EntryBundle(0, min(TILE_WIDTH, new.size)))
            preloaded[0] = first
            log = _classify(first.data, first.bundle, new.origin, m.verifier.name)
        elif not log:  # mirrored before, but the run that did it died before saving its state
            zero = EntryBundle(0, min(TILE_WIDTH, old.size))
            log = _classify(read_local_bundle(m.directory, zero), zero, new.origin, m.verifier.name)
        auditor: Auditor | None = None
        if m.rules and log == "suyuan":
            auditor = self._auditor(old)
        rule_error: list[VerificationError] = []
        hints: dict[str, str] = {}

        def chunks() -> Iterator[tuple[int, list[bytes]]]:
            pending: list[bytes] = []
            pending_start = old.size
            with contextlib.closing(self._works(bundles, preloaded)) as works:
                for work in works:
                    start, leaves = self._verify_bundle(work, old, edge, builder)
                    if auditor is None:
                        if m.progress is not None:
                            m.progress(start + len(leaves), new.size)
                        continue
                    if not pending:
                        pending_start = start
                    pending.extend(leaves)
                    if len(pending) >= CHUNK:
                        hints.update({k: r.vkey for k, r in auditor.state.keys.items()})
                        yield pending_start, pending
                        pending = []
            if pending and auditor is not None:
                hints.update({k: r.vkey for k, r in auditor.state.keys.items()})
                yield pending_start, pending

        if auditor is None:
            for _ in chunks():
                pass
        else:
            count = new.size - old.size
            workers = (
                (m.workers if m.workers is not None else default_workers())
                if (count >= PARALLEL_THRESHOLD)
                else 0
            )
            for decoded in decoded_stream(chunks(), hints, workers):
                if not rule_error:
                    try:
                        auditor.feed(decoded)
                    except VerificationError as exc:
                        rule_error.append(exc)
                if m.progress is not None and (decoded.seq + 1) % TILE_WIDTH == 0:
                    m.progress(decoded.seq + 1, new.size)

        if edge.size != new.size or edge.root() != new.root:
            if self.early:
                self.refuse(
                    "inconsistent",
                    f"the remote log forked: its checkpoint for size {new.size} does not extend "
                    f"the one mirrored at size {old.size} (its entries and tiles agree with each "
                    f"other, but do not make the signed root from the mirrored tree; "
                    f"{self.early})",
                )
            self.refuse(
                "root",
                f"the checkpoint for size {new.size} is not the root of the tree its entry "
                f"bundles and tiles make (entries {old.size}..{new.size - 1} were fetched; the "
                "served tiles agree with them, the signed root does not)",
            )
        for tile, hashes in builder.partial(new.size):
            self._check_tile(tile, hashes)
        if self.early:
            self._bad_proof_tile()
        if rule_error:
            broken = rule_error[0]
            seq = _seq_of(str(broken))
            served = {}
            if seq is not None:
                index = seq // TILE_WIDTH
                bundle = EntryBundle(index, min(TILE_WIDTH, new.size - index * TILE_WIDTH))
                for root in (m.staging, m.directory):
                    with contextlib.suppress(OSError):
                        served[bundle.path()] = (root / bundle.path()).read_bytes()
                        break
            self.refuse(
                "rules",
                f"the log holds an entry that breaks its rules, in the tree its checkpoint for "
                f"size {new.size} signs: {broken}",
                served,
            )
        if m.progress is not None:
            m.progress(new.size, new.size)
        snapshot = None
        if auditor is not None:
            snapshot = _RuleSnapshot(
                new.size,
                new.root,
                auditor.prev,
                auditor.time,
                list(auditor.range.hashes),
                auditor.state,
            )
        return log, auditor is not None, snapshot

    def _obtain(self, bundle: EntryBundle) -> _Work:
        """A bundle's bytes (staging, DIR, or the remote) and the remote's level-0 tile."""
        m = self.m
        data: bytes | None = None
        source = "remote"
        if bundle.is_full:
            for where, root in (("staging", m.staging), ("dir", m.directory)):
                path = root / bundle.path()
                if path.is_file():
                    with contextlib.suppress(OSError):
                        data, source = path.read_bytes(), where
                        break
        if data is None:
            data = self.remote.bundle(bundle)
            if bundle.is_full:
                with contextlib.suppress(Error):
                    decode_bundle(data, bundle.width, bundle.path())
                    _write_atomic(m.staging / bundle.path(), data, fsync=False)  # resumable
        served = self.remote.tile(Tile(0, bundle.index, bundle.width))
        return _Work(bundle, data, source, served)

    def _works(
        self, bundles: Iterable[EntryBundle], preloaded: dict[int, _Work]
    ) -> Generator[_Work, None, None]:
        """The bundles in order, fetched ``prefetch`` ahead on threads."""
        with ThreadPoolExecutor(max_workers=self.m.prefetch) as pool:
            window: deque[Future[_Work]] = deque()
            todo = iter(enumerate(bundles))
            try:
                for _ in range(self.m.prefetch):
                    self._submit(pool, window, todo, preloaded)
                while window:
                    work = window.popleft().result()
                    self._submit(pool, window, todo, preloaded)
                    yield work
            finally:
                for future in window:
                    future.cancel()

    def _submit(
        self,
        pool: ThreadPoolExecutor,
        window: deque[Future[_Work]],
        todo: Iterator[tuple[int, EntryBundle]],
        preloaded: dict[int, _Work],
    ) -> None:
        item = next(todo, None)
        if item is None:
            return
        number, bundle = item
        if number in preloaded:
            done: Future[_Work] = Future()
            done.set_result(preloaded.pop(number))
            window.append(done)
        else:
            window.append(pool.submit(self._obtain, bundle))

    def _verify_bundle(
        self, work: _Work, old: Checkpoint, edge: CompactRange, builder: _TileBuilder
    ) -> tuple[int, list[bytes]]:
        """Check one bundle against the served tile and the mirrored entries; extend the tree."""
        bundle = work.bundle
        first = bundle.index * TILE_WIDTH
        tile = Tile(0, bundle.index, bundle.width)
        try:
            served = split_tile(work.served_tile, tile)
        except InvalidInput as exc:
            self.refuse(
                "tile",
                f"tile {tile.path()} served by the remote: {exc}",
                {tile.path(): work.served_tile},
            )
        try:
            leaves = decode_bundle(work.data, bundle.width, bundle.path())
        except VerificationError as exc:
            if work.source != "remote":
                return self._refetch(work, old, edge, builder)
            self.refuse("bundle", str(exc), {bundle.path(): work.data})
        hashes = [leaf_hash(leaf) for leaf in leaves]
        if hashes != served and work.source != "remote":
            return self._refetch(work, old, edge, builder)
        if work.source != "remote":
            self.reused += 1
        keep = max(0, old.size - first)  # entries of this bundle the mirror holds already
        if keep:
            held = next(self.m._local_leaves(first, old.size))[1]
            for i in range(keep):
                if leaves[i] != held[i]:
                    self._differs(bundle, first + i, leaves[i], old, work)
        for i, (computed, claimed) in enumerate(zip(hashes, served, strict=True)):
            if computed != claimed:
                self._blame(bundle, tile, i, computed, claimed, work)
        for digest in hashes[keep:]:
            for done, tile_hashes in builder.add(edge.append(digest)):
                self._check_tile(done, tile_hashes)
        if work.source == "dir":
            pass  # already in place (an interrupted commit put it there)
        elif bundle.is_full:
            if work.source == "remote" and not (self.m.staging / bundle.path()).is_file():
                self.stage(bundle.path(), work.data)
            else:
                self.staged.append(bundle.path())
        else:
            self.stage(bundle.path(), work.data)
        return first + keep, leaves[keep:]

    def _refetch(
        self, work: _Work, old: Checkpoint, edge: CompactRange, builder: _TileBuilder
    ) -> tuple[int, list[bytes]]:
        """A kept copy (staging, or DIR beyond its checkpoint) that does not verify is
        dropped and fetched again from the remote."""
        root = self.m.staging if work.source == "staging" else self.m.directory
        with contextlib.suppress(OSError):
            (root / work.bundle.path()).unlink()
        fresh = _Work(work.bundle, self.remote.bundle(work.bundle), "remote", work.served_tile)
        return self._verify_bundle(fresh, old, edge, builder)

    def _differs(
        self, bundle: EntryBundle, seq: int, leaf: bytes, old: Checkpoint, work: _Work
    ) -> NoReturn:
        """The remote serves another entry at ``seq`` than the one mirrored."""
        assert self.new_cp is not None
        if self.backed(leaf_hash(leaf), seq):
            self.refuse(
                "fork",
                f"the remote log forked: its checkpoint for size {self.new_cp.size} signs another "
                f"entry at seq {seq} than the mirrored checkpoint for size {old.size} (an "
                "inclusion proof from its tiles shows it)",
                {bundle.path(): work.data},
            )
        self.refuse(
            "bundle",
            f"entry bundle {bundle.path()}: seq {seq} is not the entry mirrored at size "
            f"{old.size} (which the mirrored checkpoint signs), nor one the checkpoint for size "
            f"{self.new_cp.size} signs: the entry was altered",
            {bundle.path(): work.data},
        )

    def _blame(
        self, bundle: EntryBundle, tile: Tile, i: int, computed: bytes, claimed: bytes, work: _Work
    ) -> NoReturn:
        """A bundle and its level-0 tile disagree at entry ``i``: find which one the root backs."""
        assert self.new_cp is not None
        size = self.new_cp.size
        seq = bundle.index * TILE_WIDTH + i

        def backed(digest: bytes) -> bool:
            return self.backed(digest, seq)

        if backed(claimed):
            self.refuse(
                "bundle",
                f"entry bundle {bundle.path()}: seq {seq} does not hash to the leaf the checkpoint "
                f"for size {size} signs (the served tile {tile.path()} does): the entry was "
                "altered",
                {bundle.path(): work.data},
            )
        if backed(computed):
            self.refuse(
                "tile",
                f"tile {tile.path()}: hash {i} is not the hash of entry seq {seq}, which the "
                f"checkpoint for size {size} signs: the log serves a tile that disagrees with "
                "its entries",
                {tile.path(): work.served_tile},
            )
        self.refuse(
            "bundle",
            f"entry bundle {bundle.path()} and tile {tile.path()} disagree at seq {seq}, and "
            f"neither matches the checkpoint for size {size}",
            {bundle.path(): work.data, tile.path(): work.served_tile},
        )

    def _check_tile(self, tile: Tile, hashes: list[bytes]) -> None:
        """Stage a computed tile; above level 0 it MUST equal the one the remote serves."""
        data = b"".join(hashes)
        if tile.level:
            served = self.remote.tile(tile)
            if served != data:
                j = next(
                    (i for i in range(tile.width) if served[i * 32 : i * 32 + 32] != hashes[i]),
                    0,
                )
                span = 1 << (tile.level * TILE_HEIGHT)
                start = (tile.index * TILE_WIDTH + j) * span
                self.refuse(
                    "tile",
                    f"tile {tile.path()}: hash {j} (entries {start}..{start + span - 1}) differs "
                    "from the hash of those entries as served in their entry bundles",
                    {tile.path(): served},
                )
        self.stage(tile.path(), data)

    # -- rules --------------------------------------------------------------------------------

    def _auditor(self, old: Checkpoint) -> Auditor:
        """The rule auditor, at the mirrored size: from memory, the snapshot, or a replay."""
        m = self.m
        cached = m._cached
        m._cached = None  # consumed: a failed run MUST NOT leave a half-fed state behind
        if old.size == 0:
            return Auditor(old.origin, [])
        if cached is None or (cached.size, cached.root) != (old.size, old.root):
            cached = self._load_snapshot(old)
        start = cached.size if cached is not None else 0
        auditor = Auditor(old.origin, [old] if start < old.size else [])
        if cached is not None:
            auditor.state = cached.state
            auditor.range = CompactRange(cached.size, cached.edge)
            auditor.prev, auditor.time = cached.prev, cached.time
        if start < old.size:
            m.say(f"replaying the ledger's rules over the mirrored entries {start}..{old.size - 1}")
            count = old.size - start
            workers = (
                (m.workers if m.workers is not None else default_workers())
                if (count >= PARALLEL_THRESHOLD)
                else 0
            )
            hints: dict[str, str] = {}

            def chunks() -> Iterator[tuple[int, list[bytes]]]:
                pending: list[bytes] = []
                pending_start = start
                for first, leaves in m._local_leaves(start, old.size):
                    if not pending:
                        pending_start = first
                    pending.extend(leaves)
                    if len(pending) >= CHUNK:
                        hints.update({k: r.vkey for k, r in auditor.state.keys.items()})
                        yield pending_start, pending
                        pending = []
                if pending:
                    yield pending_start, pending

            try:
                for decoded in decoded_stream(chunks(), hints, workers):
                    auditor.feed(decoded)
                auditor.finish()
            except VerificationError as exc:
                raise StorageError(
                    f"the mirrored entries in {m.directory} break the ledger's rules (were they "
                    f"mirrored with --no-rules?): {exc}"
                ) from None
        return auditor

    def _load_snapshot(self, old: Checkpoint) -> _RuleSnapshot | None:
        path = self.m.state / "rules.pickle"
        try:
            with open(path, "rb") as f:
                loaded = _RestrictedUnpickler(f).load()
        except FileNotFoundError:
            return None
        except Exception as exc:
            self.m.say(f"ignoring {path}: {exc}")
            return None
        if not (isinstance(loaded, dict) and loaded.get("version") == _SNAPSHOT_VERSION):
            return None
        snap = loaded.get("snapshot")
        if not isinstance(snap, _RuleSnapshot) or not 0 < snap.size <= old.size:
            return None
        if snap.state.origin != old.origin:
            return None
        at = (
            old.root
            if snap.size == old.size
            else tree_root(snap.size, self.m._local_reader(old.size))
        )
        return snap if at == snap.root else None

    def _save_snapshot(self, snap: _RuleSnapshot) -> None:
        state = replace(snap.state, _verifiers={})  # parsed keys: a cache, and not picklable
        data = pickle.dumps(
            {"version": _SNAPSHOT_VERSION, "snapshot": replace(snap, state=state)}, protocol=5
        )
        _write_atomic(self.m.state / "rules.pickle", data, fsync=self.m.fsync)
        self.m._cached = snap

    # -- commit -------------------------------------------------------------------------------

    def _commit(self, old_size: int, new: Checkpoint, note: bytes) -> None:
        """Move the verified files into DIR, tell ``on_entries``, then move the checkpoint."""
        m = self.m
        staged = list(dict.fromkeys(self.staged))
        moves: list[tuple[Path, Path]] = []
        for path in staged:
            src, dst = m.staging / path, m.directory / path
            if dst.exists():
                if dst.read_bytes() != src.read_bytes():
                    self.refuse(
                        "fork",
                        f"{dst} already holds a different {path} (left by an interrupted run for "
                        f"another checkpoint): the log signed two inconsistent trees",
                        {path: src.read_bytes()},
                    )
                continue
            moves.append((src, dst))
        for src, dst in moves:
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
        if m.fsync:
            # The checkpoint MUST NOT reach the disk before the tree it names: one sync()
            # flushes every staged file and every rename above (cheaper than an fsync per
            # file and per directory; a killed run is re-verified, not trusted).
            os.sync()
        if m.on_entries is not None:
            for first, leaves in m._local_leaves(old_size, new.size):
                m.on_entries(first, leaves)
        self._commit_checkpoint(note)

    def _commit_checkpoint(self, note: bytes) -> None:
        m = self.m
        vkey = m.directory / "vkey"
        if not vkey.exists():
            _write_atomic(vkey, (m.verifier.vkey + "\n").encode(), fsync=m.fsync)
        _write_atomic(m.directory / "checkpoint", note, fsync=m.fsync)  # LAST: the commit point
        if m.fsync:
            _fsync_dir(m.directory)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_local_bundle(directory: Path, bundle: EntryBundle) -> bytes:
    try:
        return (directory / bundle.path()).read_bytes()
    except OSError as exc:
        raise StorageError(f"{directory} is damaged: {exc}") from None


def _classify(data: bytes, bundle: EntryBundle, origin: str, key_name: str) -> str:
    """ "suyuan" if entry 0 is a Suyuan entry of this log (and the key is named after the
    origin), else "opaque"."""
    if key_name != origin:
        return "opaque"
    try:
        leaf = decode_bundle(data, bundle.width, bundle.path())[0]
        entry = decode_entry(leaf)
    except (Error, IndexError):
        return "opaque"
    return "suyuan" if entry.seq == 0 and entry.statement.origin == origin else "opaque"


def _seq_of(message: str) -> int | None:
    """The seq a rule auditor's message starts with (``seq 1234: …``)."""
    head = message.split(":", 1)[0]
    if head.startswith("seq ") and head[4:].isdigit():
        return int(head[4:])
    return None


def mirror_once(
    fetch: Fetcher,
    verifier: Verifier,
    directory: Path,
    *,
    rules: bool = True,
    on_entries: OnEntries | None = None,
    **options: Any,
) -> MirrorResult:
    """One catch-up of ``directory`` with the log behind ``fetch``; see :class:`Mirror`.

    Raises :class:`MirrorRefused` (a VerificationError, with the evidence kept)
    when the remote fails verification, :class:`MirrorBusy` when another run
    holds the directory, ConfigError for an unusable directory, StorageError
    when DIR itself is damaged, and the fetcher's errors when the remote cannot
    be read.  In every failing case DIR's checkpoint and tree are unchanged.
    """
    return Mirror(fetch, verifier, directory, rules=rules, on_entries=on_entries, **options).run()
