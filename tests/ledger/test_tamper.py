"""Tamper tests: raw SQL on the real database, then `suyuan verify` must name the entry.

Every test builds the same 40-entry log (``build_log``) on SQLite and on
PostgreSQL, edits, deletes, reorders or truncates rows with raw SQL as a
tamperer with database access would, and runs the real ``suyuan verify`` as a
subprocess against the database URL.  It must exit 1 with one line
``FAIL seq N: <what is wrong>`` (or ``FAIL checkpoint for size S: …``) naming
the first bad entry; an untampered log gives exit 0 and ``OK 40 entries``.

Where the tampering breaks the agreement between the stored tree and the
newest signed checkpoint, a writer MUST refuse to start (``Log.open`` runs
the start-up check) and MUST NOT append anything.

Runtime: one ``suyuan verify`` process costs about a second (imports), so
every case runs the real CLI on each engine at least once, and its further
variants (marked ``cli=False``) read the same message from the in-process
audit (``check_ledger``), which is exactly what the CLI prints after ``FAIL``.

The layout of the log (seq: what; ``|`` marks where a checkpoint was signed)::

    0 genesis admin | 1 alice | 2 bob | 3 carol |
    4-11 eight notes by alice | 12 bob | 13 carol | 14-19 six notes by bob |
    20 carol revoked | 21 admin | 22-31 ten notes by alice | 32-35 four by bob |
    36 alice | 37 bob | 38 admin | 39 alice |

so checkpoints exist for sizes 0 1 2 3 4 12 13 14 20 21 22 32 36 37 38 39 40,
and the right edge of the tree is node (5, 0) (seq 0-31) and node (3, 4)
(seq 32-39).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from ledger.entry import (
    SignatureRecord,
    SignedStatement,
    build_entry,
    decode_entry,
    format_time,
    make_statement,
    parse_time,
    sign_statement,
)
from ledger.errors import Error, StorageError, VerificationError
from ledger.log import Log
from ledger.merkle import leaf_hash
from ledger.note import Signer
from tests.helpers import Ledger, check_ledger, dump, env_for, new_signer, now

SIZE = 40
CHECKPOINT_SIZES = [0, 1, 2, 3, 4, 12, 13, 14, 20, 21, 22, 32, 36, 37, 38, 39, 40]
CLI_TIMEOUT = 120  # seconds; one verify of 40 entries takes about one


# --- the log under attack --------------------------------------------------------------


@dataclass
class Built:
    ledger: Ledger
    alice: Signer
    bob: Signer
    carol: Signer
    tmp: Path


def _seqs(entries: list[Any]) -> list[int]:
    return [e.seq for e in entries]


def build_log(ledger: Ledger, tmp: Path) -> Built:
    """The 40-entry log described in the module docstring (asserting its seqs as it goes)."""
    alice = ledger.register("alice", "producer")
    bob = ledger.register("bob", "inspector")
    carol = ledger.register("carol", "auditor")
    assert _seqs(ledger.notes(8, alice, prefix="alice batch-a")) == list(range(4, 12))
    assert ledger.note("bob single 12", bob).seq == 12
    assert ledger.note("carol single 13", carol).seq == 13
    assert _seqs(ledger.notes(6, bob, prefix="bob batch-b")) == list(range(14, 20))
    revoked = ledger.log.append(
        [
            ledger.statement(
                "key.revoked",
                {"key": carol.verifier.key_id, "reason": "left the co-op"},
                ledger.admin,
            )
        ]
    )
    assert _seqs(revoked) == [20]
    assert ledger.note("admin single 21").seq == 21
    assert _seqs(ledger.notes(10, alice, prefix="alice batch-c")) == list(range(22, 32))
    assert _seqs(ledger.notes(4, bob, prefix="bob batch-d")) == list(range(32, 36))
    for seq, author in ((36, alice), (37, bob), (38, ledger.admin), (39, alice)):
        assert ledger.note(f"single {seq}", author).seq == seq
    assert checkpoint_sizes(ledger) == CHECKPOINT_SIZES
    result = check_ledger(ledger.engine)
    assert (result.size, result.checkpoints) == (SIZE, len(CHECKPOINT_SIZES))
    return Built(ledger, alice, bob, carol, tmp)


@pytest.fixture
def built(ledger: Ledger, tmp_path: Path) -> Built:
    return build_log(ledger, tmp_path)


# --- raw access ------------------------------------------------------------------------


def rows(ledger: Ledger, sql: str, **params: Any) -> list[Any]:
    with ledger.engine.connect() as conn:
        return list(conn.execute(text(sql), params))


def checkpoint_sizes(ledger: Ledger) -> list[int]:
    return [int(r.size) for r in rows(ledger, "SELECT size FROM checkpoints ORDER BY size")]


def leaf_of(ledger: Ledger, seq: int) -> bytes:
    found = rows(ledger, "SELECT leaf FROM entries WHERE seq = :seq", seq=seq)
    assert len(found) == 1, f"no entry {seq}"
    return bytes(found[0].leaf)


def set_leaf(ledger: Ledger, seq: int, leaf: bytes) -> None:
    ledger.execute("UPDATE entries SET leaf = :leaf WHERE seq = :seq", leaf=leaf, seq=seq)


def replace_once(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1, f"{old!r} occurs {data.count(old)} times"
    return data.replace(old, new)


def note_of(ledger: Ledger, size: int) -> str:
    found = rows(ledger, "SELECT note FROM checkpoints WHERE size = :size", size=size)
    assert len(found) == 1
    return str(found[0].note)


def other_b64_char(ch: str) -> str:
    return "B" if ch != "B" else "C"


# --- running the CLI -------------------------------------------------------------------


def suyuan(built: Built, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real CLI against the database (a fresh process, as an auditor would)."""
    return subprocess.run(
        [sys.executable, "-m", "ledger.cli", *args],
        env=env_for(built.tmp / "instance", built.ledger.url),
        cwd=built.tmp,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )


