"""Ingesting a mirrored directory into the mirror's ledger database
(``ledger.ingest.ingest_directory``, what ``suyuan serve --mirror`` reads) when one resource
of the directory is fuzzer bytes (see ``tests.fuzz.tiny_log.replaced``: a signed checkpoint
text, a raw checkpoint note, a tile, an entry bundle or the vkey), into a database that
already holds the first ``tiny_log.OLD`` entries (or, when bit 0x80 of the input's first byte is set, an
empty one).

Invariants: the ingest succeeds — and then the database holds exactly the genuine log's
first ``size`` leaves and the served checkpoint note — or refuses with a ledger.errors.Error
(non-empty message) and the database is exactly as it was (one transaction).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from sqlalchemy import text

from ledger.db import make_engine, upgrade
from ledger.errors import Error
from ledger.ingest import STATE_DIR, VKEY_FILE, ingest_directory
from tests.fuzz import tiny_log

_SHM = Path("/dev/shm")
_ROOT = Path(tempfile.mkdtemp(prefix="suyuan-fuzz-ingest-", dir=_SHM if _SHM.is_dir() else None))
atexit.register(shutil.rmtree, _ROOT, True)


def _write(directory: Path, files: dict[str, bytes]) -> None:
    for path, data in files.items():
        target = directory / (f"{STATE_DIR}/{VKEY_FILE}" if path == "vkey" else path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def _database(name: str, size: int) -> Path:
    path = _ROOT / f"{name}.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    if size:
        directory = _ROOT / f"{name}-tree"
        _write(directory, tiny_log.tree(size))
        ingest_directory(directory, engine=engine, workers=0)
    engine.dispose()
    return path


_EMPTY = _database("empty", 0)
_OLD = _database("old", tiny_log.OLD)
_COUNTER = [0]


def _rows(engine: object) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    with engine.connect() as conn:  # type: ignore[attr-defined]
        entries = [tuple(r) for r in conn.execute(text("SELECT seq, leaf FROM entries ORDER BY 1"))]
        notes = [
            tuple(r) for r in conn.execute(text("SELECT size, note FROM checkpoints ORDER BY 1"))
        ]
    return entries, notes


def one(data: bytes) -> None:
    _COUNTER[0] += 1
    work = _ROOT / f"run{_COUNTER[0]}"
    served = tiny_log.replaced(data)
    _write(work / "tree", served)
    database = work / "ledger.db"
    shutil.copyfile(_EMPTY if tiny_log.fresh(data) else _OLD, database)
    engine = make_engine(f"sqlite:///{database}")
    try:
        before = _rows(engine)
        try:
            result = ingest_directory(work / "tree", engine=engine, workers=0)
        except Error as exc:
            assert str(exc), repr(exc)
            assert _rows(engine) == before, "a refused ingest changed the database"
            return
        entries, notes = _rows(engine)
        assert [bytes(leaf) for _, leaf in entries] == tiny_log.LEAVES[: result.size]
        assert notes and notes[-1][0] == result.size
        assert notes[-1][1] == served["checkpoint"].decode("utf-8")
    finally:
        engine.dispose()
        shutil.rmtree(work, ignore_errors=True)
