"""Concurrency and crash tests: many writers, group commit, outages, SIGKILL, a clock stepping back.

Several *processes* write to one log with the same log key (they serialise on
the database lock: SQLite ``BEGIN IMMEDIATE``, PostgreSQL ``FOR UPDATE`` of
``log_state``); several *threads* share one ``Log`` (group commit).  After
every scenario the whole ledger is audited (``check_ledger``) and the
entries are checked against what each writer was told: every acknowledged
append is there, once, in the order its writer made it; nothing refused or
interrupted is there in part.

Child processes are ``tests/ledger/_workers.py``; they load their keys from
encrypted key files.  Every wait is bounded; start lines are barriers (each
child says ``ready`` and waits for ``go``), not sleeps.
"""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from keys.files import generate_key_file
from ledger import canonical
from ledger.checkpoint import verify_checkpoint
from ledger.db import make_engine, upgrade
from ledger.entry import Entry, decode_entry, format_time, make_statement, sign_statement
from ledger.errors import Conflict, RuleViolation, StorageError
from ledger.log import Log
from ledger.merkle import verify_consistency
from ledger.note import Signer
from tests.helpers import ORIGIN, Ledger, check_ledger, env_for, make_ledger, new_signer, now
from tests.pgcluster import PgCluster

REPO = Path(__file__).resolve().parents[2]
PASSPHRASE = "test-passphrase"  # what env_for puts in SUYUAN_PASSPHRASE
WAIT = 60.0  # seconds: the bound on any single wait for a child or a thread


# --- reading the log back -------------------------------------------------------------------


def all_entries(ledger: Ledger) -> list[Entry]:
    with ledger.engine.connect() as conn:
        rows = conn.execute(text("SELECT seq, leaf FROM entries ORDER BY seq")).all()
    entries = [decode_entry(bytes(r.leaf)) for r in rows]
    assert [e.seq for e in entries] == [r.seq for r in rows]
    return entries


def note_seqs(ledger: Ledger) -> dict[str, list[int]]:
    """Note text -> the seqs holding it (a list, so duplicates show)."""
    found: dict[str, list[int]] = defaultdict(list)
    for entry in all_entries(ledger):
        if entry.kind == "note":
            found[str(entry.body["text"])].append(entry.seq)
    return dict(found)


def checkpoint_count(ledger: Ledger) -> int:
    with ledger.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM checkpoints")).scalar_one())


def assert_whole_log(ledger: Ledger) -> int:
    """The audit, gap-free seqs, and every checkpoint signed and consistent with the newest."""
    result = check_ledger(ledger.engine)
    entries = all_entries(ledger)
    assert [e.seq for e in entries] == list(range(result.size))
    times = [e.time for e in entries]
    assert times == sorted(times)
    log = Log.open(ledger.engine)
    latest = log.latest_checkpoint().checkpoint
    assert latest.size == result.size and latest.root == result.root
    for stored in log.checkpoints(limit=1_000_000):
        verify_checkpoint(stored.note, log.verifier, log.origin)
        if 0 < stored.size < latest.size:
            proof = log.consistency_proof(stored.size, latest.size)
            verify_consistency(stored.size, latest.size, proof, stored.checkpoint.root, latest.root)
    return result.size


# --- a log whose keys live in encrypted key files (for child processes) -----------------------


@dataclass
class Keyed:
    ledger: Ledger
    writer: Signer
    env: dict[str, str]  # for a child signing as "writer"
    admin_env: dict[str, str]  # for a child signing as "admin"


