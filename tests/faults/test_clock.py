"""The clock going backwards: entry times never decrease, checkpoints still sign, verify passes.

The log's time for a commit is ``max(clock, the newest entry's time)``, and the newest
entry's time is in the database (``log_state.last_time``), so the guard holds across
restarts and across processes, not only inside one ``Log``.  Checkpoint times follow
the same rule.  The auditor checks that entry times never decrease
(``ledger.verify.Auditor``), so ``assert_whole_log`` failing would name the entry.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from ledger.checkpoint import verify_checkpoint
from ledger.entry import SignedStatement, format_time, make_statement, sign_statement
from ledger.log import Log
from ledger.note import Signer
from tests.faults.support import Child, Keyed, all_entries, assert_whole_log
from tests.helpers import Ledger


class Clock:
    """A clock the test sets; it records every reading."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment
        self.readings: list[datetime] = []

    def __call__(self) -> datetime:
        self.readings.append(self.moment)
        return self.moment


def notes(
    log: Log, author: Signer, texts: Sequence[str], created: datetime
) -> list[SignedStatement]:
    return [
        sign_statement(
            make_statement("note", {"text": t}, log.origin, format_time(created)), [author]
        )
        for t in texts
    ]


def assert_checkpoint_after(log: Log, entry_time: str) -> None:
    """The newest checkpoint verifies and is dated no earlier than the entries it covers."""
    latest = log.latest_checkpoint()
    verify_checkpoint(latest.note, log.verifier, log.origin)
    assert latest.created >= entry_time, (latest.created, entry_time)


@pytest.mark.slow
def test_clock_jumps_far_ahead_then_back_across_restarts_and_processes(
    keyed: Keyed, children: list[Child]
) -> None:
    ledger = keyed.ledger
    author = keyed.writer
    real = datetime.now(UTC)
    ahead = real + timedelta(days=3650)  # a clock set ten years ahead, then put right
    pinned = format_time(ahead)

    clock = Clock(ahead)
    log = Log.open(ledger.engine, ledger.log_signer, clock=clock)
    first = log.append(notes(log, author, ["ahead 0", "ahead 1"], real))
    assert [e.time for e in first] == [pinned, pinned]
    assert_checkpoint_after(log, pinned)

    clock.moment = real  # put right in the same process: the log stays at the newest time
    same = log.append(notes(log, author, ["put right"], real))
    assert [e.time for e in same] == [pinned]
    assert_checkpoint_after(log, pinned)

    # A restart with the real clock: the newest time comes from the database.
    restarted = Log.open(ledger.engine, ledger.log_signer)
    again = restarted.append(notes(restarted, author, ["restarted"], real))
    assert [e.time for e in again] == [pinned]
    assert_checkpoint_after(restarted, pinned)

    # Another process, with its own (real) clock.
    child = Child(keyed.env, "once", "other process", "3")
    children.append(child)
    child.expect("ready")
    child.say("go")
    line = child.line()
    assert line is not None and line.startswith("ok "), (line, child.why())
    _ok, first_seq, last_seq, child_time = line.split()
    assert child.line() == "done"
    assert child_time == pinned
    assert int(last_seq) - int(first_seq) == 2
    assert_checkpoint_after(restarted, pinned)

    # Time catches up: the log moves on from the pinned time.
    later = ahead + timedelta(seconds=5)
    clock.moment = later
    moved = log.append(notes(log, author, ["caught up"], real))
    assert [e.time for e in moved] == [format_time(later)]

    size = assert_whole_log(ledger.engine, ledger.log_signer)
    times = [e.time for e in all_entries(ledger.engine)]
    assert times[-1] == format_time(later)
    assert times[-8:-1] == [pinned] * 7
    assert size == len(times)


def test_clock_stepping_back_at_random_across_restarts(ledger: Ledger) -> None:
    """Each commit's time is the newest of the clock reading it took and the time before."""
    seed = int.from_bytes(os.urandom(4), "big")
    rnd = random.Random(seed)
    start = datetime.now(UTC)
    created = start - timedelta(days=30)  # authors' statements predate every log time here
    author = ledger.register("alice")
    previous = all_entries(ledger.engine)[-1].time
    moment = start

    def clock() -> datetime:
        nonlocal moment
        moment += timedelta(seconds=rnd.uniform(-3600, 600))  # mostly backwards
        readings.append(moment)
        return moment

    readings: list[datetime] = []
    for restart in range(3):
        log = Log.open(ledger.engine, ledger.log_signer, clock=clock)
        for i in range(5):
            count = rnd.randint(1, 4)
            texts = [f"walk {restart}.{i}.{j}" for j in range(count)]
            before = len(readings)
            entries = log.append(notes(log, author, texts, created))
            taken = readings[before:]
            assert taken, f"seed {seed}: the commit never read the clock"
            times = {e.time for e in entries}
            assert len(times) == 1, f"seed {seed}: one commit, one time: {times}"
            (got,) = times
            assert got in {max(previous, format_time(r)) for r in taken}, (seed, got, previous)
            assert got >= previous
            assert_checkpoint_after(log, got)
            previous = got
    assert any(b < a for a, b in pairwise(readings)), f"seed {seed}: never stepped back"
    assert assert_whole_log(ledger.engine, ledger.log_signer) == len(all_entries(ledger.engine))
