"""One run of the mirror (``ledger.mirror.Mirror.run``, ``suyuan mirror``) against a served
log one of whose resources is fuzzer bytes (see ``tests.fuzz.tiny_log.replaced``: a signed
checkpoint text, a raw checkpoint note, a tile or an entry bundle), into a mirror that holds
the first ``tiny_log.OLD`` entries already (or, when bit 0x80 of the input's first byte is set, into an
empty directory).

Invariants: the run succeeds — and then ``DIR/checkpoint`` is byte for byte the note served,
of the size reported, and its root is the genuine log's — or refuses with a
ledger.errors.Error (non-empty message) and leaves ``DIR/checkpoint`` exactly as it was.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from ledger.errors import Error
from ledger.mirror import Mirror
from tests.fuzz import tiny_log

# A RAM disk where there is one: the run is file-system bound.
_SHM = Path("/dev/shm")
_ROOT = Path(tempfile.mkdtemp(prefix="suyuan-fuzz-mirror-", dir=_SHM if _SHM.is_dir() else None))
atexit.register(shutil.rmtree, _ROOT, True)


def _mirror(fetch: tiny_log.Fetch, directory: Path) -> Mirror:
    return Mirror(
        fetch,
        tiny_log.VERIFIER,
        directory,
        fsync=False,
        retries=0,
        sleep=lambda _s: None,
        prefetch=1,
        workers=0,
    )


_TEMPLATE = _ROOT / "template"
_mirror(tiny_log.fetcher(tiny_log.OLD_TREE), _TEMPLATE).run()
_COUNTER = [0]


def one(data: bytes) -> None:
    served = tiny_log.replaced(data)
    _COUNTER[0] += 1
    work = _ROOT / f"run{_COUNTER[0]}"
    empty = tiny_log.fresh(data)
    if not empty:
        shutil.copytree(_TEMPLATE, work)
    before = None if empty else (work / "checkpoint").read_bytes()
    try:
        try:
            result = _mirror(tiny_log.fetcher(served), work).run()
        except Error as exc:
            assert str(exc), repr(exc)
            after = (work / "checkpoint").read_bytes() if (work / "checkpoint").exists() else None
            assert after == before, "a refused run changed DIR/checkpoint"
            return
        assert (work / "checkpoint").read_bytes() == served["checkpoint"]
        assert result.note.encode("utf-8") == served["checkpoint"]
        assert result.size <= tiny_log.SIZE, "mirrored entries the log never had"
        genuine = tiny_log.tree(result.size)["checkpoint"].decode()
        assert genuine.split("\n")[2] == result.note.split("\n")[2], "accepted a forged root"
    finally:
        shutil.rmtree(work, ignore_errors=True)
