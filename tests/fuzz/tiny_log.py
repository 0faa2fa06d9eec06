"""A tiny, fully deterministic Suyuan log for the fuzz targets that read a log's resources.

Fixed Ed25519 keys (from fixed seeds) and fixed times, so the same leaves, tiles, bundles
and checkpoint notes come out on every run: a seed file that names a resource of this log
means the same thing in every replay.  No database: entries are built with
:func:`ledger.entry.build_entry` exactly as :class:`ledger.log.Log` sequences them.

``tree(size)`` is the static tlog-tiles tree (``suyuan export``'s layout) of the first
``size`` entries, as ``{path: bytes}``; :func:`serve` turns one into a fetcher in which one
resource may be replaced by fuzzer bytes (a signed checkpoint body, a raw note, a tile or a
bundle).  :func:`check_rows` takes imported spreadsheet rows through the importer's
conversion and the kinds' rules, as if appended after entry 0.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import ledger.domain  # noqa: F401  (registers the domain kinds)
from ledger import canonical
from ledger.checkpoint import Checkpoint
from ledger.entry import build_entry, decode_entry, make_statement, nfc, sign_statement
from ledger.errors import Error, NotFound
from ledger.importer import _split_personal, row_to_body
from ledger.merkle import EMPTY_ROOT, CompactRange, NodeId, leaf_hash
from ledger.note import Signer, sign_note
from ledger.rules import KINDS, RuleState, apply_entry, check_entry
from ledger.tabular import Cell
from ledger.tiles import TILE_HEIGHT, TILE_WIDTH, entry_bundles_for_size, tiles_for_size

ORIGIN = "fuzz.suyuan.example/log"
TIME = "2024-05-01T08:00:00.000000Z"
#: Entries in the full tiny log; the mirror templates hold ``OLD`` of them.
SIZE = 6
OLD = 3


def signer(name: str) -> Signer:
    """A deterministic Ed25519 signer named ``name`` (its seed is a hash of the name)."""
    seed = hashlib.sha256(b"suyuan fuzz key " + name.encode()).digest()
    return Signer(name, Ed25519PrivateKey.from_private_bytes(seed))


LOG = signer(ORIGIN)
ADMIN = signer("admin")
VERIFIER = LOG.verifier


def _leaves() -> list[bytes]:
    statements = [
        (
            "key.registered",
            {"name": "admin", "vkey": ADMIN.verifier.vkey, "role": "admin", "org": "县扶贫办"},
        )
    ]
    statements += [("note", {"text": f"记录 {i} note"}) for i in range(1, SIZE)]
    leaves: list[bytes] = []
    prev = b""
    for seq, (kind, body) in enumerate(statements):
        signed = sign_statement(make_statement(kind, body, ORIGIN, TIME), [ADMIN])
        entry = build_entry(seq, prev, TIME, signed)
        leaves.append(entry.leaf)
        prev = leaf_hash(entry.leaf)
    return leaves


LEAVES = _leaves()


def tree(size: int, leaves: list[bytes] | None = None) -> dict[str, bytes]:
    """The static tlog-tiles tree of the first ``size`` leaves (checkpoint, vkey, tiles)."""
    leaves = (LEAVES if leaves is None else leaves)[:size]
    edge = CompactRange.empty()
    nodes: dict[NodeId, bytes] = {}
    for leaf in leaves:
        for node, digest in edge.append(leaf_hash(leaf)):
            if node[0] % TILE_HEIGHT == 0:
                nodes[node] = digest
    out: dict[str, bytes] = {}
    for bundle in entry_bundles_for_size(size):
        first = bundle.index * TILE_WIDTH
        chunk = leaves[first : first + bundle.width]
        out[bundle.path()] = b"".join(len(x).to_bytes(2, "big") + x for x in chunk)
    for tile in tiles_for_size(size):
        level, first = tile.level * TILE_HEIGHT, tile.index * TILE_WIDTH
        out[tile.path()] = b"".join(nodes[(level, first + i)] for i in range(tile.width))
    root = edge.root() if size else EMPTY_ROOT
    out["checkpoint"] = sign_note(Checkpoint(ORIGIN, size, root).text(), [LOG]).encode()
    out["vkey"] = (VERIFIER.vkey + "\n").encode()
    return out


OLD_TREE = tree(OLD)
NEW_TREE = tree(SIZE)
#: Every resource a fuzz input may replace, in a fixed order (old partial tiles included).
PATHS = sorted(set(NEW_TREE) | set(OLD_TREE))


def replaced(data: bytes) -> dict[str, bytes]:
    """The tree of ``SIZE`` entries with one resource replaced, as ``data`` says.

    ``data[0] & 0x7f`` picks what: 0 — the rest is a checkpoint *text* the log key signs (so
    a mutated body gets past the signature); 1 — the rest is the raw checkpoint note; 2 and
    up — the rest replaces ``PATHS[(mode - 2) % len(PATHS)]``.  (Bit 0x80 is the targets'
    own: see :func:`fresh`.)
    """
    served = {**OLD_TREE, **NEW_TREE}
    if not data:
        return served
    mode, rest = data[0] & 0x7F, data[1:]
    if mode == 0:
        try:
            served["checkpoint"] = sign_note(rest.decode("utf-8"), [LOG]).encode()
        except (Error, UnicodeDecodeError):
            served["checkpoint"] = rest
    elif mode == 1:
        served["checkpoint"] = rest
    else:
        served[PATHS[(mode - 2) % len(PATHS)]] = rest
    return served


Fetch = Callable[[str], bytes]


def fresh(data: bytes) -> bool:
    """Whether the input asks for an empty mirror or database (bit 0x80 of its first byte)
    rather than one holding the first ``OLD`` entries."""
    return bool(data) and bool(data[0] & 0x80)


def fetcher(served: dict[str, bytes]) -> Fetch:
    """A fetcher over ``served``; a missing path is NotFound (as a 404 is)."""

    def fetch(path: str) -> bytes:
        try:
            return served[path]
        except KeyError:
            raise NotFound(f"{path}: 404 Not Found") from None

    return fetch


def checkpoint_seed(size: int, root: bytes, origin: str = ORIGIN) -> bytes:
    """A mode-0 input: a checkpoint text for the log key to sign."""
    return b"\x00" + Checkpoint(origin, size, root).text().encode()


# --- statements from imported rows ------------------------------------------------------------

#: Kinds an import row is tried as (their schemas type the cells: text, integers, yuan, JSON).
IMPORT_KINDS = ("batch.registered", "fund.disbursed", "household.identified", "note")


def rule_state() -> RuleState:
    """A rule state after entry 0 (the admin key registered): what a row is checked against."""
    state = RuleState(origin=ORIGIN)
    entry = decode_entry(LEAVES[0])
    check_entry(entry, state)
    apply_entry(entry, state)
    state.size = 1
    return state


_STATE = rule_state()


def check_rows(rows: list[tuple[int, dict[str, Cell]]]) -> None:
    """Every row through the importer's conversion, the statement format and the kind's rules,
    as ``ledger.importer.build_statements`` does; asserts the invariants of an accepted row.

    Accepted: every text in the statement is NFC, and its canonical bytes parse back to it.
    """
    prev = leaf_hash(LEAVES[0])
    for _line, cells in rows:
        for kind in IMPORT_KINDS:
            spec = KINDS[kind]
            assert spec.schema is not None
            try:
                rest, record = _split_personal(cells, kind)
                body = row_to_body(rest, spec.schema)
                if record is not None:
                    body["commitment"] = "0" * 64
                statement = make_statement(kind, nfc(body), ORIGIN, TIME)
            except Error as exc:
                assert str(exc), repr(exc)
                continue
            canonical_bytes = statement.canonical_bytes
            assert canonical.parse(canonical_bytes) == statement.to_json()
            _all_nfc(statement.to_json())
            entry = build_entry(1, prev, TIME, sign_statement(statement, [ADMIN]))
            try:
                check_entry(entry, _STATE.fork())
            except Error as exc:
                assert str(exc), repr(exc)


def _all_nfc(value: object) -> None:
    if isinstance(value, str):
        assert unicodedata.is_normalized("NFC", value), value
    elif isinstance(value, dict):
        for key, item in value.items():
            _all_nfc(key)
            _all_nfc(item)
    elif isinstance(value, list):
        for item in value:
            _all_nfc(item)
