"""PostgreSQL restarted under load, and the retry of a commit whose outcome is unknown.

1. Three writer *processes* append requests of 20 notes in a loop, retrying a
   :class:`StorageError` with the same signed statements
   (``tests.faults.support.append_idempotently``); the cluster is restarted twice
   under them.  Afterwards every acknowledged request is in the log exactly once,
   whole, at the seqs its writer was told; nothing else is; no gap; the audit
   passes; and every writer had appends acknowledged after each restart.

2. The connection dies *at the COMMIT* (a proxy cuts it — ``tests/faults/pgproxy.py``):
   once after the server stored the transaction, once before.  The writer cannot
   tell which; the error says the outcome is unknown.  Retrying the same signed
   statements is safe both ways: where the first attempt landed the log refuses the
   replay (``Conflict``: already in the log at seq N) and the writer takes those
   entries as its answer; where it did not, the retry appends them.  Never twice.
"""

from __future__ import annotations

import queue
import re
import time
from collections.abc import Callable

import pytest

from ledger.db import make_engine
from ledger.errors import Conflict, StorageError
from ledger.log import Log
from tests.faults.pgproxy import CommitCutter
from tests.faults.support import (
    WAIT,
    Child,
    Keyed,
    append_idempotently,
    assert_whole_log,
    note_seqs,
)
from tests.helpers import Ledger, make_ledger
from tests.pgcluster import PgCluster

WRITERS, REQUEST, RESTARTS = 3, 20, 2
ACKS = 5  # acknowledged requests per writer before the first restart and after each


