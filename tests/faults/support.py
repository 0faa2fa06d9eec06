"""Shared pieces of the fault tests: a log whose keys live in files, writer children, checks.

The children are ``tests/faults/_writer.py`` processes that open the log as a
*writer* with the log's own key, like a second ``suyuan serve`` would; they report
every acknowledged append on stdout, one line each, so the parent knows exactly
what each writer was told before it was killed or its database went away.

``append_idempotently`` is the retry rule a writer needs when a commit's outcome is
unknown (the connection died while committing): send the *same* signed statements
again; if the first attempt did land, the log refuses the replay with a
:class:`~ledger.errors.Conflict` naming the seq it holds the statement at, and the
writer reads those entries back and takes them as its answer.
"""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, text

from keys.files import generate_key_file
from ledger.checkpoint import verify_checkpoint
from ledger.db import make_engine, upgrade
from ledger.entry import Entry, SignedStatement, decode_entry
from ledger.errors import Conflict, StorageError
from ledger.log import Log
from ledger.merkle import verify_consistency
from ledger.note import Signer
from tests.helpers import ORIGIN, Ledger, check_ledger, env_for

REPO = Path(__file__).resolve().parents[2]
PASSPHRASE = "test-passphrase"  # what env_for puts in SUYUAN_PASSPHRASE
WAIT = 60.0  # seconds: the bound on any single wait for a child

_REPLAY = re.compile(r"^(?:statement 1|this statement) is already in the log at seq (\d+)")


# --- a log whose keys are files (children load them) ----------------------------------------


@dataclass
class Keyed:
    ledger: Ledger
    writer: Signer  # a registered producer key the children sign with
    env: dict[str, str]  # environment for a child signing as "writer"


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
    env = env_for(
        tmp / "instance",
        url,
        SUYUAN_TEST_LOG_KEY=str(folder / "log.key"),
        SUYUAN_TEST_AUTHOR_KEY=str(folder / "writer.key"),
        SUYUAN_TEST_AUTHOR_NAME="writer",
    )
    return Keyed(ledger, writer, env)


# --- the writer's retry rule ----------------------------------------------------------------


def append_idempotently(
    log: Log,
    items: Sequence[SignedStatement],
    *,
    signatures_verified: bool = False,
    give_up_after: float = WAIT,
    pause: float = 0.05,
    on_retry: Callable[[StorageError], None] | None = None,
) -> tuple[list[int], bool]:
    """Append ``items`` (all or nothing), retrying on :class:`StorageError`.

    Returns the seqs the items are at and whether they were found already in the
    log (a retry of an append whose commit landed although its caller never heard
    so).  A replay is taken as success only after the entries at the seqs the log
    names are read back and hold exactly these statements.
    """
    deadline = time.monotonic() + give_up_after
    while True:
        try:
            entries = log.append(items, signatures_verified=signatures_verified)
            return [e.seq for e in entries], False
        except Conflict as exc:
            match = _REPLAY.match(str(exc))
            if match is None:
                raise
            first = int(match.group(1))
            stored = [decode_entry(leaf) for leaf in log.leaves(first, first + len(items))]
            wanted = [s.statement.digest() for s in items]
            if [e.statement.digest() for e in stored] != wanted:
                raise AssertionError(
                    f"the log says statement 1 is at seq {first}, but seqs {first}.."
                    f"{first + len(items) - 1} do not hold this request: {exc}"
                ) from None
            return [e.seq for e in stored], True
        except StorageError as exc:
            if time.monotonic() > deadline:
                raise
            if on_retry is not None:
                on_retry(exc)
            time.sleep(pause)


# --- children ---------------------------------------------------------------------------------


class Child:
    """A ``tests.faults._writer`` process; its stdout lines arrive, time-stamped, on a queue."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.faults._writer", *args],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[tuple[float, str] | None] = queue.Queue()
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
            self.lines.put((time.monotonic(), line.rstrip("\n")))
        self.lines.put(None)

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def timed_line(self, timeout: float = WAIT) -> tuple[float, str] | None:
        """The next stdout line and when it arrived (None at end of output)."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"child {self.args} said nothing for {timeout} s: {self.why()}"
            ) from None

    def line(self, timeout: float = WAIT) -> str | None:
        got = self.timed_line(timeout)
        return None if got is None else got[1]

    def expect(self, wanted: str) -> None:
        got = self.line()
        assert got == wanted, f"child {self.args}: expected {wanted!r}, got {got!r}: {self.why()}"

    def say(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def rest(self) -> list[str]:
        """Every line still to come, up to end of output (the child has ended or is ending)."""
        out = []
        while (got := self.line()) is not None:
            out.append(got)
        return out

    def why(self) -> str:
        return f"exit {self.proc.poll()}; stderr: {''.join(self.stderr)[-3000:]}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=WAIT)
        for reader in self.readers:  # they end at end of file, now that the child is gone
            reader.join(timeout=WAIT)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


# --- reading the log back ---------------------------------------------------------------------


def all_entries(engine: Engine) -> list[Entry]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT seq, leaf FROM entries ORDER BY seq")).all()
    entries = [decode_entry(bytes(r.leaf)) for r in rows]
    assert [e.seq for e in entries] == [r.seq for r in rows]
    return entries


def note_seqs(engine: Engine) -> dict[str, list[int]]:
    """Note text -> the seqs holding it (a list, so duplicates show)."""
    found: dict[str, list[int]] = defaultdict(list)
    for entry in all_entries(engine):
        if entry.kind == "note":
            found[str(entry.body["text"])].append(entry.seq)
    return dict(found)


def assert_whole_log(engine: Engine, log_signer: Signer) -> int:
    """What recovery must find: a writer can open the log (its start-up check passes),
    the whole-ledger audit passes, seqs run 0..n-1, entry times never decrease, and
    every stored checkpoint is signed and consistent with the newest.  Returns n."""
    Log.open(engine, log_signer)  # runs Log.check_startup; raises if the tree disagrees
    result = check_ledger(engine)
    entries = all_entries(engine)
    assert [e.seq for e in entries] == list(range(result.size)), "a gap in the seqs"
    times = [e.time for e in entries]
    assert times == sorted(times), "log time went backwards"
    log = Log.open(engine)
    latest = log.latest_checkpoint().checkpoint
    assert latest.size == result.size and latest.root == result.root
    stored = log.checkpoints(limit=1_000_000)
    for cp in stored:
        verify_checkpoint(cp.note, log.verifier, log.origin)
        if cp.size:  # dated no earlier than the entries it covers, whatever the clock did
            assert cp.created >= times[cp.size - 1], (cp.size, cp.created, times[cp.size - 1])
        if 0 < cp.size < latest.size:
            proof = log.consistency_proof(cp.size, latest.size)
            verify_consistency(cp.size, latest.size, proof, cp.checkpoint.root, latest.root)
    return result.size