def verify_ok(built: Built, *args: str) -> str:
    result = suyuan(built, "verify", "--quiet", *args)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return result.stdout.splitlines()[0]


def verify_fails(built: Built, *args: str) -> str:
    """Run `suyuan verify`; assert exit 1 with one FAIL line; return that line."""
    result = suyuan(built, "verify", "--quiet", *args)
    output = result.stdout + result.stderr
    assert result.returncode == 1, f"expected exit 1, got {result.returncode}: {output}"
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("FAIL "), output
    return lines[0]


def assert_names(line: str, where: str, *fragments: str) -> None:
    """The FAIL line starts with the place (``seq 17:``) and says what is wrong."""
    assert line.startswith(f"FAIL {where}:"), f"expected 'FAIL {where}: …', got {line!r}"
    for fragment in fragments:
        assert fragment in line, f"expected {fragment!r} in {line!r}"


def fail_line(built: Built, *, cli: bool) -> str:
    """The FAIL line: from a `suyuan verify` process, or from the same audit in-process."""
    return verify_fails(built) if cli else "FAIL " + audit_message(built)


def audit_message(built: Built) -> str:
    """The in-process audit's message (the CLI prints exactly ``FAIL <message>``)."""
    with pytest.raises(VerificationError) as caught:
        check_ledger(built.ledger.engine)
    return str(caught.value)


def assert_writer_refuses(built: Built, match: str) -> None:
    """The start-up check: no writer starts, and nothing gets appended."""
    ledger = built.ledger
    before = dump(ledger.engine)
    with pytest.raises(StorageError, match=match):
        Log.open(ledger.engine, ledger.log_signer)
    # A writer that skipped the start-up check meets the same check (Log._sync) on its
    # first append and writes nothing.  (That it also *raises* is asserted, as an
    # expected failure, in test_writer_without_startup_check_raises.)
    unchecked = Log(ledger.engine, ledger.log.origin, ledger.log.verifier, ledger.log_signer)
    try:
        appended = unchecked.append(
            [ledger.statement("note", {"text": "after tampering"}, ledger.admin)]
        )
    except StorageError as exc:
        assert re.search(match, str(exc)), exc
    else:
        assert appended == []
    assert dump(ledger.engine) == before


