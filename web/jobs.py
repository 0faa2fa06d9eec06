"""Background full-ledger verification for the auditor portal.

A *job* runs :func:`ledger.verify.audit_database` — the same audit as
``suyuan verify`` — in a thread of the web process that started it.  Its state
lives in one small JSON file, ``<instance>/jobs/<id>.json``, so every worker
process of the server (and a restarted one) can report it:

``{"id", "state", "user", "started", "finished", "done", "total", "entries",
"checkpoints", "seq", "message", "pid", "host", "updated"}`` where ``state`` is
``running`` | ``ok`` | ``failed`` (the audit found a problem: ``seq`` is the first
bad entry when the message names one) | ``error`` (the audit could not run,
or was interrupted).

Contracts:

* **Ids** are 32 random lower-case hex digits; :func:`check_id` refuses anything
  else, so an id never reaches the file system unchecked (no path traversal).
* **Atomic writes.**  A state file is written to a temporary file in the same
  folder, flushed, fsynced and moved over the old one with ``os.replace``; a
  reader sees the old state or the new one, never half of one.  A crash leaves
  at most a stray ``.tmp`` file, which :func:`start` sweeps away.
* **One job at a time.**  :func:`start` holds an exclusive ``flock`` on
  ``jobs/lock`` while it looks for a running job and writes the new one, so two
  workers cannot both start one.  A job whose process is gone (same host, its
  pid no longer alive) or that reported nothing for :data:`STALE_AFTER` seconds
  is marked ``error`` ("interrupted") and no longer blocks a new one.
* **A consistent snapshot.**  On PostgreSQL the audit reads with ``REPEATABLE
  READ`` so appends made while it runs do not show up half-way; SQLite's
  read transaction (WAL) is a snapshot already.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from ledger.entry import format_time
from ledger.errors import Error, NotFound, VerificationError
from ledger.verify import audit_database

log = logging.getLogger(__name__)

JOB_ID = re.compile(r"[0-9a-f]{32}")
#: A running job that reported no progress for this long is taken to be dead.
STALE_AFTER = 3600.0
#: Keep this many finished jobs' files; older ones are deleted when a job starts.
KEEP = 50
#: Write progress at most this often (seconds); the final state is always written.
WRITE_EVERY = 0.5
RUNNING, OK, FAILED, ERROR = "running", "ok", "failed", "error"
_SEQ = re.compile(r"seq ([0-9]+):")

Job = dict[str, Any]
Audit = Callable[..., Any]


def jobs_dir(instance_path: str | Path) -> Path:
    return Path(instance_path) / "jobs"


def check_id(job_id: str) -> str:
    """``job_id`` if it is a well-formed job id, else :class:`NotFound` (never a path)."""
    if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
        raise NotFound(f"no verification job {job_id!r} (a job id is 32 hex digits)")
    return job_id


def _now() -> str:
    return format_time(datetime.now(UTC))


def _path(folder: Path, job_id: str) -> Path:
    return folder / f"{check_id(job_id)}.json"


def write_state(folder: Path, job: Job) -> None:
    """Write ``job``'s state file atomically (temporary file, fsync, ``os.replace``)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = _path(folder, job["id"])
    job["updated"] = time.time()
    tmp = folder / f".{job['id']}.{secrets.token_hex(4)}.tmp"
    data = json.dumps(job, ensure_ascii=False, sort_keys=True).encode("utf-8")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read(path: Path) -> Job | None:
    try:
        value = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(value, dict) or value.get("id") != path.stem:
        return None
    return value


def load(folder: Path, job_id: str) -> Job:
    """The job's state (a stale running job is reported interrupted); NotFound if none."""
    job = _read(_path(folder, job_id))
    if job is None:
        raise NotFound(f"no verification job {job_id}")
    return _unstale(folder, job)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_stale(job: Job) -> bool:
    if job.get("state") != RUNNING:
        return False
    if time.time() - float(job.get("updated") or 0) > STALE_AFTER:
        return True
    pid = job.get("pid")
    return job.get("host") == socket.gethostname() and isinstance(pid, int) and not _alive(pid)


def _unstale(folder: Path, job: Job) -> Job:
    if _is_stale(job):
        job.update(
            state=ERROR,
            finished=_now(),
            message="interrupted: the server process running this verification stopped",
        )
        with contextlib.suppress(OSError):
            write_state(folder, job)
    return job


def recent(folder: Path, limit: int = 10) -> list[Job]:
    """The newest jobs first (by start time)."""
    if not folder.is_dir():
        return []
    jobs = [j for j in (_read(p) for p in folder.glob("*.json")) if j is not None]
    jobs.sort(key=lambda j: str(j.get("started") or ""), reverse=True)
    return [_unstale(folder, j) for j in jobs[:limit]]


