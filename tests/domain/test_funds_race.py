"""Races: two payments competing for the last of an allocation — exactly one wins.

Each race leaves an allocation with room for one of two signed payments (either fits
alone, both do not) and appends them at once: from two threads sharing one ``Log``
(group commit), from two threads with a ``Log`` each, and from two processes (each a
writer opening the log with the log key from its encrypted key file), on SQLite and
PostgreSQL.  Exactly one payment lands, the other gets :class:`Overspend`, the
running sum is exact, the attempt is kept in ``refusals`` and the audit passes.

Run as ``python -m tests.domain.test_funds_race`` this module is the child process:
it opens the log, prints ``ready``, waits for ``go`` on stdin, appends the signed
statement in ``$SUYUAN_TEST_STATEMENT`` and prints ``ok <seq>`` or
``error <Class> <message>``, then ``done``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from keys.files import generate_key_file, load_private_key
from ledger import canonical
from ledger.db import make_engine, upgrade
from ledger.entry import SignedStatement, make_statement, sign_statement, signed_statement_from_json
from ledger.errors import Error, Overspend
from ledger.log import Log
from ledger.note import Signer
from tests.domain.test_funds import World, make_world
from tests.helpers import ORIGIN, Ledger, check_ledger, env_for, new_signer, now

REPO = Path(__file__).resolve().parents[2]
PASSPHRASE = "test-passphrase"  # what env_for puts in SUYUAN_PASSPHRASE
WAIT = 60.0


def keyed_ledger(url: str, folder: Path) -> Ledger:
    """A new log whose log key lives in an encrypted key file (so a child can open it)."""
    log_signer = Signer(ORIGIN, generate_key_file(folder / "log.key", PASSPHRASE.encode()))
    admin = new_signer("admin")
    engine = make_engine(url)
    upgrade(engine)
    log = Log.initialize(engine, log_signer)
    genesis = make_statement(
        "key.registered",
        {"name": "admin", "vkey": admin.verifier.vkey, "role": "admin", "org": "县扶贫办"},
        ORIGIN,
        now(),
    )
    log.append([sign_statement(genesis, [admin])])
    return Ledger(engine, url, log, log_signer, admin)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def keyed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    made = keyed_ledger(url, tmp_path)
    yield made
    made.engine.dispose()


def contenders(world: World, allocation: str, amount: int = 100_000) -> list[SignedStatement]:
    """An allocation with ``amount`` left and two signed payments of ``amount`` each."""
    world.allocate(allocation, amount, programme=f"P-{allocation}")  # no duplicate-rule clash
    return [
        world.ledger.statement(
            "fund.disbursed",
            world.payment(f"{allocation}-{code}", allocation, amount, household=code),
            *world.approvers,
        )
        for code in ("HH-0001", "HH-0002")
    ]


def prepared(ledger: Ledger) -> World:
    world = make_world(ledger)
    world.household("HH-0001")
    world.household("HH-0002")
    world.source(amount=100_000_000)
    return world


def assert_one_winner(world: World, allocation: str, outcomes: list[object]) -> None:
    """One Entry-list, one Overspend; the allocation exactly spent; the attempt recorded."""
    won = [o for o in outcomes if isinstance(o, list)]
    lost = [o for o in outcomes if isinstance(o, Exception)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert isinstance(lost[0], Overspend), repr(lost[0])
    assert f"exceeds what remains of allocation {allocation}: 0 fen" in str(lost[0])
    with world.ledger.engine.connect() as conn:
        disbursed, count = conn.execute(
            text("SELECT disbursed_fen, disbursements FROM fund_allocations WHERE id = :a"),
            {"a": allocation},
        ).one()
        paid = (
            conn.execute(
                text("SELECT id FROM fund_disbursements WHERE allocation = :a"), {"a": allocation}
            )
            .scalars()
            .all()
        )
        refusals = (
            conn.execute(text("SELECT statement FROM refusals WHERE code = 'overspend'"))
            .scalars()
            .all()
        )
    assert (disbursed, count) == (100_000, 1)
    assert len(paid) == 1
    assert any(f'"id":"{allocation}-' in r for r in refusals)


def race_threads(logs: list[Log], items: list[SignedStatement]) -> list[object]:
    barrier = threading.Barrier(len(items), timeout=WAIT)
    outcomes: list[object] = [None] * len(items)

    def work(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = logs[i].append([items[i]])
        except Error as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(items))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=WAIT)
        assert not t.is_alive(), "a thread is stuck"
    return outcomes


def test_threads_race_for_the_last_of_an_allocation(ledger: Ledger) -> None:
    world = prepared(ledger)
    for round_ in range(4):
        shared = f"A-SHARED-{round_}"
        items = contenders(world, shared)
        assert_one_winner(world, shared, race_threads([ledger.log, ledger.log], items))
        own = f"A-OWN-{round_}"
        items = contenders(world, own)
        logs = [Log.open(ledger.engine, ledger.log_signer) for _ in items]
        assert_one_winner(world, own, race_threads(logs, items))
    check_ledger(ledger.engine)


def test_processes_race_for_the_last_of_an_allocation(keyed: Ledger, tmp_path: Path) -> None:
    world = prepared(keyed)
    items = contenders(world, "A-PROC")
    base = env_for(tmp_path / "instance", keyed.url, SUYUAN_TEST_LOG_KEY=str(tmp_path / "log.key"))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.domain.test_funds_race"],
            cwd=REPO,
            env={**base, "SUYUAN_TEST_STATEMENT": canonical.dumps(item.to_json()).decode()},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for item in items
    ]
    try:
        for proc in procs:  # barrier: both have opened the log before either goes
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            assert line == "ready", (line, proc.stderr.read() if proc.stderr else "")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [proc.communicate(timeout=WAIT) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=WAIT)
    lines = []
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        said = out.splitlines()
        assert said[-1] == "done", (said, err)
        lines.append(said[0])
    outcomes: list[object] = [
        [line] if line.startswith("ok ") else Overspend(line.removeprefix("error Overspend "))
        for line in lines
    ]
    assert sorted(line.split()[0] for line in lines) == ["error", "ok"], lines
    assert any(line.startswith("error Overspend ") for line in lines), lines
    assert_one_winner(world, "A-PROC", outcomes)
    check_ledger(keyed.engine)


# --- the child process ------------------------------------------------------------------------


def _child() -> int:
    engine = make_engine(os.environ["SUYUAN_DATABASE_URL"])
    key = load_private_key(Path(os.environ["SUYUAN_TEST_LOG_KEY"]), PASSPHRASE.encode())
    log = Log.open(engine, Signer(os.environ["SUYUAN_ORIGIN"], key))
    item = signed_statement_from_json(canonical.parse(os.environ["SUYUAN_TEST_STATEMENT"]))
    print("ready", flush=True)
    if not sys.stdin.readline():  # the parent gave up
        return 3
    try:
        (entry,) = log.append([item])
        print(f"ok {entry.seq}", flush=True)
    except Error as exc:
        print(f"error {type(exc).__name__} {exc}", flush=True)
    engine.dispose()
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child())
