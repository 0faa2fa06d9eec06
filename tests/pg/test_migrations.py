"""Schema migrations run by several processes at once (every app process migrates on start)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import inspect

from ledger.db import make_engine, upgrade
from tests.helpers import REPO

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PROCESSES = 4
_MIGRATE = (
    "import sys; from ledger.db import make_engine, upgrade; "
    "sys.stdin.readline(); upgrade(make_engine(sys.argv[1]))"
)


def test_concurrent_upgrades_of_a_fresh_database_from_several_processes_all_succeed(
    pg_url: str,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUYUAN_")}
    env["PYTHONPATH"] = str(REPO)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _MIGRATE, pg_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=env,
        )
        for _ in range(PROCESSES)
    ]
    outputs = []
    try:
        for p in processes:  # all imported and waiting: start them together
            assert p.stdin is not None
            p.stdin.write(b"go\n")
            p.stdin.flush()
        for p in processes:
            out, _ = p.communicate(timeout=120)
            outputs.append((p.returncode, out.decode(errors="replace")[-2000:]))
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [code for code, _out in outputs] == [0] * PROCESSES, outputs
    engine = make_engine(pg_url)
    try:
        assert inspect(engine).has_table("log_state")
        upgrade(engine)  # at head: nothing to do
    finally:
        engine.dispose()
