"""Writer processes for the fault tests: ``python -m tests.faults._writer MODE ...``.

The child opens the log as a *writer* with the log's own key (``Log.open`` runs
the start-up check), like another server process or host would.  Keys come from
passphrase-encrypted key files named in the environment (see
``tests.faults.support.keyed_ledger``); nothing secret is printed.

Protocol: one flushed line each on stdout.  The child says ``ready`` once the log
is open and waits for a line on stdin before it starts.

``batches TAG SIZE[,SIZE...]``
    Endless batches of notes ``"TAG b<b> <j>/<size>"``, batch ``b`` of the ``b``-th
    size (the last one repeats), signed here and appended with
    ``signatures_verified=True``.  Before each append it says ``begin <b>``; after,
    ``ok <b> <first seq> <last seq>``.  The log's clock is this process's own
    (a ``Log(clock=...)`` argument, no hook in the log): the first reading of an
    append is taken inside the transaction, holding the log lock, at the start of
    stage 3 (it says ``locked <b>``); the second just before stage 5 signs the
    checkpoint (``publishing <b>``).  So the parent knows when a SIGKILL lands
    inside the transaction.

``loop TAG SIZE``
    Requests of SIZE notes ``"TAG r<r> <j>/<size>"`` until stdin says ``stop`` (or
    closes), each through :func:`tests.faults.support.append_idempotently`: a
    :class:`StorageError` is retried with the same statements (``retry <r> <error>``),
    a replay of a commit that landed is success.  ``ok <r> <first> <last> appended``
    or ``... replayed``; ``done`` at the end.

``once TAG COUNT``
    One request of COUNT notes ``"TAG <j>"`` with the real clock:
    ``ok <first> <last> <time of the entries>``, then ``done``.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from keys.files import load_private_key
from ledger.db import make_engine
from ledger.entry import SignedStatement, format_time, make_statement, sign_statement
from ledger.errors import StorageError
from ledger.log import Log
from ledger.note import Signer
from tests.faults.support import append_idempotently


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _signer(path_var: str, name: str) -> Signer:
    passphrase = os.environ["SUYUAN_PASSPHRASE"].encode("utf-8")
    return Signer(name, load_private_key(Path(os.environ[path_var]), passphrase))


def _notes(origin: str, author: Signer, texts: Sequence[str]) -> list[SignedStatement]:
    created = format_time(datetime.now(UTC))
    return [
        sign_statement(make_statement("note", {"text": t}, origin, created), [author])
        for t in texts
    ]


class MarkingClock:
    """The real clock, saying on stdout when an append reads it (see the module docstring)."""

    def __init__(self) -> None:
        self.batch = -1
        self.readings = 0

    def arm(self, batch: int) -> None:
        self.batch, self.readings = batch, 0

    def __call__(self) -> datetime:
        self.readings += 1
        if self.readings == 1:
            say(f"locked {self.batch}")
        elif self.readings == 2:
            say(f"publishing {self.batch}")
        return datetime.now(UTC)


def batches(engine_url: str, log_signer: Signer, author: Signer, tag: str, sizes: str) -> None:
    clock = MarkingClock()
    log = Log.open(make_engine(engine_url), log_signer, clock=clock)
    plan = [int(s) for s in sizes.split(",")]

    def make(b: int) -> list[SignedStatement]:
        size = plan[min(b, len(plan) - 1)]
        return _notes(log.origin, author, [f"{tag} b{b} {j}/{size}" for j in range(size)])

    ahead = [make(0), make(1)]  # signed before "ready": the parent times the appends only
    say("ready")
    if not sys.stdin.readline():
        return
    b = 0
    while True:
        clock.arm(b)
        say(f"begin {b}")
        entries = log.append(ahead.pop(0), signatures_verified=True)
        say(f"ok {b} {entries[0].seq} {entries[-1].seq}")
        b += 1
        ahead.append(make(b + 1))


def loop(engine_url: str, log_signer: Signer, author: Signer, tag: str, size: int) -> None:
    log = Log.open(make_engine(engine_url), log_signer)
    stop = threading.Event()
    say("ready")
    if not sys.stdin.readline():
        return

    def watch() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        stop.set()

    threading.Thread(target=watch, daemon=True).start()
    r = 0
    while not stop.is_set():
        items = _notes(log.origin, author, [f"{tag} r{r} {j}/{size}" for j in range(size)])

        def retried(exc: StorageError, r: int = r) -> None:
            say(f"retry {r} {' '.join(str(exc).split())[:300]}")

        seqs, replayed = append_idempotently(log, items, signatures_verified=True, on_retry=retried)
        say(f"ok {r} {seqs[0]} {seqs[-1]} {'replayed' if replayed else 'appended'}")
        r += 1
    log.engine.dispose()
    say("done")


def once(engine_url: str, log_signer: Signer, author: Signer, tag: str, count: int) -> None:
    log = Log.open(make_engine(engine_url), log_signer)
    say("ready")
    if not sys.stdin.readline():
        return
    entries = log.append(_notes(log.origin, author, [f"{tag} {j}" for j in range(count)]))
    say(f"ok {entries[0].seq} {entries[-1].seq} {entries[0].time}")
    log.engine.dispose()
    say("done")


def main(argv: Sequence[str]) -> int:
    mode, tag, arg = argv
    url = os.environ["SUYUAN_DATABASE_URL"]
    log_signer = _signer("SUYUAN_TEST_LOG_KEY", os.environ["SUYUAN_ORIGIN"])
    author = _signer("SUYUAN_TEST_AUTHOR_KEY", os.environ["SUYUAN_TEST_AUTHOR_NAME"])
    if mode == "batches":
        batches(url, log_signer, author, tag, arg)
    elif mode == "loop":
        loop(url, log_signer, author, tag, int(arg))
    elif mode == "once":
        once(url, log_signer, author, tag, int(arg))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