# --- the untampered log ------------------------------------------------------------------


def test_untampered_log_verifies(built: Built) -> None:
    saved = built.tmp / "saved.checkpoint"
    assert verify_ok(built, "--save", str(saved)) == f"OK {SIZE} entries"
    assert saved.read_text(encoding="utf-8") == note_of(built.ledger, SIZE)
    assert built.ledger.log.latest_checkpoint().size == SIZE
    Log.open(built.ledger.engine, built.ledger.log_signer)  # a writer starts


# --- 1. one byte of one leaf ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("seq", "old", "new", "fragment", "cli"),
    [
        pytest.param(
            17, b"bob batch-b 3", b"bob batch-b 8", "does not verify", True, id="note-text"
        ),
        pytest.param(30, b'"v":1', b'"v":2', "format version 2", True, id="format-version"),
        pytest.param(2, b"Co-op", b"Co-oq", "does not verify", False, id="registration-org"),
    ],
)
def test_changed_byte_names_the_entry(
    built: Built, seq: int, old: bytes, new: bytes, fragment: str, cli: bool
) -> None:
    ledger = built.ledger
    leaf = leaf_of(ledger, seq)
    tampered = replace_once(leaf, old, new)
    assert sum(a != b for a, b in zip(leaf, tampered, strict=True)) == 1
    set_leaf(ledger, seq, tampered)
    assert_names(fail_line(built, cli=cli), f"seq {seq}", fragment)


def _bump_log_time(built: Built, seq: int) -> None:
    """Move entry ``seq``'s log time 1 µs later: one byte the author signatures do not cover."""
    ledger = built.ledger
    leaf = leaf_of(ledger, seq)
    time = decode_entry(leaf).time
    later = format_time(parse_time(time, log_format=True) + timedelta(microseconds=1))
    assert len(later) == len(time)
    set_leaf(
        ledger, seq, replace_once(leaf, f'"time":"{time}"'.encode(), f'"time":"{later}"'.encode())
    )


# An entry changed just before a signed checkpoint is still reported as the checkpoint:


# Seq 25 is inside the batch 22-31 (all ten share one log time); seq 31 ends it, right
# before the checkpoint for size 32 (1 µs later still precedes seq 32's time).
@pytest.mark.parametrize(
    ("seq", "cli"),
    [
        pytest.param(25, True, id="mid-batch"),
        pytest.param(31, False, id="before-a-checkpoint"),
    ],
)
def test_changed_log_time_names_that_entry(built: Built, seq: int, cli: bool) -> None:
    _bump_log_time(built, seq)
    line = fail_line(built, cli=cli)
    assert_names(line, f"seq {seq}")
    assert len(line) > len(f"FAIL seq {seq}: ") + 20, line  # and says what is wrong


def test_changed_log_time_before_a_checkpoint_is_detected(built: Built) -> None:
    _bump_log_time(built, 31)
    line = fail_line(built, cli=False)
    assert "seq 31" in line, line  # at least within "… at or before seq 31"


# --- 2. a deleted row ---------------------------------------------------------------------


@pytest.mark.parametrize(("seq", "cli"), [(17, True), (1, False)])
def test_deleted_entry_is_named_missing(built: Built, seq: int, cli: bool) -> None:
    built.ledger.execute("DELETE FROM entries WHERE seq = :seq", seq=seq)
    assert_names(fail_line(built, cli=cli), f"seq {seq}", "missing")


# --- 3. two leaves swapped ----------------------------------------------------------------


@pytest.mark.parametrize(("first", "second", "cli"), [(12, 30, True), (5, 6, False)])
def test_swapped_leaves_name_the_first(built: Built, first: int, second: int, cli: bool) -> None:
    ledger = built.ledger
    a, b = leaf_of(ledger, first), leaf_of(ledger, second)
    set_leaf(ledger, first, b)
    set_leaf(ledger, second, a)
    assert_names(fail_line(built, cli=cli), f"seq {first}", f"says it is seq {second}")