class Watch:
    """Every line of every child, time-stamped, gathered without blocking on any one."""

    def __init__(self, children: dict[str, Child]) -> None:
        self.children = children
        self.lines: dict[str, list[tuple[float, str]]] = {tag: [] for tag in children}
        self.ended: set[str] = set()

    def poll(self) -> None:
        quiet = True
        for tag, child in self.children.items():
            while tag not in self.ended:
                try:
                    got = child.lines.get_nowait()
                except queue.Empty:
                    break
                quiet = False
                if got is None:
                    self.ended.add(tag)
                else:
                    self.lines[tag].append(got)
        if quiet:
            time.sleep(0.01)

    def acks_after(self, tag: str, moment: float) -> int:
        return sum(1 for at, line in self.lines[tag] if at > moment and line.startswith("ok "))

    def wait(self, done: str, condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + WAIT
        while not condition():
            for tag in self.ended:
                if not self.lines[tag] or self.lines[tag][-1][1] != "done":
                    child = self.children[tag]
                    raise AssertionError(f"writer {tag} ended early: {child.why()}")
            assert time.monotonic() < deadline, f"waiting for {done}: {self.lines}"
            self.poll()


@pytest.mark.postgres
@pytest.mark.slow
def test_postgres_restarted_under_load_by_several_writers(
    pg_cluster: PgCluster,
    keyed_pg: Keyed,
    children: list[Child],
    capsys: pytest.CaptureFixture[str],
) -> None:
    keyed = keyed_pg
    ledger = keyed.ledger
    base = ledger.log.size()
    writers = {f"w{i}": Child(keyed.env, "loop", f"w{i}", str(REQUEST)) for i in range(WRITERS)}
    children.extend(writers.values())
    for child in writers.values():
        child.expect("ready")
    for child in writers.values():
        child.say("go")
    watch = Watch(writers)
    watch.wait("first appends", lambda: all(watch.acks_after(t, 0) >= ACKS for t in writers))
    restarts: list[tuple[float, float]] = []
    for number in range(RESTARTS):
        began = time.monotonic()
        pg_cluster.restart()
        ended = time.monotonic()
        restarts.append((began, ended))
        watch.wait(
            f"appends after restart {number + 1}",
            lambda: all(watch.acks_after(t, ended) >= ACKS for t in writers),  # noqa: B023
        )
    for child in writers.values():
        child.say("stop")
    watch.wait("the writers to finish", lambda: len(watch.ended) == len(writers))
    for child in writers.values():
        assert child.proc.wait(timeout=WAIT) == 0, child.why()
        child.stop()

    texts = note_seqs(ledger.engine)
    total = 0
    retries: dict[str, int] = {}
    kinds = {"lost while committing": 0, "database error": 0, "other": 0}
    replayed = 0
    for tag, lines in watch.lines.items():
        assert lines[-1][1] == "done", lines[-3:]
        oks = [line.split() for _, line in lines if line.startswith("ok ")]
        retry_lines = [line for _, line in lines if line.startswith("retry ")]
        assert len(oks) + len(retry_lines) + 1 == len(lines), [x for _, x in lines]
        retries[tag] = len(retry_lines)
        for line in retry_lines:
            kind = next((k for k in kinds if k in line), "other")
            kinds[kind] += 1
        # Requests were acknowledged one after another, each exactly once.
        assert [int(ok[1]) for ok in oks] == list(range(len(oks))), tag
        for _ok, r, first, last, how in oks:
            seqs = [texts.pop(f"{tag} r{r} {j}/{REQUEST}", None) for j in range(REQUEST)]
            assert seqs == [[int(first) + j] for j in range(REQUEST)], (tag, r, how, seqs)
            assert int(last) == int(first) + REQUEST - 1
            replayed += how == "replayed"
        total += len(oks) * REQUEST
    assert not texts, f"notes no writer was told about: {sorted(texts)[:5]}"
    assert assert_whole_log(ledger.engine, ledger.log_signer) == base + total
    # The restarts were felt: appends failed and were retried (with the same statements).
    assert any(retries.values()), retries
    with capsys.disabled():
        print(
            f"\n{WRITERS} writers, {RESTARTS} restarts "
            f"({', '.join(f'{e - b:.1f} s' for b, e in restarts)}): {total:,} entries in "
            f"{total // REQUEST} requests; retries {retries} by error {kinds}; "
            f"{replayed} requests found already committed on retry"
        )


@pytest.mark.postgres
@pytest.mark.parametrize("cut", ["reply", "request"])
def test_retry_after_a_commit_with_unknown_outcome_does_not_duplicate(
    pg_cluster: PgCluster, pg_url: str, cut: str
) -> None:
    ledger = make_ledger(pg_url)
    alice = ledger.register("alice")
    proxy = CommitCutter(pg_cluster)
    engine = make_engine(proxy.url(pg_url))
    try:
        log = Log.open(engine, ledger.log_signer)
        log.append([ledger.statement("note", {"text": "through the proxy"}, alice)])
        size = log.size()
        items = [ledger.statement("note", {"text": f"cut {j}/3"}, alice) for j in range(3)]

        proxy.arm(cut)
        with pytest.raises(StorageError) as failed:
            log.append(items)
        assert proxy.cut.is_set(), "the proxy never saw the COMMIT"
        message = str(failed.value)
        assert "lost while committing" in message and "unknown" in message, message

        stored = note_seqs(ledger.engine)
        if cut == "reply":  # stored, although the writer was never told
            assert [stored.get(f"cut {j}/3") for j in range(3)] == [[size + j] for j in range(3)]
            with pytest.raises(
                Conflict, match=rf"^statement 1 is already in the log at seq {size};"
            ):
                log.append(items)
        else:
            assert not [t for t in stored if t.startswith("cut ")]

        seqs, replayed = append_idempotently(log, items)
        assert seqs == [size, size + 1, size + 2]
        assert replayed == (cut == "reply")
        stored = note_seqs(ledger.engine)
        assert [stored[f"cut {j}/3"] for j in range(3)] == [[size + j] for j in range(3)]
        assert log.size() == size + 3

        # The same Log carries on.
        (after,) = log.append([ledger.statement("note", {"text": "after the cut"}, alice)])
        assert after.seq == size + 3
        assert assert_whole_log(ledger.engine, ledger.log_signer) == size + 4
    finally:
        engine.dispose()
        proxy.close()
        ledger.engine.dispose()


def test_a_replay_named_by_a_later_statement_is_not_taken_as_success(
    sqlite_ledger: Ledger,
) -> None:
    """The retry rule accepts a Conflict only for *this* request's first statement, and only
    after reading the entries back: a request whose second statement someone else already
    appended is refused, not mistaken for a landed retry."""
    ledger = sqlite_ledger
    taken = ledger.statement("note", {"text": "appended by someone else"}, ledger.admin)
    ledger.log.append([taken])
    fresh = ledger.statement("note", {"text": "new"}, ledger.admin)
    with pytest.raises(Conflict, match=re.escape("statement 2 is already in the log")):
        append_idempotently(ledger.log, [fresh, taken])
    assert "new" not in note_seqs(ledger.engine)