def running(folder: Path) -> Job | None:
    """The running job, if any (stale ones are marked interrupted on the way)."""
    if not folder.is_dir():
        return None
    for path in folder.glob("*.json"):
        job = _read(path)
        if job is not None and job.get("state") == RUNNING:
            job = _unstale(folder, job)
            if job["state"] == RUNNING:
                return job
    return None


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lock", "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _sweep(folder: Path) -> None:
    """Drop stray temporary files and all but the newest :data:`KEEP` finished jobs."""
    for tmp in folder.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            if time.time() - tmp.stat().st_mtime > 60:
                tmp.unlink()
    finished = [j for j in (_read(p) for p in folder.glob("*.json")) if j is not None]
    finished = [j for j in finished if j.get("state") != RUNNING]
    finished.sort(key=lambda j: str(j.get("started") or ""), reverse=True)
    for job in finished[KEEP:]:
        with contextlib.suppress(OSError):
            _path(folder, job["id"]).unlink()


def start(
    folder: Path,
    engine: Engine,
    *,
    user: str,
    total: int,
    workers: int | None = None,
    audit: Audit = audit_database,
) -> tuple[Job, bool]:
    """Start a verification job, unless one is running: ``(job, started)``.

    ``total`` is the log's size when the job starts (the audit reports its own
    total as it goes).  The audit runs in a daemon thread; its outcome is written
    to the job's file.  ``audit`` is for tests.
    """
    with _locked(folder):
        busy = running(folder)
        if busy is not None:
            return busy, False
        _sweep(folder)
        job: Job = {
            "id": secrets.token_hex(16),
            "state": RUNNING,
            "user": user,
            "started": _now(),
            "finished": None,
            "done": 0,
            "total": total,
            "entries": None,
            "checkpoints": None,
            "seq": None,
            "message": None,
            "pid": os.getpid(),
            "host": socket.gethostname(),
        }
        write_state(folder, job)
    thread = threading.Thread(
        target=_run,
        args=(folder, dict(job), engine, workers, audit),
        name=f"verify-{job['id'][:8]}",
        daemon=True,
    )
    thread.start()
    return job, True


def _snapshot(engine: Engine) -> Engine:
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="REPEATABLE READ")
    return engine


def _run(folder: Path, job: Job, engine: Engine, workers: int | None, audit: Audit) -> None:
    last = 0.0

    def progress(done: int, total: int) -> None:
        nonlocal last
        job["done"], job["total"] = done, total
        if time.monotonic() - last >= WRITE_EVERY:
            last = time.monotonic()
            with contextlib.suppress(OSError):
                write_state(folder, job)

    try:
        result = audit(_snapshot(engine), workers=workers, progress=progress)
    except VerificationError as exc:
        found = _SEQ.match(str(exc))
        job.update(state=FAILED, message=str(exc), seq=int(found.group(1)) if found else None)
    except Error as exc:
        job.update(state=ERROR, message=f"the audit could not run: {exc}")
    except Exception as exc:  # a bug must still end the job, not leave it running
        log.exception("verification job %s crashed", job["id"])
        job.update(state=ERROR, message=f"the audit stopped: {type(exc).__name__}: {exc}")
    else:
        job.update(
            state=OK,
            entries=result.size,
            checkpoints=result.checkpoints,
            done=result.size,
            total=result.size,
            message=f"OK {result.size} entries",
        )
    job["finished"] = _now()
    try:
        write_state(folder, job)
    except OSError:
        log.exception("could not record the outcome of verification job %s", job["id"])


def public_view(job: Job) -> Job:
    """What the JSON endpoint shows (no pid or host)."""
    total = int(job.get("total") or 0)
    done = int(job.get("done") or 0)
    return {
        "id": job["id"],
        "state": job.get("state"),
        "running": job.get("state") == RUNNING,
        "user": job.get("user"),
        "started": job.get("started"),
        "finished": job.get("finished"),
        "done": done,
        "total": total,
        "percent": 100 if job.get("state") == OK else (done * 100 // total if total else 0),
        "entries": job.get("entries"),
        "checkpoints": job.get("checkpoints"),
        "seq": job.get("seq"),
        "message": job.get("message"),
    }


__all__ = [
    "ERROR",
    "FAILED",
    "OK",
    "RUNNING",
    "check_id",
    "jobs_dir",
    "load",
    "public_view",
    "recent",
    "running",
    "start",
    "write_state",
]