def keyed_ledger(url: str, tmp: Path) -> Keyed:
    folder = tmp / "keys"
    passphrase = PASSPHRASE.encode("utf-8")
    log_signer = Signer(ORIGIN, generate_key_file(folder / "log.key", passphrase))
    admin = Signer("admin", generate_key_file(folder / "admin.key", passphrase))
    writer = Signer("writer", generate_key_file(folder / "writer.key", passphrase))
    engine = make_engine(url)
    upgrade(engine)
    log = Log.initialize(engine, log_signer)
    ledger = Ledger(engine, url, log, log_signer, admin)
    for signer, role in ((admin, "admin"), (writer, "producer")):
        body = {"name": signer.name, "vkey": signer.verifier.vkey, "role": role, "org": "Co-op"}
        ledger.log.append([ledger.statement("key.registered", body, admin)])
    ledger.authors["writer"] = writer
    common = env_for(tmp / "instance", url, SUYUAN_TEST_LOG_KEY=str(folder / "log.key"))
    return Keyed(
        ledger,
        writer,
        {
            **common,
            "SUYUAN_TEST_AUTHOR_KEY": str(folder / "writer.key"),
            "SUYUAN_TEST_AUTHOR_NAME": "writer",
        },
        {
            **common,
            "SUYUAN_TEST_AUTHOR_KEY": str(folder / "admin.key"),
            "SUYUAN_TEST_AUTHOR_NAME": "admin",
        },
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def keyed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Keyed]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    made = keyed_ledger(url, tmp_path)
    yield made
    made.ledger.engine.dispose()


class Child:
    """A ``tests.ledger._workers`` process; its stdout lines arrive on a queue."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.ledger._workers", *args],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        self.readers = [
            threading.Thread(target=self._pump, daemon=True),
            threading.Thread(target=self._drain, daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def line(self, timeout: float = WAIT) -> str | None:
        """The next stdout line (None at end of output)."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"child {self.args} said nothing for {timeout} s") from None

    def expect(self, wanted: str) -> None:
        got = self.line()
        assert got == wanted, f"child {self.args}: expected {wanted!r}, got {got!r}: {self.why()}"

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self) -> list[str]:
        """Every remaining line up to ``done``; then the exit status must be 0."""
        out = []
        while (got := self.line()) is not None:
            out.append(got)
        assert self.proc.wait(timeout=WAIT) == 0, self.why()
        assert out and out[-1] == "done", (out[-3:], self.why())
        return out[:-1]

    def why(self) -> str:
        with_code = f"exit {self.proc.poll()}"
        return f"{with_code}; stderr: {''.join(self.stderr)[-2000:]}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=WAIT)
        for reader in self.readers:  # they end at end of file, now that the child is gone
            reader.join(timeout=WAIT)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def children() -> Iterator[list[Child]]:
    """Children started by a test; any still running at the end are killed."""
    started: list[Child] = []
    yield started
    for child in started:
        child.stop()


def start_together(children: list[Child]) -> None:
    """Barrier: every child has opened the log before any is told to go."""
    for child in children:
        child.expect("ready")
    for child in children:
        child.go()


def parse_ok(line: str) -> tuple[str, list[int]]:
    match = re.fullmatch(r"ok (\S+) ([0-9,]+)", line)
    assert match, f"unexpected line {line!r}"
    return match.group(1), [int(s) for s in match.group(2).split(",")]


# --- 1. several processes appending at once ----------------------------------------------------

PROCESSES, PER_PROCESS = 4, 150


@pytest.mark.slow
def test_processes_append_at_once(keyed: Keyed, children: list[Child]) -> None:
    ledger = keyed.ledger
    setup = checkpoint_count(ledger), ledger.log.size()
    tags = [f"proc{p}" for p in range(PROCESSES)]
    children.extend(Child(keyed.env, "append", tag, str(PER_PROCESS)) for tag in tags)
    start_together(children)
    reported: dict[str, list[int]] = {}
    for tag, child in zip(tags, children, strict=True):
        lines = child.finish()
        assert not [x for x in lines if not x.startswith("ok ")], lines
        # 5 batches of 10 and 100 single appends, each acknowledged with its seqs
        assert len(lines) == 105
        reported[tag] = [seq for line in lines for seq in parse_ok(line)[1]]

    size = assert_whole_log(ledger)
    assert size == setup[1] + PROCESSES * PER_PROCESS
    seqs = note_seqs(ledger)
    assert len(seqs) == PROCESSES * PER_PROCESS  # no other notes
    for tag in tags:
        mine = [seqs.pop(f"{tag} {i}") for i in range(PER_PROCESS)]
        assert all(len(s) == 1 for s in mine), f"{tag}: a note appears twice"
        order = [s[0] for s in mine]
        assert order == sorted(order), f"{tag}: its appends are out of order"
        assert order == reported[tag], f"{tag}: the log disagrees with what it was told"
    assert not seqs
    # They did run at once: in seq order the writer changes more often than one after another.
    owner = sorted((seq, tag) for tag in tags for seq in reported[tag])
    switches = sum(a[1] != b[1] for a, b in pairwise(owner))
    assert switches > PROCESSES - 1, f"the {PROCESSES} writers never interleaved"
    # Every commit published one checkpoint, however the processes interleaved.
    assert checkpoint_count(ledger) == setup[0] + PROCESSES * 105


