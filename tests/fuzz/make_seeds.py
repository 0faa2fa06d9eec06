"""Write the seed corpora of the log-format fuzz targets from the real code.

    python -m tests.fuzz.make_seeds [TARGET...]

Seeds are valid inputs made with the fixed keys of :mod:`tests.fuzz.fixtures`
(so mutations explore past the signature checks) plus the interesting invalid
ones.  Files are rewritten in place; ``crash-*`` files (crashers the fuzzer
found) are never touched.  The output is deterministic: re-running it changes
nothing.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable

from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.note import format_skey, sign_note
from ledger.tiles import TILE_WIDTH, encode_entry_bundle, tiles_for_size
from ledger.witness import format_add_checkpoint
from tests.fuzz import fixtures as fx
from tests.fuzz.run import corpus_dir
from tests.fuzz.targets import merkle_proof, tile

Seeds = dict[str, bytes]


def _b(text: str) -> bytes:
    return text.encode("utf-8")


def note_seeds() -> Seeds:
    seeds = {name: _b(n) for name, n in fx.note_samples().items()}
    good = fx.note_samples()["note-two-keys"]
    text, _, sigs = good.rpartition("\n\n")
    first = sigs.splitlines()[0]
    seeds.update(
        {
            "bad-no-blank-line": _b(text + "\n" + sigs),
            "bad-no-signature": _b(text + "\n\n"),
            "bad-no-final-newline": _b(good[:-1]),
            "bad-crlf": _b(good.replace("\n", "\r\n")),
            "bad-duplicate-line": _b(good + first + "\n"),
            "bad-hyphen-not-em-dash": _b(good.replace("\u2014", "-")),
            "bad-noncanonical-base64": _b(good[:-3] + good[-3:].replace("=", "") + "\n"),
            "bad-short-signature": _b(text + "\n\n\u2014 k AAAAAA==\n"),
            "bad-name-with-plus": _b(text + "\n\n\u2014 a+b AAAAAAAA\n"),
            "bad-utf8": _b(good)[:8] + b"\xff\xfe" + _b(good)[8:],
            "bad-nul": _b(good.replace("hello", "hel\x00lo", 1)),
            "bad-tampered-text": _b(good.replace("Suyuan", "Suyuen", 1)),
            "unknown-key-only": _b(sign_note("hello\n", [fx.AUTHOR_SIGNER])),
            "bad-101-signatures": _b(
                "t\n\n" + "".join(f"\u2014 k{i} AAAAAAAA\n" for i in range(101))
            ),
        }
    )
    return seeds


def checkpoint_seeds() -> Seeds:
    seeds = {f"size-{n}": _b(fx.checkpoint_note(n)) for n in fx.CHECKPOINT_SIZES}
    seeds["extensions"] = _b(fx.checkpoint_note(8, fx.EXTENSIONS))
    seeds["cosigned"] = _b(fx.cosigned_note(300, other=True))
    good = fx.checkpoint_note(7)
    root = base64.b64encode(fx.ROOTS[7]).decode()
    seeds.update(
        {
            "other-origin": _b(
                sign_checkpoint(Checkpoint(fx.OTHER_SIGNER.name, 7, fx.ROOTS[7]), fx.OTHER_SIGNER)
            ),
            "bad-leading-zero": _b(good.replace("\n7\n", "\n07\n")),
            "bad-size-2-64": _b(f"{fx.ORIGIN}\n{2**64}\n{root}\n"),
            "max-size-body": _b(f"{fx.ORIGIN}\n{2**64 - 1}\n{root}\n"),
            "bad-root-noncanonical": _b(f"{fx.ORIGIN}\n7\n{root[:-2]}B=\n"),
            "bad-root-short": _b(f"{fx.ORIGIN}\n7\n{root[:-4]}\n"),
            "bad-empty-extension": _b(f"{fx.ORIGIN}\n7\n{root}\n\nx\n"),
            "bad-two-lines": _b(f"{fx.ORIGIN}\n7\n"),
            "bad-space-origin": _b(f" {fx.ORIGIN}\n7\n{root}\n"),
            "bad-tampered-size": _b(good.replace("\n7\n", "\n8\n")),
        }
    )
    return seeds


def tile_path_seeds() -> Seeds:
    paths = [
        "tile/0/000", "tile/0/x001/234", "tile/1/x123/x456/789.p/255", "tile/63/999",
        "tile/entries/005.p/3", "tile/entries/x001/000", "tile/00/001", "tile/64/000",
        "tile/0/x000/001", "tile/0/001.p/256", "tile/0/001.p/0", "tile/0/001.p/007",
        "tile/0/1", "tile/0/x1/000", "/tile/0/000", "tile/0/000/", "tile/０/000",
        "tile/entries", "tile/0/001.p", "tile/entries/000.p/1/2",
    ]  # fmt: skip
    seeds = {f"path-{i:02d}": _b(p) for i, p in enumerate(paths)}
    # Found by fuzzing: 1,434+ index elements hit Python's int-conversion digit limit.
    seeds["crash-1500-index-elements"] = _b("tile/0/" + "x001/" * 1500 + "000")
    seeds["index-above-2-64-tree"] = _b("tile/0/x072/x057/x594/x037/x927/936")
    return seeds


def tile_seeds() -> Seeds:
    seeds: Seeds = {}
    for size in (1, 37, 256, 257, 300, 512, fx.TREE_SIZE):
        tiles = tiles_for_size(size)
        for which, t in enumerate(tiles):
            if which in (0, len(tiles) - 1):
                head = (size - 1).to_bytes(2, "big") + bytes([which, size // 3])
                seeds[f"size-{size}-tile-{which}"] = head + tile.genuine_tile(t)
    head = (299).to_bytes(2, "big") + bytes([0, 5])
    seeds["bad-short-body"] = head + tile.genuine_tile(tiles_for_size(300)[0])[:-1]
    seeds["bad-flipped-hash"] = head + b"\x01" + tile.genuine_tile(tiles_for_size(300)[0])[1:]
    return seeds


def _leaves() -> list[bytes]:
    return [fx.entry(seq).leaf for seq in range(3)]


def entry_bundle_seeds() -> Seeds:
    leaves = _leaves()
    bundle = encode_entry_bundle(leaves)
    return {
        "three-leaves": bundle,
        "one-byte-entries": encode_entry_bundle([bytes([i]) for i in range(TILE_WIDTH)]),
        "bad-257-entries": encode_entry_bundle([b"x"] * TILE_WIDTH) + b"\x00\x01x",
        "empty-entries": b"\x00\x00" * 4,
        "bad-truncated-length": bundle + b"\x00",
        "bad-truncated-entry": bundle[:-1],
        "empty": b"",
    }


def canonical_seeds() -> Seeds:
    texts = [
        '{"a":1,"b":[true,false,null],"c":"溯源","d":{"e":-9007199254740991}}',
        '{"\U0001f600":1,"\ufb33":2,"a":"\\u0000\\n\\"\\\\"}',
        '{"b":1,"a":2}', '{ "a" : 1 }', '{"a":1,"a":2}', "[1.5]", "[1e400]", "[-0.0]",
        "[1e20]", "[9007199254740992]", "[NaN]", "[Infinity]", '["\\ud800"]',
        '["\\ud83d\\ude00"]', "[" * 40 + "]" * 40, "[" * 3000, '"e\\u0301"', '"\\u00e9"',
        "0", "-0", "01", '"abc', "[1,]", "\ufeff[]", "[1E2]",
    ]  # fmt: skip
    seeds = {f"json-{i:02d}": _b(t) for i, t in enumerate(texts)}
    seeds["statement"] = fx.signed_statement().statement.canonical()
    seeds["bad-utf8"] = b'["\xc3\x28"]'
    return seeds


def entry_seeds() -> Seeds:
    leaves = _leaves()
    seeds = {f"leaf-{i}": leaf for i, leaf in enumerate(leaves)}
    seeds["leaf-batch"] = fx.entry(9, fx.statement_samples()["batch"]).leaf
    seeds["leaf-fund"] = fx.entry(10, fx.statement_samples()["fund"]).leaf
    value = json.loads(leaves[1])
    seeds["bad-spaces"] = _b(json.dumps(value, ensure_ascii=False, sort_keys=True))
    seeds["bad-ascii-escaped"] = _b(
        json.dumps(value, ensure_ascii=True, sort_keys=True, separators=(",", ":"))
    )
    seeds["bad-unsorted"] = _b(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
    seeds["bad-seq0-prev"] = leaves[1].replace(b'"seq":1', b'"seq":0')
    seeds["bad-float-seq"] = leaves[1].replace(b'"seq":1', b'"seq":1.0')
    seeds["bad-version"] = leaves[1].replace(b'"v":1', b'"v":2')
    seeds["bad-duplicate-v"] = leaves[1][:-1] + b',"v":1}'
    return seeds


def statement_seeds() -> Seeds:
    seeds: Seeds = {}
    for name, signed in fx.statement_samples().items():
        seeds[name] = _b(json.dumps(signed.to_json(), ensure_ascii=False))
    value = fx.signed_statement().to_json()
    value["statement"]["body"]["text"] = "稻谷 grade B"
    seeds["bad-tampered-body"] = _b(json.dumps(value, ensure_ascii=False))
    value = fx.signed_statement().to_json()
    value["signatures"].reverse()
    seeds["bad-unsorted-signatures"] = _b(json.dumps(value))
    value = fx.signed_statement().to_json()
    value["statement"]["body"]["text"] = "e\u0301"
    seeds["bad-not-nfc"] = _b(json.dumps(value, ensure_ascii=False))
    value = fx.signed_statement().to_json()
    value["statement"]["created"] = "2024-02-30T08:00:00Z"
    seeds["bad-date"] = _b(json.dumps(value))
    return seeds


def merkle_proof_seeds() -> Seeds:
    enc = merkle_proof.encode
    seeds: Seeds = {}
    for index, size in ((0, 1), (0, 2), (5, 7), (36, 37), (255, 256), (299, 300), (0, 600)):
        seeds[f"inclusion-{index}-{size}"] = enc(0, index, size, fx.inclusion(index, size))
    for size1, size2 in ((1, 2), (3, 7), (4, 8), (7, 300), (256, 257), (300, 600), (9, 9)):
        seeds[f"consistency-{size1}-{size2}"] = enc(1, size1, size2, fx.consistency(size1, size2))
    huge = 2**64 - 1
    seeds["inclusion-huge-size"] = enc(0, 5, huge, fx.inclusion(5, 7))
    seeds["inclusion-huge-index"] = enc(0, huge - 1, huge, [b"\0" * 32] * 64)
    seeds["consistency-huge"] = enc(1, huge - 1, huge, [b"\0" * 32] * 3)
    seeds["consistency-2-128"] = enc(1, 2**127, 2**128 - 1, [b"\1" * 32] * 130)
    seeds["consistency-from-0"] = enc(1, 0, 7, [])
    # Found by fuzzing: sizes past Python's int-to-str digit limit raised ValueError.
    seeds["crash-inclusion-4400-digit-size"] = enc(0, 10**4400, 10**4400 + 1, [])
    seeds["crash-consistency-4400-digit-size"] = enc(1, 1, 10**4400, [b"\0" * 32])
    seeds["bad-short-item"] = enc(0, 5, 7, fx.inclusion(5, 7))[:-1]
    return seeds


def cosignature_seeds() -> Seeds:
    seeds = {f"cosigned-{n}": _b(fx.cosigned_note(n)) for n in (0, 7, 300)}
    seeds["cosigned-with-other"] = _b(fx.cosigned_note(8, other=True))
    good = fx.cosigned_note(7)
    lines = good.split("\n")
    wit = next(i for i, line in enumerate(lines) if fx.WITNESS_NAME in line)
    name, b64 = lines[wit][2:].split(" ")
    raw = bytearray(base64.b64decode(b64))
    raw[4] = 0x80  # timestamp beyond 2**63-1
    bad = [*lines]
    bad[wit] = f"\u2014 {name} {base64.b64encode(bytes(raw)).decode()}"
    seeds["bad-timestamp-high-bit"] = _b("\n".join(bad))
    raw = bytearray(base64.b64decode(b64))
    raw[11] ^= 1  # timestamp changed: signature fails
    bad[wit] = f"\u2014 {name} {base64.b64encode(bytes(raw)).decode()}"
    seeds["bad-timestamp-changed"] = _b("\n".join(bad))
    bad[wit] = f"\u2014 {name} {base64.b64encode(bytes(raw[:40])).decode()}"
    seeds["bad-short"] = _b("\n".join(bad))
    seeds["log-only"] = _b(fx.checkpoint_note(7))
    return seeds


def vkey_seeds() -> Seeds:
    keys = [
        fx.LOG_VERIFIER.vkey, fx.OTHER_VERIFIER.vkey, fx.WITNESS_VERIFIER.vkey,
        format_skey(fx.OTHER_SIGNER),
        fx.LOG_VERIFIER.vkey.replace("+", "+x", 1),
        fx.LOG_VERIFIER.vkey[:-2] + "A=",
        fx.WITNESS_VERIFIER.vkey.replace("+BA", "+AQ"),
        "PRIVATE+KEY+a+00000000+AQ==",
        "name+0000000+AQ==", "name+", "+00000000+", "名字+00000000+AQ==",
    ]  # fmt: skip
    return {f"key-{i:02d}": _b(k) for i, k in enumerate(keys)}


def witness_request_seeds() -> Seeds:
    fmt = format_add_checkpoint
    held = fx.checkpoint_note(7)
    seeds = {
        "old-0-size-7": fmt(0, [], held),
        "old-7-size-7": fmt(7, [], held),
        "old-7-size-300": fmt(7, fx.consistency(7, 300), fx.checkpoint_note(300)),
        "old-7-size-600-cosigned": fmt(7, fx.consistency(7, 600), fx.cosigned_note(600)),
        "old-0-empty-tree": fmt(0, [], fx.checkpoint_note(0)),
        "stale-old-3": fmt(3, fx.consistency(3, 8), fx.checkpoint_note(8)),
        "bad-proof": fmt(7, [b"\0" * 32] * len(fx.consistency(7, 300)), fx.checkpoint_note(300)),
        "old-beyond-size": fmt(8, [b"\0" * 32], held),
        "other-key": fmt(0, [], sign_note(fx.checkpoint(7).text(), [fx.OTHER_SIGNER])),
        "signed-non-checkpoint": fmt(0, [], sign_note(f"{fx.ORIGIN}\nxx\n", [fx.LOG_SIGNER])),
        "unknown-origin": fmt(
            0, [], sign_checkpoint(Checkpoint("o", 1, fx.ROOTS[1]), fx.signer_named("o"))
        ),
        "63-proof-lines": fmt(7, [b"\0" * 32] * 63, fx.checkpoint_note(300)),
    }
    seeds["bad-64-proof-lines"] = seeds["63-proof-lines"].replace(
        b"old 7\n", b"old 7\n" + b"A" * 43 + b"=\n"
    )
    seeds["bad-old-0-with-proof"] = seeds["old-7-size-300"].replace(b"old 7\n", b"old 0\n")
    seeds["bad-old-leading-zero"] = seeds["old-7-size-7"].replace(b"old 7", b"old 07")
    seeds["bad-no-blank-line"] = b"old 0\n" + _b(held)
    seeds["bad-utf8"] = b"old 0\n\n\xff"
    return seeds


GENERATORS: dict[str, Callable[[], Seeds]] = {
    "note": note_seeds,
    "checkpoint": checkpoint_seeds,
    "tile_path": tile_path_seeds,
    "tile": tile_seeds,
    "entry_bundle": entry_bundle_seeds,
    "canonical": canonical_seeds,
    "entry": entry_seeds,
    "statement": statement_seeds,
    "merkle_proof": merkle_proof_seeds,
    "cosignature": cosignature_seeds,
    "vkey": vkey_seeds,
    "witness_request": witness_request_seeds,
}


def write(name: str) -> int:
    directory = corpus_dir(name)
    directory.mkdir(parents=True, exist_ok=True)
    seeds = GENERATORS[name]()
    for old in directory.iterdir():
        if old.is_file() and not old.name.startswith("crash-") and old.name not in seeds:
            old.unlink()
    for file, data in seeds.items():
        assert len(data) <= 64 * 1024, (name, file, len(data))
        (directory / file).write_bytes(data)
    return len(seeds)


def main(argv: list[str]) -> int:
    for name in argv or sorted(GENERATORS):
        print(f"{name}: {write(name)} seeds", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