# --- 4. truncated and re-appended (tree and checkpoints left alone) ------------------------


def _truncate_and_forge(built: Built, k: int) -> None:
    """Replace entries k.. with as many different, validly signed and chained entries."""
    ledger = built.ledger
    ledger.execute("DELETE FROM entries WHERE seq >= :k", k=k)
    prev = leaf_hash(leaf_of(ledger, k - 1))
    time = now()  # later than every stored log time
    for seq in range(k, SIZE):
        signed = sign_statement(
            make_statement("note", {"text": f"forged {seq}"}, ledger.log.origin, now()),
            [built.alice],
        )
        entry = build_entry(seq, prev, time, signed)
        ledger.execute(
            "INSERT INTO entries (seq, kind, stmt_hash, leaf) VALUES (:seq, :kind, :digest, :leaf)",
            seq=seq,
            kind=entry.kind,
            digest=signed.statement.digest(),
            leaf=entry.leaf,
        )
        prev = leaf_hash(entry.leaf)
    assert rows(ledger, "SELECT count(*) AS n FROM entries")[0].n == SIZE


@pytest.mark.parametrize(
    ("k", "cli"),
    [
        pytest.param(25, True, id="mid-batch"),
        pytest.param(20, False, id="at-a-checkpoint"),
    ],
)
def test_truncated_and_reappended_names_seq_k(built: Built, k: int, cli: bool) -> None:
    _truncate_and_forge(built, k)
    line = fail_line(built, cli=cli)
    assert_names(line, f"seq {k}")
    assert len(line) > len(f"FAIL seq {k}: ") + 20, line  # and says what is wrong


def test_truncated_at_a_checkpoint_is_detected(built: Built) -> None:
    _truncate_and_forge(built, 20)
    line = fail_line(built, cli=False)
    assert "seq 20" in line, line  # at least within "… at or before seq 20"


# --- 5. a full, self-consistent rewrite by the holder of the log key -------------------------


def _rewrite_from(built: Built, k: int, new_count: int) -> int:
    """Cut the log back to size k (a size it signed), with every derived row, and append
    ``new_count`` different entries through an ordinary writer.  Returns the new size."""
    ledger = built.ledger
    last = decode_entry(leaf_of(ledger, k - 1))
    registry_seq = rows(ledger, "SELECT registry_seq FROM log_state")[0].registry_seq
    assert registry_seq == 20 < k  # no key.* entry at or after k: the keys table stays right
    ledger.execute("DELETE FROM entries WHERE seq >= :k", k=k)
    for node in rows(ledger, "SELECT level, idx FROM tree_nodes"):
        if (node.idx + 1) << node.level > k:  # covers some leaf >= k
            ledger.execute(
                "DELETE FROM tree_nodes WHERE level = :level AND idx = :idx",
                level=node.level,
                idx=node.idx,
            )
    ledger.execute("DELETE FROM checkpoints WHERE size > :k", k=k)
    ledger.execute(
        "UPDATE log_state SET size = :k, last_hash = :h, last_time = :t",
        k=k,
        h=last.leaf_hash(),
        t=last.time,
    )
    rewritten = ledger.reopen()  # the start-up check passes: the database is consistent
    rewritten.append(
        [ledger.statement("note", {"text": f"rewritten {i}"}, built.bob) for i in range(new_count)]
    )
    return k + new_count


def test_full_rewrite_passes_alone_but_not_since_a_saved_checkpoint(built: Built) -> None:
    ledger = built.ledger
    # Save the checkpoint as an auditor would, with `suyuan log checkpoint` (`verify --save`
    # is the other way; test_untampered_log_verifies shows both give the stored note).
    printed = suyuan(built, "log", "checkpoint")
    assert printed.returncode == 0, printed.stderr
    old = built.tmp / "old.checkpoint"
    old.write_text(printed.stdout, encoding="utf-8")
    assert printed.stdout == note_of(ledger, SIZE)

    new_size = _rewrite_from(built, 32, 10)

    # The rewritten database is self-consistent, so auditing it alone passes: only a
    # checkpoint saved (or cosigned by witnesses) before the rewrite can catch this.
    assert verify_ok(built) == f"OK {new_size} entries"
    # Control: a saved checkpoint that the new log does extend passes --since.
    prefix = built.tmp / "prefix.checkpoint"
    prefix.write_text(note_of(ledger, 32), encoding="utf-8")
    assert verify_ok(built, "--since", str(prefix)) == f"OK {new_size} entries"
    line = verify_fails(built, "--since", str(old))
    assert "does not extend your saved checkpoint of size 40" in line, line