# --- 2. threads sharing one Log: group commit ------------------------------------------------

THREADS, PER_THREAD = 8, 50


def run_threads(count: int, work: Callable[[int], None]) -> None:
    """Run ``work(i)`` in ``count`` threads released together; re-raise any failure."""
    barrier = threading.Barrier(count, timeout=WAIT)
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            barrier.wait()
            work(i)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=WAIT)
        assert not t.is_alive(), "a thread is stuck"
    if errors:
        raise errors[0]


def test_threads_group_commit(ledger: Ledger) -> None:
    authors = [ledger.register(f"author{t}") for t in range(THREADS)]
    before_size, before_cps = ledger.log.size(), checkpoint_count(ledger)
    got: dict[int, list[int]] = {}

    def work(t: int) -> None:
        seqs = []
        for i in range(PER_THREAD):
            (entry,) = ledger.log.append(
                [ledger.statement("note", {"text": f"t{t} {i}"}, authors[t])]
            )
            seqs.append(entry.seq)
        got[t] = seqs

    run_threads(THREADS, work)
    appends = THREADS * PER_THREAD
    assert assert_whole_log(ledger) == before_size + appends
    seqs = note_seqs(ledger)
    for t in range(THREADS):
        mine = [seqs[f"t{t} {i}"] for i in range(PER_THREAD)]
        assert all(len(s) == 1 for s in mine)
        assert [s[0] for s in mine] == got[t] == sorted(got[t])
    commits = checkpoint_count(ledger) - before_cps
    # One checkpoint per commit, and group commit merged requests: observed on 2 cores,
    # SQLite and PostgreSQL alike, 96-100 commits for the 400 appends (ratio ~0.25).
    # Exactly which requests share a commit is asserted in test_group_commit_isolation.
    assert 1 <= commits < appends, f"{commits} commits for {appends} appends: no batching"


# --- 3. group commit isolation ---------------------------------------------------------------


class _CountingQueue(list[Any]):
    """Stands in for ``Log._queue``: releases a semaphore for every request queued."""

    def __init__(self, queued: threading.Semaphore) -> None:
        super().__init__()
        self.queued = queued

    def append(self, item: Any) -> None:
        super().append(item)
        self.queued.release()


class GateClock:
    """A clock whose first reading blocks until ``release`` is set.

    A commit reads the clock inside its transaction, holding the log lock with its
    batch already taken: the gate holds one commit open while the test lines up the next.
    """

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._first = True

    def __call__(self) -> datetime:
        with self._lock:
            first, self._first = self._first, False
        if first:
            self.entered.set()
            if not self.release.wait(WAIT):
                raise TimeoutError("the test never released the gate")
        return datetime.now(UTC)


