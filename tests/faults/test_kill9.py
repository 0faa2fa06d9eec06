"""kill -9 of a writer in the middle of a big batch: all or nothing, no gap, recovery verifies.

A child process (``tests/faults/_writer.py batches``) appends batches of 5,000
signed notes.  Its log clock (an ordinary ``Log(clock=...)`` argument) says on
stdout when an append has taken the log lock (stage 3 begins) and when it is
about to sign the checkpoint (stage 5), so the parent can SIGKILL it at chosen
moments *inside* the transaction: just after the lock, a third and two thirds of
the way through sequencing and integration, and at publication/commit — with a
random jitter each time.  After every kill:

* a writer can open the log again (``Log.check_startup``: the stored tree hashes
  to the newest signed checkpoint), and the whole-ledger audit passes;
* seqs are 0..n-1, no gap;
* every batch the child was told was appended is there, at the seqs it was told;
* the batch in flight is there whole (if its commit completed before the kill
  landed) or not at all — never in part;
* appending continues (the next child, and a last append here).

The test asserts that at least one kill landed inside a transaction (the child
had said ``locked`` and the batch is absent), and prints where each one landed.
"""

from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledger.entry import make_statement, sign_statement
from ledger.log import Log
from tests.faults.support import WAIT, Child, Keyed, assert_whole_log, note_seqs
from tests.helpers import now, sqlite_file

BIG = 5000
#: Where to kill: after which marker, and how far into the marker's stage span.
MOMENTS = [
    # First: it needs no measurement, and the stage spans are measured on its batch.
    ("while publishing/committing (stage 5)", "publishing", 0.0),
    ("just after taking the lock (stage 3)", "locked", 0.0),
    ("a third into sequencing/integration", "locked", 1 / 3),
    ("two thirds into sequencing/integration", "locked", 2 / 3),
]
#: Each child first appends (and reports) a small batch, then is killed in a big one.
SIZES = (200, BIG)


@dataclass
class Kill:
    moment: str
    delay: float  # seconds after the marker line arrived
    reached: list[str]  # markers of the killed batch seen before the kill
    landed: bool  # the killed batch is in the log (its commit beat the kill)
    wal_growth: int | None  # SQLite: bytes the WAL grew by, uncommitted, at the kill

    @property
    def inside_transaction(self) -> bool:
        return "locked" in self.reached and not self.landed


def _wal_size(keyed: Keyed) -> int | None:
    if not keyed.ledger.url.startswith("sqlite"):
        return None
    wal = Path(sqlite_file(keyed.ledger.url) + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def _check_batches(
    texts: dict[str, list[int]], acked: dict[tuple[str, int], tuple[int, int, int]]
) -> None:
    """Every acknowledged batch is present once, whole, at the seqs its writer was told."""
    for (tag, b), (size, first, last) in acked.items():
        seqs = [texts.get(f"{tag} b{b} {j}/{size}") for j in range(size)]
        assert seqs == [[first + j] for j in range(size)], f"{tag} batch {b} as acknowledged"
        assert last == first + size - 1


@pytest.mark.slow
def test_kill9_mid_batch_leaves_whole_batches(
    keyed: Keyed, children: list[Child], capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = keyed.ledger
    seed = int.from_bytes(os.urandom(4), "big")
    rnd = random.Random(seed)
    acked: dict[tuple[str, int], tuple[int, int, int]] = {}
    kills: list[Kill] = []
    size = ledger.log.size()
    span = 0.0  # seconds from "locked" to "publishing" in a big batch, measured in cycle 0

    def start(cycle: int) -> Child:
        child = Child(keyed.env, "batches", f"k{cycle}", ",".join(map(str, SIZES)))
        children.append(child)
        return child

    upcoming = start(0)
    for cycle, (moment, marker, fraction) in enumerate(MOMENTS):
        tag, child = f"k{cycle}", upcoming
        child.expect("ready")
        wal_before = _wal_size(keyed)
        child.say("go")
        seen: dict[tuple[str, int], float] = {}
        reached: list[str] = []
        delay = 0.0
        while True:
            got = child.timed_line()
            assert got is not None, f"child ended early: {child.why()}"
            at, line = got
            word, b_text, *rest = line.split()
            b = int(b_text)
            seen[(word, b)] = at
            if word == "ok":
                acked[(tag, b)] = (SIZES[b], int(rest[0]), int(rest[1]))
                wal_before = _wal_size(keyed)
                continue
            if b == 1 and word in ("locked", "publishing"):
                reached.append(word)
                if word == "publishing" and not span:
                    span = at - seen[("locked", 1)]
                if word == marker:
                    # The commit takes milliseconds; sequencing and integration take most of it.
                    jitter = rnd.uniform(0.0, 0.15 * span if marker == "locked" else 0.004)
                    delay = fraction * span + jitter
                    time.sleep(delay)
                    child.proc.send_signal(signal.SIGKILL)
                    break
        assert child.proc.wait(timeout=WAIT) == -signal.SIGKILL
        wal_after = _wal_size(keyed)
        if cycle + 1 < len(MOMENTS):  # the next writer starts while this one's leftovers are judged
            upcoming = start(cycle + 1)
        for line in child.rest():  # lines already in the pipe when it died
            word, b_text, *rest = line.split()
            if word == "ok":
                acked[(tag, int(b_text))] = (SIZES[int(b_text)], int(rest[0]), int(rest[1]))
            elif word in ("locked", "publishing") and int(b_text) == 1:
                reached.append(word)
        child.stop()

        texts = note_seqs(ledger.engine)
        killed = [texts.get(f"{tag} b1 {j}/{BIG}") for j in range(BIG)]
        present = [s for s in killed if s is not None]
        assert len(present) in (0, BIG), f"{moment}: {len(present)} of {BIG} entries landed"
        landed = bool(present)
        if landed:  # whole, once, contiguous, right after the batch before it
            assert all(len(s) == 1 for s in present)
            first = present[0][0]
            assert [s[0] for s in present] == list(range(first, first + BIG))
            assert first == acked[(tag, 0)][2] + 1
            acked[(tag, 1)] = (BIG, first, first + BIG - 1)  # as if it had been told
        _check_batches(texts, acked)
        growth = None if wal_before is None or wal_after is None else wal_after - wal_before
        kills.append(Kill(moment, delay, reached, landed, growth))
        size += sum(s for (t, _b), (s, _f, _l) in acked.items() if t == tag)
        assert assert_whole_log(ledger.engine, ledger.log_signer) == size

    with capsys.disabled():
        print(
            f"\nkill -9 on {ledger.engine.dialect.name} (seed {seed}), batches of {BIG:,}: "
            f"from taking the lock to signing the checkpoint took {span:.3f} s"
        )
        for k in kills:
            where = "inside the transaction" if k.inside_transaction else "after the commit"
            wal = "" if k.wal_growth is None else f"; the WAL had grown by {k.wal_growth:,} B"
            print(f"  {k.moment}: +{k.delay * 1e3:.0f} ms, markers {k.reached}, {where}{wal}")
    inside = [k for k in kills if k.inside_transaction]
    assert inside, f"no kill landed inside a transaction: {kills}"

    # Appending carries on after the last kill, with the same key and the stored state.
    writer = Log.open(ledger.engine, ledger.log_signer)
    statement = sign_statement(
        make_statement("note", {"text": "after the kills"}, writer.origin, now()), [keyed.writer]
    )
    assert [e.seq for e in writer.append([statement])] == [size]
    assert assert_whole_log(ledger.engine, ledger.log_signer) == size + 1
