"""Fixed keys and valid sample inputs for the log-format fuzz targets and their seeds.

Every key comes from a fixed seed, every time is fixed: the same notes,
checkpoints, cosignatures, leaves and proofs come out on every run, so a seed
file means the same thing in every replay and signed seeds stay valid.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.cosignature import CosignatureSigner, CosignatureVerifier
from ledger.entry import Entry, SignedStatement, build_entry, make_statement, sign_statement
from ledger.merkle import (
    CompactRange,
    NodeId,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
)
from ledger.note import Signer, Verifier, sign_note

ORIGIN = "fuzz.suyuan.example/formats"
WITNESS_NAME = "witness.fuzz.example"
COSIGN_TIME = 1_700_000_000
CREATED = "2024-05-01T08:00:00Z"
LOG_TIME = "2024-05-01T08:00:01.000000Z"


def _private(label: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"suyuan fuzz " + label.encode()).digest()
    )


LOG_SIGNER = Signer(ORIGIN, _private("log"))
LOG_VERIFIER: Verifier = LOG_SIGNER.verifier
OTHER_SIGNER = Signer("other.fuzz.example", _private("other"))
OTHER_VERIFIER: Verifier = OTHER_SIGNER.verifier
WITNESS_SIGNER = CosignatureSigner(WITNESS_NAME, _private("witness"), lambda: COSIGN_TIME)
WITNESS_VERIFIER: CosignatureVerifier = WITNESS_SIGNER.verifier
AUTHOR_SIGNER = Signer("coop.fuzz.example", _private("author"))
APPROVER_SIGNER = Signer("bureau.fuzz.example", _private("approver"))
AUTHORS: dict[str, Verifier] = {
    s.verifier.key_id: s.verifier for s in (AUTHOR_SIGNER, APPROVER_SIGNER)
}

# ---------------------------------------------------------------------------
# a small fixed tree


def _leaf(i: int) -> bytes:
    return leaf_hash(b"fuzz leaf %d" % i)


TREE_SIZE = 600  # three level-0 tiles (the last partial) and a level-1 tile
LEAF_HASHES = [_leaf(i) for i in range(TREE_SIZE)]
_NODES: dict[NodeId, bytes] = {}
_range = CompactRange.empty()
ROOTS: list[bytes] = [_range.root()]  # ROOTS[n] = root of the first n leaves
for _h in LEAF_HASHES:
    _NODES.update(_range.append(_h))
    ROOTS.append(_range.root())


def read_nodes(ids: list[NodeId]) -> list[bytes]:
    """The :data:`ledger.merkle.HashReader` of the fixed tree."""
    return [_NODES[node] for node in ids]


def inclusion(index: int, size: int) -> list[bytes]:
    return inclusion_proof(index, size, read_nodes)


def consistency(size1: int, size2: int) -> list[bytes]:
    return consistency_proof(size1, size2, read_nodes)


# ---------------------------------------------------------------------------
# signed formats


def checkpoint(size: int, extensions: tuple[str, ...] = ()) -> Checkpoint:
    """The checkpoint of the fixed tree at ``size`` (0..TREE_SIZE)."""
    return Checkpoint(ORIGIN, size, ROOTS[size], extensions)


def checkpoint_note(size: int, extensions: tuple[str, ...] = ()) -> str:
    return sign_checkpoint(checkpoint(size, extensions), LOG_SIGNER)


def cosigned_note(size: int, *, other: bool = False) -> str:
    """A checkpoint note signed by the log key and the witness (and ``other``)."""
    text = checkpoint(size).text()
    signers = [LOG_SIGNER, WITNESS_SIGNER] + ([OTHER_SIGNER] if other else [])
    return sign_note(text, signers)


def note(text: str, *signers: Signer) -> str:
    return sign_note(text, list(signers) or [LOG_SIGNER])


#: Note texts signed by a fixed key somewhere in the seeds (nothing else can verify).
NOTE_TEXTS = (
    "hello\n",
    "Suyuan 溯源 note\nwith two lines\n",
    "a\n\nb\n",  # a blank line inside the text: the text ends at the LAST blank line
    "x" * 300 + "\n",
)


def note_samples() -> dict[str, str]:
    """Valid signed notes (and checkpoints, which are notes) by name."""
    out = {
        "note-log": note(NOTE_TEXTS[0]),
        "note-two-keys": note(NOTE_TEXTS[1], LOG_SIGNER, OTHER_SIGNER),
        "note-other-only": note(NOTE_TEXTS[1], OTHER_SIGNER),
        "note-inner-blank-line": note(NOTE_TEXTS[2]),
        "note-long-line": note(NOTE_TEXTS[3], OTHER_SIGNER, LOG_SIGNER),
        "checkpoint-cosigned": cosigned_note(7, other=True),
    }
    return out


def signed_texts() -> set[str]:
    """Every text a fixed note key (log or other) signed in :func:`note_samples` and checkpoints."""
    texts = set(NOTE_TEXTS)
    texts.update(checkpoint(n).text() for n in CHECKPOINT_SIZES)
    texts.update(checkpoint(n, EXTENSIONS).text() for n in CHECKPOINT_SIZES)
    return texts


#: Sizes of the fixed tree whose checkpoints appear in seeds; EXTENSIONS on some of them.
CHECKPOINT_SIZES = (0, 1, 7, 8, 256, 300, TREE_SIZE)
EXTENSIONS = ("ext line one", "溯源 extension")


def signed_statement(
    kind: str = "note", body: dict[str, object] | None = None, *, both: bool = True
) -> SignedStatement:
    """A statement signed by the fixed author (and approver, if ``both``)."""
    body = body if body is not None else {"text": "稻谷 grade A"}
    statement = make_statement(kind, body, ORIGIN, CREATED)
    signers = [AUTHOR_SIGNER, APPROVER_SIGNER] if both else [AUTHOR_SIGNER]
    return sign_statement(statement, signers)


def statement_samples() -> dict[str, SignedStatement]:
    """Valid signed statements by name; the only ones the fixed authors ever signed."""
    return {
        "note": signed_statement(),
        "note-one-signer": signed_statement(both=False),
        "note-ref": signed_statement("note", {"text": "checked", "ref": 3}),
        "batch": signed_statement(
            "batch.registered",
            {"gtin": "06901234567892", "lot": "L-2024-01", "qty_kg": 1250, "grade": "一级"},
        ),
        "fund": signed_statement(
            "fund.disbursed",
            {"amount_fen": 12_345_600, "items": [1, [2, {"k": None, "t": True}]], "e": {}},
        ),
    }


def signed_digests() -> set[bytes]:
    return {s.statement.digest() for s in statement_samples().values()}


def entry(seq: int = 1, signed: SignedStatement | None = None) -> Entry:
    prev = b"" if seq == 0 else hashlib.sha256(b"prev %d" % seq).digest()
    return build_entry(seq, prev, LOG_TIME, signed or signed_statement())


def check_refusal(exc: Exception) -> None:
    """A refusal is a clear error: a non-empty message (the fuzz contract)."""
    message = str(exc)
    assert isinstance(message, str) and message.strip(), f"empty refusal message: {exc!r}"


def signer_named(name: str) -> Signer:
    """A deterministic note signer for any key name (e.g. a log the witness does not know)."""
    return Signer(name, _private("named " + name))