def test_group_commit_isolation(ledger: Ledger) -> None:
    """A bad request in a group commit fails alone; the others land in that same commit.

    A first append is held inside its commit (``GateClock``) while eight more requests
    queue up behind it; released, the next leader commits all eight as one group.
    White-box in one place: ``Log._queue`` is swapped for a list that counts the
    requests queued, so the test knows (no sleeping) when all eight are waiting.
    """
    alice = ledger.register("alice")
    stranger = new_signer("stranger")  # never registered
    replayed = ledger.statement("note", {"text": "already here"}, alice)
    ledger.log.append([replayed])
    before_size, before_cps = ledger.log.size(), checkpoint_count(ledger)
    gate = GateClock()
    log = Log.open(ledger.engine, ledger.log_signer, clock=gate)

    good = 6
    requests: dict[str, list[Any]] = {
        "holder": [ledger.statement("note", {"text": "holds the commit open"}, alice)]
    }
    for i in range(good):
        requests[f"good{i}"] = [
            ledger.statement("note", {"text": f"good {i} {j}"}, alice) for j in range(2)
        ]
    requests["unknown-key"] = [
        ledger.statement("note", {"text": "valid companion"}, alice),
        ledger.statement("note", {"text": "by a stranger"}, stranger),
    ]
    requests["replay"] = [ledger.statement("note", {"text": "replay companion"}, alice), replayed]
    results: dict[str, list[Entry] | BaseException] = {}

    def work(name: str) -> None:
        try:
            results[name] = log.append(requests[name])
        except Exception as exc:  # judged below
            results[name] = exc

    threads = {name: threading.Thread(target=work, args=(name,), daemon=True) for name in requests}
    threads["holder"].start()
    assert gate.entered.wait(WAIT), "the first append never reached its commit"
    queued = threading.Semaphore(0)
    log._queue = _CountingQueue(queued)  # the holder's batch is taken; count the next ones
    for name, thread in threads.items():
        if name != "holder":
            thread.start()
    for _ in range(len(threads) - 1):
        assert queued.acquire(timeout=WAIT), "a request was never queued (Log._queue renamed?)"
    gate.release.set()
    for thread in threads.values():
        thread.join(timeout=WAIT)
        assert not thread.is_alive()

    bad = results["unknown-key"]
    assert isinstance(bad, RuleViolation) and not isinstance(bad, Conflict), repr(bad)
    assert f"unknown key {stranger.verifier.key_id}" in str(bad)
    replay = results["replay"]
    assert isinstance(replay, Conflict), repr(replay)
    assert "already in the log" in str(replay)
    holder = results["holder"]
    assert isinstance(holder, list) and [e.seq for e in holder] == [before_size]
    landed = [results[f"good{i}"] for i in range(good)]
    assert all(isinstance(r, list) and len(r) == 2 for r in landed), landed
    entries = [e for r in landed if isinstance(r, list) for e in r]
    assert sorted(e.seq for e in entries) == list(
        range(before_size + 1, before_size + 1 + 2 * good)
    )
    assert len({e.time for e in entries}) == 1  # sequenced together ...
    assert checkpoint_count(ledger) == before_cps + 2  # ... in one commit after the holder's
    texts = note_seqs(ledger)
    assert "valid companion" not in texts and "replay companion" not in texts
    assert "by a stranger" not in texts
    assert texts["already here"] == [before_size - 1]
    size = before_size + 1 + 2 * good
    assert assert_whole_log(ledger) == size
    # The writer carries on normally afterwards.
    assert [e.seq for e in log.append([ledger.statement("note", {"text": "after"}, alice)])] == [
        size
    ]


# --- 4. two processes register the same key at once -------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["same-statement", "separately-signed"])
def test_processes_race_to_register_one_key(keyed: Keyed, children: list[Child], mode: str) -> None:
    ledger = keyed.ledger
    newcomer = new_signer("newcomer")
    key_id, vkey = newcomer.verifier.key_id, newcomer.verifier.vkey
    env = dict(keyed.admin_env)
    if mode == "same-statement":
        body = {"name": "newcomer", "vkey": vkey, "role": "producer", "org": "合作社 Co-op"}
        signed = ledger.statement("key.registered", body, ledger.admin)
        env["SUYUAN_TEST_STATEMENT"] = canonical.dumps(signed.to_json()).decode("utf-8")
    size = ledger.log.size()
    children.extend(Child(env, "register", "newcomer", vkey, f"racer{r}") for r in range(2))
    start_together(children)
    outcomes = [child.finish() for child in children]
    assert all(len(o) == 1 for o in outcomes), outcomes
    won = [i for i, (o,) in enumerate(outcomes) if o.startswith("ok ")]
    assert len(won) == 1, outcomes
    winner, loser = won[0], 1 - won[0]
    (refusal,) = outcomes[loser]
    match = re.fullmatch(r"error (\w+) (.*)", refusal)
    assert match and match.group(1) in {"RuleViolation", "Conflict"}, refusal
    assert "already registered" in refusal or "already in the log" in refusal, refusal
    if mode == "separately-signed" and "already registered" in refusal:
        assert key_id in refusal

    assert parse_ok(outcomes[winner][0])[1] == [size, size + 1]
    assert assert_whole_log(ledger) == size + 2
    texts = note_seqs(ledger)
    assert texts[f"racer{winner} companion"] == [size + 1]
    assert f"racer{loser} companion" not in texts  # the loser's request left nothing
    registrations = [
        e for e in all_entries(ledger) if e.kind == "key.registered" and e.body["vkey"] == vkey
    ]
    assert [e.seq for e in registrations] == [size]
    with ledger.engine.connect() as conn:
        rows = conn.execute(text("SELECT key_id FROM keys WHERE vkey = :v"), {"v": vkey}).all()
    assert [r.key_id for r in rows] == [key_id]