@pytest.mark.parametrize(
    ("new_count", "fragment"),
    [
        pytest.param(8, "does not extend your saved checkpoint of size 40", id="same-size"),
        pytest.param(3, "shrank from your saved size 40 to 35", id="shorter"),
    ],
)
def test_full_rewrite_to_other_sizes_fails_since(
    built: Built, new_count: int, fragment: str
) -> None:
    old = built.tmp / "old.checkpoint"
    old.write_text(note_of(built.ledger, SIZE), encoding="utf-8")  # as a witness kept it
    new_size = _rewrite_from(built, 32, new_count)
    assert check_ledger(built.ledger.engine).size == new_size  # alone: consistent
    assert fragment in verify_fails(built, "--since", str(old))


# --- 6. a replaced signature ----------------------------------------------------------------


def _signature_of(leaf: bytes) -> str:
    found = re.findall(rb'"sig":"([A-Za-z0-9+/=]{88})"', leaf)
    assert len(found) == 1
    return str(found[0].decode("ascii"))


@pytest.mark.parametrize("source", ["random-bytes", "copied-from-another-entry"])
def test_replaced_signature_names_the_entry(built: Built, source: str) -> None:
    ledger = built.ledger
    seq = 26  # a note by alice
    leaf = leaf_of(ledger, seq)
    sig = _signature_of(leaf)
    if source == "random-bytes":
        other = base64.b64encode(os.urandom(64)).decode("ascii")
    else:
        other = _signature_of(leaf_of(ledger, 27))  # alice's signature on another note
    assert other != sig
    set_leaf(ledger, seq, replace_once(leaf, sig.encode(), other.encode()))
    assert_names(
        verify_fails(built),
        f"seq {seq}",
        f"signature by {built.alice.verifier.key_id} does not verify",
    )


# --- 7. an edited checkpoint -------------------------------------------------------------------


def _edit_note_root(note: str) -> str:
    lines = note.split("\n")
    lines[2] = other_b64_char(lines[2][0]) + lines[2][1:]  # still canonical base64
    return "\n".join(lines)


def _edit_note_signature(note: str) -> str:
    body, _, sig_line = note.rstrip("\n").rpartition("\n")
    i = len(sig_line) - 10  # inside the signature bytes, past the key hash
    sig_line = sig_line[:i] + other_b64_char(sig_line[i]) + sig_line[i + 1 :]
    return f"{body}\n{sig_line}\n"


def _edit_checkpoint(ledger: Ledger, size: int, edit: str) -> None:
    note = note_of(ledger, size)
    if edit == "root-column":
        root = bytes(rows(ledger, "SELECT root FROM checkpoints WHERE size = :s", s=size)[0].root)
        ledger.execute(
            "UPDATE checkpoints SET root = :root WHERE size = :size",
            root=hashlib.sha256(root).digest(),
            size=size,
        )
        return
    edited = _edit_note_root(note) if edit == "note-root" else _edit_note_signature(note)
    assert edited != note
    ledger.execute("UPDATE checkpoints SET note = :note WHERE size = :size", note=edited, size=size)


CHECKPOINT_EDITS = ["note-root", "note-signature", "root-column"]


@pytest.mark.parametrize("edit", CHECKPOINT_EDITS)
def test_edited_checkpoint_names_its_size(built: Built, edit: str) -> None:
    size = 20  # an older checkpoint: not what a writer extends
    _edit_checkpoint(built.ledger, size, edit)
    line = verify_fails(built)
    assert_names(line, f"checkpoint for size {size}")
    if edit == "root-column":
        assert "different root than the stored columns" in line
    else:
        assert "does not verify" in line, line
    # The start-up check reads only the newest checkpoint: a writer still starts, and
    # verify (above) is what reports the damage.
    Log.open(built.ledger.engine, built.ledger.log_signer)


