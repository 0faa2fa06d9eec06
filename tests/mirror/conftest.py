"""Logs to mirror, built once per session for every test under tests/mirror/.

* ``logs``: a Suyuan ledger of 700 entries, exported separately at sizes 300,
  500 and 700; and a fork (the same database copied at 300, grown under the
  same log key with other entries) exported at 700 (same size, another root)
  and at 720;
* ``big``: 5,002 entries exported at 2,000 and at 5,002 (worker processes, resuming).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.db import make_engine
from ledger.log import Log
from ledger.static import export
from tests.helpers import make_ledger
from tests.mirror.support import BIG, SIZES, Big, Logs, backup, grow


@pytest.fixture(scope="session")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logs]:
    work = tmp_path_factory.mktemp("mirror-logs")
    made = make_ledger(f"sqlite:///{work / 'original.db'}")
    coop = made.register("coop")
    exports: dict[int, Path] = {}
    for size in SIZES:
        grow(made.log, coop, size)
        if size == 300:
            backup(work / "original.db", work / "fork.db")
        exports[size] = work / f"export-{size}"
        export(made.log, exports[size])
    engine = make_engine(f"sqlite:///{work / 'fork.db'}")
    fork = Log.open(engine, made.log_signer)
    grow(fork, coop, 700, text="rewritten")
    export(fork, work / "fork-700")
    grow(fork, coop, 720, text="rewritten")
    export(fork, work / "fork-720")
    engine.dispose()
    yield Logs(made, coop, exports, work / "fork-700", work / "fork-720")
    made.engine.dispose()


@pytest.fixture(scope="session")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Big]:
    work = tmp_path_factory.mktemp("mirror-big")
    made = make_ledger(f"sqlite:///{work / 'big.db'}")
    coop = made.register("coop")
    exports = {}
    for size in BIG:
        grow(made.log, coop, size, batch=1000)
        exports[size] = work / f"export-{size}"
        export(made.log, exports[size])
    yield Big(made, exports)
    made.engine.dispose()