# --- 5. PostgreSQL restarts under load -----------------------------------------------------------


@dataclass
class Attempt:
    number: int
    started: float
    seconds: float
    entries: list[Entry] | None = None
    error: BaseException | None = None


@dataclass
class Appender:
    """Appends 3-note requests through one Log until told to stop; records every attempt."""

    ledger: Ledger
    author: Signer
    attempts: list[Attempt] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    successes: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))

    def run(self) -> None:
        number = 0
        while not self.stop.is_set():
            items = [
                self.ledger.statement("note", {"text": f"r{number} {j}/3"}, self.author)
                for j in range(3)
            ]
            start = time.monotonic()
            attempt = Attempt(number, start, 0.0)
            try:
                attempt.entries = self.ledger.log.append(items)
            except BaseException as exc:  # recorded whatever it is; see the test for what counts
                attempt.error = exc
            attempt.seconds = time.monotonic() - start
            self.attempts.append(attempt)
            if attempt.entries:
                self.successes.release()
            number += 1

    def wait_for_successes(self, count: int) -> None:
        for _ in range(count):
            assert self.successes.acquire(timeout=WAIT), "appends did not resume"


@pytest.mark.postgres
@pytest.mark.slow
def test_postgres_restart_under_load(pg_cluster: PgCluster, pg_url: str) -> None:
    ledger = make_ledger(pg_url)
    author = ledger.register("alice")
    appender = Appender(ledger, author)
    thread = threading.Thread(target=appender.run, daemon=True)
    thread.start()
    try:
        appender.wait_for_successes(10)
        restart_began = time.monotonic()
        pg_cluster.restart()
        restart_ended = time.monotonic()
        # Drain the semaphore's count from before the restart, then see appends resume.
        while appender.successes.acquire(blocking=False):
            pass
        appender.wait_for_successes(10)
    finally:
        appender.stop.set()
        thread.join(timeout=WAIT)
    assert not thread.is_alive(), "the appender hung"
    attempts = appender.attempts

    # Not a hang: every attempt, failed or not, came back promptly.
    assert max(a.seconds for a in attempts) < 30, max(a.seconds for a in attempts)
    # The outage was seen: some attempt during the restart did not append.
    failed = [a for a in attempts if not a.entries]
    during = [a for a in failed if restart_began <= a.started <= restart_ended]
    assert during, "no append attempt fell inside the restart"
    # Each failure is the ledger's StorageError, never a raw driver error.
    assert all(isinstance(a.error, StorageError) for a in failed), {type(a.error) for a in failed}
    # The log recovered: appends succeeded after the restart with the same Log object.
    assert any(a.entries and a.started > restart_ended for a in attempts)

    # Every acknowledged append is present, whole, at the seqs it was given; no failed
    # request left a part of itself.
    texts = note_seqs(ledger)
    for a in attempts:
        present = [texts.get(f"r{a.number} {j}/3") for j in range(3)]
        if a.entries:
            assert present == [[e.seq] for e in a.entries], a
        else:
            # An attempt whose COMMIT was lost in flight may have landed: wholly, never in part.
            if any(p is not None for p in present):
                assert all(p is not None and len(p) == 1 for p in present), a
                landed = sorted(p[0] for p in present if p)
                assert landed == list(range(landed[0], landed[0] + 3)), a
    assert assert_whole_log(ledger) >= 2 + 20 * 3
    ledger.engine.dispose()