@pytest.mark.parametrize("edit", CHECKPOINT_EDITS)
def test_edited_newest_checkpoint_stops_the_writer(built: Built, edit: str) -> None:
    _edit_checkpoint(built.ledger, SIZE, edit)
    assert_names(fail_line(built, cli=False), f"checkpoint for size {SIZE}")
    assert_writer_refuses(
        built, "does not hash to the root" if edit == "root-column" else "does not verify"
    )


def test_deleted_newest_checkpoint_stops_the_writer(built: Built) -> None:
    built.ledger.execute("DELETE FROM checkpoints WHERE size = :s", s=SIZE)
    assert_writer_refuses(built, "newest checkpoint is for size 39")


def test_deleted_newest_checkpoint_fails_verify(built: Built) -> None:
    built.ledger.execute("DELETE FROM checkpoints WHERE size = :s", s=SIZE)
    assert "checkpoint" in fail_line(built, cli=False)


def test_writer_without_startup_check_raises(built: Built) -> None:
    ledger = built.ledger
    _edit_checkpoint(ledger, SIZE, "note-root")
    unchecked = Log(ledger.engine, ledger.log.origin, ledger.log.verifier, ledger.log_signer)
    item = ledger.statement("note", {"text": "after tampering"}, ledger.admin)
    with pytest.raises(StorageError, match="newest stored checkpoint does not verify"):
        unchecked.append([item])  # today: returns []


# --- 8. the keys table --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "cli"), [("vkey", True), ("revoked-seq-cleared", True), ("revoked-seq-set", False)]
)
def test_edited_key_row_names_its_registration(built: Built, edit: str, cli: bool) -> None:
    ledger = built.ledger
    if edit == "vkey":
        signer, registered = built.alice, 1
        impostor = new_signer("alice").verifier.vkey  # same name, other key
        ledger.execute(
            "UPDATE keys SET vkey = :vkey WHERE key_id = :key_id",
            vkey=impostor,
            key_id=signer.verifier.key_id,
        )
    elif edit == "revoked-seq-set":
        signer, registered = built.bob, 2
        ledger.execute(
            "UPDATE keys SET revoked_seq = 30 WHERE key_id = :key_id",
            key_id=signer.verifier.key_id,
        )
    else:
        signer, registered = built.carol, 3
        ledger.execute(
            "UPDATE keys SET revoked_seq = NULL WHERE key_id = :key_id",
            key_id=signer.verifier.key_id,
        )
    assert_names(
        fail_line(built, cli=cli),
        f"seq {registered}",
        f"keys table row for {signer.verifier.key_id}",
    )


@pytest.mark.parametrize("edit", ["vkey-swapped-for-an-impostor", "revocation-cleared"])
def test_writer_does_not_trust_an_edited_key_row(built: Built, edit: str) -> None:
    ledger = built.ledger
    if edit == "revocation-cleared":
        ledger.execute(
            "UPDATE keys SET revoked_seq = NULL WHERE key_id = :key_id",
            key_id=built.carol.verifier.key_id,
        )
        item = ledger.statement("note", {"text": "by revoked carol"}, built.carol)
    else:
        impostor = new_signer("alice")
        ledger.execute(
            "UPDATE keys SET vkey = :vkey WHERE key_id = :key_id",
            vkey=impostor.verifier.vkey,
            key_id=built.alice.verifier.key_id,
        )
        # The impostor signs; the signature record claims alice's key id.
        signed = ledger.statement("note", {"text": "in alice's name"}, impostor)
        item = SignedStatement(
            signed.statement,
            (SignatureRecord(built.alice.verifier.key_id, signed.signatures[0].sig),),
        )
    before = dump(ledger.engine)
    try:
        writer = Log.open(ledger.engine, ledger.log_signer)
        appended = writer.append([item])
    except Error:
        appended = []
    assert appended == [], f"appended {[e.seq for e in appended]}"  # today: seq 40
    assert dump(ledger.engine) == before


