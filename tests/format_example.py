"""The worked example of docs/FORMAT.md, made deterministically from fixed seeds.

``python -m tests.format_example`` prints every value the document quotes;
``tests/test_format_doc.py`` checks that the document still quotes them.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.entry import Entry, build_entry, make_statement, sign_statement
from ledger.merkle import leaf_hash, node_hash
from ledger.note import Signer

ORIGIN = "example.suyuan.cn/log"


def seeded(name: str, label: str) -> Signer:
    seed = hashlib.sha256(f"suyuan FORMAT.md example: {label}".encode()).digest()
    return Signer(name, Ed25519PrivateKey.from_private_bytes(seed))


@dataclass(frozen=True)
class Example:
    log: Signer
    admin: Signer
    coop: Signer
    entries: list[Entry]
    root: bytes
    checkpoint_note: str


def build() -> Example:
    log, admin, coop = seeded(ORIGIN, "log"), seeded("admin", "admin"), seeded("nehe-coop", "coop")
    statements = [
        (
            make_statement(
                "key.registered",
                {
                    "name": "admin",
                    "vkey": admin.verifier.vkey,
                    "role": "admin",
                    "org": "讷河市乡村振兴局",
                },
                ORIGIN,
                "2020-05-11T01:00:00Z",
            ),
            admin,
        ),
        (
            make_statement(
                "key.registered",
                {
                    "name": "nehe-coop",
                    "vkey": coop.verifier.vkey,
                    "role": "producer",
                    "org": "讷河市赤松茸种植合作社",
                },
                ORIGIN,
                "2020-05-11T01:05:00Z",
            ),
            admin,
        ),
        (
            make_statement(
                "note",
                {"text": "第一批赤松茸入冷库 First Stropharia lot in the cold store"},
                ORIGIN,
                "2020-05-11T02:00:00Z",
            ),
            coop,
        ),
    ]
    entries: list[Entry] = []
    prev = b""
    for seq, (statement, signer) in enumerate(statements):
        time = f"2020-05-11T02:00:0{seq}.000000Z"
        entry = build_entry(seq, prev, time, sign_statement(statement, [signer]))
        entries.append(entry)
        prev = leaf_hash(entry.leaf)
    h = [leaf_hash(e.leaf) for e in entries]
    root = node_hash(node_hash(h[0], h[1]), h[2])
    note = sign_checkpoint(Checkpoint(ORIGIN, 3, root), log)
    return Example(log, admin, coop, entries, root, note)


def main() -> None:
    ex = build()
    print("log vkey:", ex.log.verifier.vkey)
    print("admin vkey:", ex.admin.verifier.vkey)
    print("coop vkey:", ex.coop.verifier.vkey)
    for e in ex.entries:
        print(f"--- seq {e.seq}")
        print("statement:", e.statement.canonical().decode())
        print("signed message sha256:", hashlib.sha256(e.statement.signed_message()).hexdigest())
        print("leaf:", e.leaf.decode())
        print("leaf length:", len(e.leaf))
        print("leaf hash:", e.leaf_hash().hex())
    print("root hex:", ex.root.hex())
    print("root b64:", base64.b64encode(ex.root).decode())
    print("checkpoint:")
    print(ex.checkpoint_note, end="")


if __name__ == "__main__":
    main()