# --- outages, deterministically: the error an append gives when the database is gone -------


def _unreachable_after_warm_append(tmp_path: Path) -> tuple[Ledger, Path]:
    """A SQLite log whose writer appended once (warm caches); then its file becomes unreachable."""
    folder = tmp_path / "db"
    folder.mkdir()
    ledger = make_ledger(f"sqlite:///{folder / 'ledger.db'}")
    ledger.note("before the outage")
    ledger.engine.dispose()  # drop pooled connections: the next append must connect
    moved = tmp_path / "moved"
    folder.rename(moved)  # "unable to open database file" from now on
    return ledger, moved


def assert_storage_error(log: Log, ledger: Ledger) -> None:
    item = ledger.statement("note", {"text": "during the outage"}, ledger.admin)
    try:
        appended = log.append([item])
    except StorageError:
        return
    except Exception as exc:
        pytest.fail(f"append raised {type(exc).__module__}.{type(exc).__name__}: {exc}")
    pytest.fail(f"append returned {appended!r} without raising")


def test_append_to_unreachable_database_raises_storage_error(tmp_path: Path) -> None:
    ledger, _moved = _unreachable_after_warm_append(tmp_path)
    assert_storage_error(ledger.log, ledger)


def test_append_with_cold_caches_to_unreachable_database_raises_storage_error(
    tmp_path: Path,
) -> None:
    ledger, _moved = _unreachable_after_warm_append(tmp_path)
    cold = Log(ledger.engine, ledger.log.origin, ledger.log.verifier, ledger.log_signer)
    assert_storage_error(cold, ledger)


def test_append_after_outage_recovers(tmp_path: Path) -> None:
    """Whatever a failed append said, nothing was written and the same Log carries on."""
    ledger, moved = _unreachable_after_warm_append(tmp_path)
    for attempt in range(2):
        item = ledger.statement("note", {"text": f"during the outage {attempt}"}, ledger.admin)
        with pytest.raises(StorageError):
            ledger.log.append([item])
    ledger.engine.dispose()
    moved.rename(tmp_path / "db")
    after = ledger.note("after the outage")
    texts = note_seqs(ledger)
    assert not [t for t in texts if t.startswith("during the outage")]
    assert texts["after the outage"] == [after.seq] == [2]
    assert assert_whole_log(ledger) == 3


def test_group_members_get_an_answer_when_the_database_goes_away(tmp_path: Path) -> None:
    """A commit fails as the database becomes unreachable; the group queued behind it must
    each get an error promptly.
    """
    folder = tmp_path / "db"
    folder.mkdir()
    ledger = make_ledger(f"sqlite:///{folder / 'ledger.db'}")
    entered, release = threading.Event(), threading.Event()
    calls = [0]

    def failing_clock() -> datetime:
        calls[0] += 1
        if calls[0] == 1:  # inside the first commit, holding the log lock
            entered.set()
            if not release.wait(WAIT):
                raise TimeoutError("never released")
            ledger.engine.dispose()  # the database goes away ...
            folder.rename(tmp_path / "moved")
            raise RuntimeError("... and this commit fails with it")
        return datetime.now(UTC)

    log = Log.open(ledger.engine, ledger.log_signer, clock=failing_clock)
    results: dict[str, object] = {}

    def work(name: str) -> None:
        try:
            results[name] = log.append([ledger.statement("note", {"text": name}, ledger.admin)])
        except Exception as exc:  # judged below
            results[name] = exc

    threads = {n: threading.Thread(target=work, args=(n,), daemon=True) for n in ("a", "b", "c")}
    threads["a"].start()
    assert entered.wait(WAIT)
    queued = threading.Semaphore(0)
    group = _CountingQueue(queued)
    log._queue = group  # white-box, as in test_group_commit_isolation
    threads["b"].start()
    threads["c"].start()
    for _ in range(2):
        assert queued.acquire(timeout=WAIT)
    release.set()
    stuck = []
    for name, thread in threads.items():
        thread.join(timeout=3)  # nothing left to do but fail: milliseconds when correct
        if thread.is_alive():
            stuck.append(name)
    for request in group:  # free a spinning caller so that it does not outlive the test
        request.done = True
    for thread in threads.values():
        thread.join(timeout=WAIT)
    assert not stuck, f"append() never returned for {stuck}; results: {results}"
    for name in ("a", "b", "c"):
        assert isinstance(results[name], StorageError), (name, results[name])