# --- 9. the kind / statement hash columns -------------------------------------------------------


@pytest.mark.parametrize(("column", "cli"), [("kind", True), ("stmt_hash", False)])
def test_edited_index_column_names_the_entry(built: Built, column: str, cli: bool) -> None:
    seq = 17
    if column == "kind":
        built.ledger.execute("UPDATE entries SET kind = 'key.revoked' WHERE seq = :seq", seq=seq)
    else:
        built.ledger.execute(
            "UPDATE entries SET stmt_hash = :h WHERE seq = :seq",
            h=hashlib.sha256(b"another statement").digest(),
            seq=seq,
        )
    assert_names(fail_line(built, cli=cli), f"seq {seq}", "columns disagree with the entry")


# --- 10. a tree node ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "idx", "right_edge", "cli"),
    [
        pytest.param(0, 17, False, True, id="leaf-17"),
        pytest.param(3, 4, True, True, id="right-edge-32-39"),
        pytest.param(2, 3, False, False, id="inner-12-15"),
        pytest.param(5, 0, True, False, id="right-edge-0-31"),
    ],
)
def test_edited_tree_node_names_its_first_seq(
    built: Built, level: int, idx: int, right_edge: bool, cli: bool
) -> None:
    ledger = built.ledger
    stored = rows(
        ledger, "SELECT hash FROM tree_nodes WHERE level = :l AND idx = :i", l=level, i=idx
    )
    assert len(stored) == 1
    ledger.execute(
        "UPDATE tree_nodes SET hash = :h WHERE level = :l AND idx = :i",
        h=hashlib.sha256(bytes(stored[0].hash)).digest(),
        l=level,
        i=idx,
    )
    line = fail_line(built, cli=cli)
    assert_names(line, f"seq {idx << level}")
    if level > 0:
        assert f"stored tree node (level {level}, index {idx}) is different" in line, line
    else:  # a leaf-level node is compared with the entry's leaf hash as it is read
        assert "tree node" in line or "integrated" in line, line
    if right_edge:
        assert_writer_refuses(built, "does not hash to the root")
    else:
        # The start-up check reads only the right edge; this damage is verify's to find.
        Log.open(ledger.engine, ledger.log_signer)


def test_edited_leaf_node_is_not_blamed_on_the_entry(built: Built) -> None:
    built.ledger.execute(
        "UPDATE tree_nodes SET hash = :h WHERE level = 0 AND idx = 17",
        h=hashlib.sha256(b"not the leaf").digest(),
    )
    line = fail_line(built, cli=False)
    assert_names(line, "seq 17", "tree node")


def test_deleted_tree_node_is_named_missing(built: Built) -> None:
    built.ledger.execute("DELETE FROM tree_nodes WHERE level = 1 AND idx = 9")
    assert_names(fail_line(built, cli=False), "seq 18", "(level 1, index 9) is missing")


# --- 11. log time going backwards -------------------------------------------------------------


def test_log_time_going_backwards_names_the_entry(built: Built) -> None:
    ledger = built.ledger
    seq = 21  # admin's note after the revocation
    before = decode_entry(leaf_of(ledger, seq - 1))
    earlier = format_time(parse_time(before.time, log_format=True) - timedelta(seconds=1))
    # A freshly signed statement, a correct prev link and index columns: only the time lies.
    signed = sign_statement(
        make_statement("note", {"text": "backdated"}, ledger.log.origin, earlier), [ledger.admin]
    )
    entry = build_entry(seq, before.leaf_hash(), earlier, signed)
    ledger.execute(
        "UPDATE entries SET leaf = :leaf, kind = :kind, stmt_hash = :h WHERE seq = :seq",
        leaf=entry.leaf,
        kind=entry.kind,
        h=signed.statement.digest(),
        seq=seq,
    )
    assert_names(
        verify_fails(built), f"seq {seq}", f"log time {earlier} is before entry {seq - 1}'s"
    )