# --- 6. SIGKILL in the middle of appending ----------------------------------------------------------


@pytest.mark.slow
def test_killed_writer_leaves_whole_batches(keyed: Keyed, children: list[Child]) -> None:
    ledger = keyed.ledger
    size = ledger.log.size()
    child = Child(keyed.env, "crash", "crash")
    children.append(child)
    start_together([child])
    reported: dict[int, list[int]] = {}
    while len(reported) < 25:
        line = child.line()
        assert line is not None, child.why()
        batch, seqs = parse_ok(line)
        reported[int(batch)] = seqs
    child.proc.send_signal(signal.SIGKILL)  # the child is in the middle of its next append
    assert child.proc.wait(timeout=WAIT) == -signal.SIGKILL
    while (line := child.line(timeout=WAIT)) is not None:  # lines already in the pipe
        batch, seqs = parse_ok(line)
        reported[int(batch)] = seqs

    total = assert_whole_log(ledger)
    stored: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for text_, seqs in note_seqs(ledger).items():
        match = re.fullmatch(r"crash b(\d+) (\d+)/(\d+)", text_)
        assert match and len(seqs) == 1, (text_, seqs)
        b, j, n = (int(g) for g in match.groups())
        stored[b].append((j, n, seqs[0]))
    for b, seqs in reported.items():
        assert [s for _, _, s in sorted(stored[b])] == seqs, f"batch {b} as reported"
    for b, parts in stored.items():
        n = b % 7 + 1
        assert sorted(j for j, _, _ in parts) == list(range(n)), f"batch {b} is partial"
        assert {m for _, m, _ in parts} == {n}
        got = sorted(s for _, _, s in parts)
        assert got == list(range(got[0], got[0] + n)), f"batch {b} is not contiguous"
    # Batches were appended one after another: at most the one in flight is unreported.
    assert sorted(stored) == list(range(len(stored)))
    assert len(stored) - len(reported) in (0, 1)
    assert total == size + sum(b % 7 + 1 for b in stored)

    # A new writer starts (the start-up check passes) and appends.
    after = Log.open(ledger.engine, ledger.log_signer)
    statement = sign_statement(
        make_statement("note", {"text": "after the crash"}, after.origin, now()), [keyed.writer]
    )
    assert [e.seq for e in after.append([statement])] == [total]
    assert assert_whole_log(ledger) == total + 1


# --- 7. the clock steps back ----------------------------------------------------------------


class SteppingClock:
    """Returns ``start``, then one minute earlier on every call; ``jump`` moves it ahead."""

    def __init__(self, start: datetime) -> None:
        self.next = start
        self.step = timedelta(minutes=-1)
        self.calls = 0

    def __call__(self) -> datetime:
        self.calls += 1
        value, self.next = self.next, self.next + self.step
        return value

    def jump(self, to: datetime) -> None:
        self.next, self.step = to, timedelta(0)


def test_clock_going_backwards(ledger: Ledger) -> None:
    alice = ledger.register("alice")
    last_before = all_entries(ledger)[-1].time
    start = datetime.now(UTC) + timedelta(seconds=1)
    clock = SteppingClock(start)
    log = Log.open(ledger.engine, ledger.log_signer, clock=clock)
    ledger.log = log
    stepped_back = [ledger.note("one", alice), *ledger.notes(5, alice), ledger.note("two", alice)]
    assert clock.calls >= 6  # the clock was read for every commit, going back each time
    pinned = format_time(start)
    assert pinned > last_before
    assert [e.time for e in stepped_back] == [pinned] * 7  # never before the newest entry
    ahead = start + timedelta(seconds=2)
    clock.jump(ahead)
    moved_on = ledger.note("three", alice)
    assert moved_on.time == format_time(ahead)
    times = [e.time for e in all_entries(ledger)]
    assert times == sorted(times)
    assert assert_whole_log(ledger) == moved_on.seq + 1
