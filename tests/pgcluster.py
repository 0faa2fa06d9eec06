"""A throwaway PostgreSQL cluster for one test session, from the machine's own binaries.

The cluster is made with ``initdb`` into a temporary directory and run with
``pg_ctl``. It listens only on a unix socket in a private directory under
``/tmp`` (``listen_addresses = ''``), trusts every local connection (safe
because the socket directory is mode 0700, so only its owner and root can
reach it), and keeps ``fsync = on`` so that the durability tests exercise
the real write path.

PostgreSQL refuses to run as root. When this process is root (CI runs as
root on a fresh machine) the server runs as an unprivileged system user,
``suyuanpg`` by default (created with ``useradd --system`` if absent), and
that user is also the database superuser named in every URL. Otherwise the
server runs as the current user.

Lifetime: ``stop()`` MUST leave no server behind. It is registered with
``atexit`` on ``start()``, and a small watchdog process (this file run as a
script) holds a pipe from us: if this interpreter dies without running
``atexit`` (SIGKILL, a crash in C code), the watchdog reads end-of-file and
stops the server with ``pg_ctl stop -m immediate`` and removes the private
directory. An immediate stop is a simulated crash; nothing is lost that a
throwaway cluster needs.

Paths: a unix socket path MUST be shorter than 108 bytes (``sun_path``), so
the socket directory is a short ``mkdtemp`` under ``/tmp`` rather than
somewhere inside pytest's deep ``tmp_path``.

Replication: every cluster is configured as a possible primary (``wal_level =
replica``, WAL senders and replication slots, ``local replication all trust`` in
pg_hba.conf). ``PgCluster().start_standby(primary, base_dir)`` makes a streaming hot
standby of a running primary with ``pg_basebackup -R`` over the primary's unix socket
(its own socket directory and port, ``hot_standby = on``, a physical replication slot
on the primary so that the primary keeps the WAL the standby still needs); the
primary's ``wait_caught_up(standby)`` waits until the standby has replayed everything
the primary has written. A standby has the same lifetime guarantees (``atexit`` and
its own watchdog) and drops its slot on the primary when stopped. ``halt()`` and
``resume()`` stop and start a server without discarding it (a primary that is down,
not gone).

This module imports only the standard library at import time; psycopg is
imported when a database is created or dropped.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

#: Environment variable naming a directory that holds ``initdb`` and ``pg_ctl``.
PG_BIN_ENV = "SUYUAN_PG_BIN"
#: Environment variable overriding the OS user the server runs as when we are root.
PG_OS_USER_ENV = "SUYUAN_PG_OS_USER"
DEFAULT_OS_USER = "suyuanpg"

# Where Debian/Ubuntu (``/usr/lib/postgresql/N/bin``) and the PGDG RPMs
# (``/usr/pgsql-N/bin``) put the server binaries, which are not on PATH there.
_PREFERRED_MAJOR = "15"
_SUN_PATH_MAX = 107  # sizeof(sun_path) - 1 for the terminating NUL on Linux
_LOG_TAIL_LINES = 40
_PG_CTL_TIMEOUT = 120  # seconds; restart under load may take a while to checkpoint
_CATCH_UP_TIMEOUT = 60.0  # seconds wait_caught_up waits by default


def _is_bin_dir(d: Path) -> bool:
    return all(os.access(d / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres"))


def _version_key(p: Path) -> tuple[int, ...]:
    digits = "".join(c if c.isdigit() else " " for c in p.parent.name).split()
    return tuple(int(x) for x in digits) or (0,)


def binary_search_order() -> list[Path]:
    """The directories :func:`find_binaries` looks in, in order (for messages)."""
    order: list[Path] = []
    env = os.environ.get(PG_BIN_ENV)
    if env:
        return [Path(env)]
    initdb = shutil.which("initdb")
    if initdb:
        # Resolve symlinks: /usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb,
        # and `postgres` lives beside the real file.
        order.append(Path(initdb).resolve().parent)
        order.append(Path(initdb).parent)
    for pattern_root, pattern in (("/usr/lib/postgresql", "*/bin"), ("/usr", "pgsql-*/bin")):
        found = sorted(Path(pattern_root).glob(pattern), key=_version_key, reverse=True)
        # Prefer the major version the project targets, then the newest.
        found.sort(key=lambda p: _PREFERRED_MAJOR not in p.parent.name.split("-"))
        order.extend(found)
    return list(dict.fromkeys(order))  # de-duplicated, order kept


def find_binaries() -> Path | None:
    """Return the directory holding ``initdb``, ``pg_ctl`` and ``postgres``, or None.

    ``$SUYUAN_PG_BIN`` wins when set (and if it is wrong, nothing else is
    tried: a wrong explicit setting should be seen, not papered over). Then
    ``initdb`` on PATH, then Debian's ``/usr/lib/postgresql/*/bin`` (15 first).
    """
    for d in binary_search_order():
        if _is_bin_dir(d):
            return d
    return None


def _short_tmp_root() -> str:
    # tempfile.gettempdir() honours TMPDIR, which may be long; /tmp is short and
    # world-writable (sticky) on every Unix we care about.
    for cand in ("/tmp", tempfile.gettempdir()):
        if os.path.isdir(cand) and os.access(cand, os.W_OK | os.X_OK):
            return cand
    return tempfile.gettempdir()


def _free_port() -> int:
    # The port only names the socket file (.s.PGSQL.<port>); a port that is free
    # on TCP is simply a number unlikely to collide with anything else.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _ensure_os_user(name: str) -> pwd.struct_passwd:
    """Return the passwd entry of ``name``, creating it as a system user if absent."""
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    nologin = next(
        (s for s in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false") if os.path.exists(s)),
        "/bin/false",
    )
    if shutil.which("useradd"):
        cmd = [
            "useradd",
            "--system",
            "--no-create-home",
            "--user-group",
            "--home-dir",
            "/nonexistent",
            "--shell",
            nologin,
            "--comment",
            "Suyuan test PostgreSQL",
            name,
        ]
    elif shutil.which("adduser"):  # busybox / Alpine
        cmd = ["adduser", "-S", "-D", "-H", "-h", "/nonexistent", "-s", nologin, name]
    else:
        raise RuntimeError(
            f"running as root and OS user {name!r} does not exist; "
            "neither useradd nor adduser is available to create it"
        )
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    try:
        # Another process may have created it concurrently (useradd exits 9).
        return pwd.getpwnam(name)
    except KeyError:
        raise RuntimeError(
            f"could not create OS user {name!r} with {' '.join(cmd)!r}: "
            f"exit {proc.returncode}: {proc.stderr.strip()}"
        ) from None


def _tail(path: Path, n: int = _LOG_TAIL_LINES) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as e:
        return f"(no server log at {path}: {e})"
    return "\n".join(lines[-n:]) if lines else f"(server log {path} is empty)"


class PgCluster:
    """One PostgreSQL cluster: ``start()`` it once, make databases, ``stop()`` it.

    Not thread-safe: the methods that change the server's state (start, stop,
    restart) MUST be called from one thread. ``url``/``conninfo`` are pure.
    """

    def __init__(self, bin_dir: Path | None = None, os_user: str | None = None) -> None:
        self.bin_dir = bin_dir
        self._os_user_name = os_user
        self.user = ""  # the database superuser (= the OS user the server runs as)
        self.port = 0
        self.socket_dir: Path | None = None
        self.data_dir: Path | None = None
        self.log_file: Path | None = None
        self._base_dir: Path | None = None
        self._run_dir: Path | None = None  # private dir under /tmp: socket (and data, as root)
        self._uid: int | None = None  # set when we drop privileges to run the server
        self._gid: int | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._running = False  # the server is up (start/resume .. halt/stop)
        self._started = False  # start() or start_standby() ran; stop() has not
        self.primary: PgCluster | None = None  # set on a standby until promoted
        self.slot: str | None = None  # a standby's replication slot on its primary

    # -- lifecycle ---------------------------------------------------------------

    def start(self, base_dir: Path) -> None:
        """initdb a new cluster and start it. Raises RuntimeError with the server log tail."""
        self._prepare(base_dir)
        try:
            self._initdb()
            self._write_config()
            self._pg_ctl("start", "-l", str(self.log_file))
        except BaseException:
            self.stop()
            raise
        self._running = True

    def start_standby(self, primary: PgCluster, base_dir: Path) -> None:
        """Make this cluster a streaming hot standby of the running ``primary`` and start it.

        ``pg_basebackup -R -X stream`` over the primary's unix socket copies the
        primary's data directory and writes ``standby.signal`` and ``primary_conninfo``;
        this cluster then gets its own socket directory and port. The standby accepts
        read-only connections (``hot_standby = on``) and replays the primary's WAL as it
        streams in; ``primary.wait_caught_up(self)`` waits for it to catch up.
        """
        if not primary.running:
            raise RuntimeError("the primary is not running")
        if self.bin_dir is None:
            self.bin_dir = primary.bin_dir
        self._os_user_name = self._os_user_name or primary.user or None
        self._prepare(base_dir)
        if self.user != primary.user:
            self.stop()
            raise RuntimeError(
                f"a standby runs as the primary's OS user {primary.user!r}, not {self.user!r}"
            )
        self.slot = f"standby_{self.port}"
        self.primary = primary  # before the backup, so that stop() drops a slot it made
        try:
            self._basebackup(primary)
            self._write_config(standby=True)
            self._pg_ctl("start", "-l", str(self.log_file))
        except BaseException:
            self.stop()
            raise
        self._running = True

    def _prepare(self, base_dir: Path) -> None:
        """Everything before the data directory exists: user, run dir, port, watchdog."""
        if self._started:
            raise RuntimeError("cluster already started")
        if self.bin_dir is None:
            self.bin_dir = find_binaries()
        if self.bin_dir is None:
            raise RuntimeError(
                "no PostgreSQL binaries (initdb, pg_ctl, postgres) in: "
                + ", ".join(str(p) for p in binary_search_order())
                + f"; set ${PG_BIN_ENV} or install postgresql-15"
            )
        base_dir = Path(base_dir).resolve()
        base_dir.mkdir(parents=True, exist_ok=True)
        self._base_dir = base_dir

        if os.geteuid() == 0:
            pw = _ensure_os_user(
                self._os_user_name or os.environ.get(PG_OS_USER_ENV) or DEFAULT_OS_USER
            )
            self._uid, self._gid, self.user = pw.pw_uid, pw.pw_gid, pw.pw_name
        else:
            self.user = pwd.getpwuid(os.geteuid()).pw_name

        run_dir = Path(tempfile.mkdtemp(prefix="sypg-", dir=_short_tmp_root()))
        self._run_dir = run_dir
        self.port = _free_port()
        self.socket_dir = run_dir
        if len(str(run_dir / f".s.PGSQL.{self.port}.lock")) > _SUN_PATH_MAX:
            raise RuntimeError(f"socket directory {run_dir} is too long for a unix socket path")
        if self._uid is None:
            # Data in pytest's base dir: it is kept for post-mortems (pytest keeps
            # the last few base temps) and cleaned up by pytest.
            self.data_dir = base_dir / "data"
            self.log_file = base_dir / "postgresql.log"
        else:
            # As root, pytest's base dir (/tmp/pytest-of-root, mode 0700) is not
            # reachable by the server's user, so everything lives in run_dir, which
            # is removed on stop; the log is copied to base_dir on stop.
            os.chown(run_dir, self._uid, self._gid if self._gid is not None else -1)
            self.data_dir = run_dir / "data"
            self.log_file = run_dir / "postgresql.log"
            with contextlib.suppress(OSError):
                (base_dir / "pgcluster").symlink_to(run_dir)
        os.chmod(run_dir, 0o700)

        self._started = True
        self._start_watchdog()
        atexit.register(self.stop)

    def stop(self) -> None:
        """Stop the server (fast, then immediate, then SIGKILL) and remove the run dir.

        Safe to call more than once and on a cluster whose start failed. A standby
        also drops its replication slot on the primary (if the primary still runs),
        so that the primary does not keep WAL for it for ever.
        """
        atexit.unregister(self.stop)
        self._started = False
        if self.data_dir is not None and (self.data_dir / "postmaster.pid").exists():
            for mode in ("fast", "immediate"):
                try:
                    self._pg_ctl("stop", "-m", mode, timeout=60)
                    break
                except (RuntimeError, subprocess.TimeoutExpired):
                    continue
            else:
                self._kill_postmaster()
        self._running = False
        self._drop_slot()
        self._stop_watchdog()
        if self._uid is not None and self.log_file is not None and self._base_dir is not None:
            with contextlib.suppress(OSError):
                shutil.copyfile(self.log_file, self._base_dir / "postgresql.log")
            with contextlib.suppress(OSError):
                (self._base_dir / "pgcluster").unlink()
        if self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: disconnects every client, waits until it accepts again."""
        if not self._running:
            raise RuntimeError("cluster is not running")
        self._pg_ctl("restart", "-m", "fast", "-l", str(self.log_file))

    def halt(self, mode: str = "fast") -> None:
        """Stop the server but keep the cluster (``pg_ctl stop -m MODE``); :meth:`resume` it.

        ``immediate`` is a simulated crash: recovery replays the WAL on the next start.
        """
        if mode not in ("smart", "fast", "immediate"):
            raise RuntimeError(f"pg_ctl stop mode is smart, fast or immediate, not {mode!r}")
        if not self._running:
            raise RuntimeError("cluster is not running")
        self._pg_ctl("stop", "-m", mode)
        self._running = False

    def resume(self) -> None:
        """Start a halted server again (same data, socket and port)."""
        if not self._started:
            raise RuntimeError("cluster was never started (or was stopped for good)")
        if self._running:
            raise RuntimeError("cluster is already running")
        self._pg_ctl("start", "-l", str(self.log_file))
        self._running = True

    def promote(self) -> None:
        """Promote this standby to a primary (``pg_ctl promote``, waits until it accepts writes)."""
        if self.primary is None:
            raise RuntimeError("this cluster is not a standby")
        if not self._running:
            raise RuntimeError("cluster is not running")
        self._pg_ctl("promote")
        self._drop_slot()
        self.primary = None

    @property
    def running(self) -> bool:
        return self._running

    # -- replication ---------------------------------------------------------------

    def in_recovery(self) -> bool:
        """``pg_is_in_recovery()``: True on a standby that is replaying WAL."""
        import psycopg

        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        return bool(row and row[0])

    def wal_lsn(self) -> str:
        """The primary's current WAL write position (``pg_current_wal_lsn()``)."""
        import psycopg

        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        return str(row[0])

    def wait_caught_up(self, standby: PgCluster, timeout: float = _CATCH_UP_TIMEOUT) -> str:
        """Wait until ``standby`` has replayed all WAL this primary has written so far.

        Compares ``pg_current_wal_lsn()`` here, read once on entry, with the standby's
        ``pg_last_wal_replay_lsn()``: everything committed before the call is then
        visible on the standby. Returns the LSN waited for; raises RuntimeError (with
        both positions and the standby's log tail) after ``timeout`` seconds.
        """
        import psycopg

        target = self.wal_lsn()
        deadline = time.monotonic() + timeout
        replayed: str | None = None
        with psycopg.connect(standby.conninfo("postgres"), autocommit=True) as conn:
            while True:
                row = conn.execute(
                    "SELECT pg_last_wal_replay_lsn()::text, pg_last_wal_replay_lsn() >= %s::pg_lsn",
                    (target,),
                ).fetchone()
                assert row is not None
                replayed = row[0]
                if row[1]:
                    return target
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
        log = standby.log_file
        raise RuntimeError(
            f"standby did not catch up within {timeout:g} s: primary at {target}, "
            f"standby replayed {replayed}\n--- {log} ---\n" + (_tail(log) if log else "")
        )

    # -- connecting --------------------------------------------------------------

    def url(self, dbname: str) -> str:
        """SQLAlchemy URL: ``postgresql+psycopg://USER@/DBNAME?host=SOCKETDIR&port=PORT``."""
        q = urllib.parse.quote
        return (
            f"postgresql+psycopg://{q(self.user, safe='')}@/{q(dbname, safe='')}"
            f"?host={q(str(self.socket_dir), safe='/')}&port={self.port}"
        )

    def conninfo(self, dbname: str) -> str:
        """libpq conninfo for psycopg/psql directly (raw SQL in tamper tests)."""
        return f"host={self.socket_dir} port={self.port} user={self.user} dbname={dbname}"

    def env(self) -> dict[str, str]:
        """PG* variables that point libpq tools (psql, pg_dump) at this cluster."""
        return {
            "PGHOST": str(self.socket_dir),
            "PGPORT": str(self.port),
            "PGUSER": self.user,
        }

    def create_database(self, name: str) -> str:
        """CREATE DATABASE ``name``; return its SQLAlchemy URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Terminate the database's connections and drop it (if it exists)."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    # -- internals ---------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C", TZ="UTC")
        if self._uid is not None:
            assert self._run_dir is not None
            env.update(HOME=str(self._run_dir), USER=self.user, LOGNAME=self.user)
        return env

    def _run(self, argv: list[str], *, timeout: float = _PG_CTL_TIMEOUT) -> str:
        """Run a PostgreSQL program as the server's user; return its output or raise.

        Output goes to a file, never a pipe: ``pg_ctl start`` leaves the
        postmaster running, and a postmaster holding our pipe would make us
        wait for end-of-file for ever.
        """
        assert self._run_dir is not None
        kwargs: dict[str, Any] = {}
        if self._uid is not None:
            # Same effect as `runuser -u suyuanpg --`, without needing util-linux.
            kwargs.update(user=self._uid, group=self._gid, extra_groups=[])
        with tempfile.TemporaryFile(dir=self._run_dir) as out:
            proc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self._run_dir,  # the server user may not be able to read our cwd
                env=self._env(),
                timeout=timeout,
                check=False,
                **kwargs,
            )
            out.seek(0)
            text = out.read().decode(errors="replace")
        if proc.returncode != 0:
            log = f"\n--- last {_LOG_TAIL_LINES} lines of {self.log_file} ---\n" + (
                _tail(self.log_file) if self.log_file else ""
            )
            raise RuntimeError(
                f"{Path(argv[0]).name} {' '.join(argv[1:])!s} failed with exit "
                f"{proc.returncode}:\n{text.strip()}{log}"
            )
        return text

    def _initdb(self) -> None:
        assert self.bin_dir is not None and self.data_dir is not None
        self._run(
            [
                str(self.bin_dir / "initdb"),
                "--pgdata",
                str(self.data_dir),
                "--username",
                self.user,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                # Only skips initdb's own final sync of the new files; the server
                # itself runs with fsync=on.
                "--no-sync",
            ]
        )

    def _basebackup(self, primary: PgCluster) -> None:
        assert self.bin_dir is not None and self.data_dir is not None and self.slot
        self._run(
            [
                str(self.bin_dir / "pg_basebackup"),
                "--pgdata",
                str(self.data_dir),
                "--host",
                str(primary.socket_dir),
                "--port",
                str(primary.port),
                "--username",
                primary.user,
                "--write-recovery-conf",  # -R: standby.signal + primary_conninfo
                "--wal-method",
                "stream",
                "--checkpoint",
                "fast",
                "--create-slot",
                "--slot",
                self.slot,
                "--no-sync",  # like initdb --no-sync; the server itself runs with fsync=on
            ]
        )

    def _drop_slot(self) -> None:
        """Drop this standby's slot on its primary (best effort: it may be gone)."""
        primary, slot = self.primary, self.slot
        if primary is None or slot is None or not primary.running:
            return
        import psycopg

        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(primary.conninfo("postgres"), autocommit=True) as conn,
        ):
            for _attempt in range(50):  # the walsender may take a moment to let go
                try:
                    conn.execute(
                        "SELECT pg_drop_replication_slot(slot_name)"
                        " FROM pg_replication_slots WHERE slot_name = %s",
                        (slot,),
                    )
                    break
                except psycopg.errors.ObjectInUse:
                    time.sleep(0.1)
        self.slot = None

    def _write_config(self, *, standby: bool = False) -> None:
        assert self.data_dir is not None
        if standby:
            # Appended after the primary's copied block: the last setting wins.
            settings = {
                "unix_socket_directories": f"'{self.socket_dir}'",
                "port": str(self.port),
                "hot_standby": "on",
                "hot_standby_feedback": "on",
                # Reconnect soon after the primary restarts (default 5 s).
                "wal_retrieve_retry_interval": "'200ms'",
            }
            self._append_config(settings, "standby")
            return
        settings = {
            "listen_addresses": "''",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "unix_socket_permissions": "0700",
            "port": str(self.port),
            "max_connections": "200",
            "shared_buffers": "32MB",
            "fsync": "on",
            "synchronous_commit": "on",
            "full_page_writes": "on",
            "logging_collector": "off",
            "log_min_messages": "warning",
            "log_line_prefix": "'%m [%p] %d '",
            "timezone": "'UTC'",
            # Replication: any cluster can be the primary of a standby (start_standby).
            "wal_level": "replica",
            "max_wal_senders": "10",
            "max_replication_slots": "10",
            "hot_standby": "on",
            "hot_standby_feedback": "on",
        }
        self._append_config(settings, "primary")
        with (self.data_dir / "pg_hba.conf").open("a", encoding="utf-8") as f:
            # initdb --auth trust writes this line too; say it where it matters.
            f.write("\n# tests/pgcluster.py: standbys connect over the unix socket\n")
            f.write("local replication all trust\n")

    def _append_config(self, settings: dict[str, str], role: str) -> None:
        assert self.data_dir is not None
        conf = self.data_dir / "postgresql.conf"
        with conf.open("a", encoding="utf-8") as f:
            f.write(f"\n# --- tests/pgcluster.py ({role}) ---\n")
            for k, v in settings.items():
                f.write(f"{k} = {v}\n")

    def _pg_ctl(self, action: str, *args: str, timeout: float = _PG_CTL_TIMEOUT) -> str:
        assert self.bin_dir is not None and self.data_dir is not None
        return self._run(
            [
                str(self.bin_dir / "pg_ctl"),
                action,
                "-D",
                str(self.data_dir),
                "-w",
                "-t",
                str(int(timeout)),
                *args,
            ],
            timeout=timeout + 30,
        )

    def _kill_postmaster(self) -> None:
        """Last resort when pg_ctl cannot stop it: SIGKILL the postmaster.

        The pid file may be stale and its pid reused, so only a process whose
        command line names our data directory is killed.
        """
        assert self.data_dir is not None
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if str(self.data_dir).encode() in cmdline:
                os.kill(pid, signal.SIGKILL)

    def _start_watchdog(self) -> None:
        assert self._run_dir is not None and self.bin_dir is not None
        assert self.data_dir is not None
        argv = [
            sys.executable,
            os.path.abspath(__file__),
            "--watchdog",
            str(self.bin_dir / "pg_ctl"),
            str(self.data_dir),
            str(self._run_dir),
            str(-1 if self._uid is None else self._uid),
            str(-1 if self._gid is None else self._gid),
        ]
        self._watchdog = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=self._env(),
            cwd=self._run_dir,
            # Its own session: a Ctrl-C to the test run must not kill it before us.
            start_new_session=True,
        )

    def _stop_watchdog(self) -> None:
        w, self._watchdog = self._watchdog, None
        if w is None:
            return
        assert w.stdin is not None
        with contextlib.suppress(OSError):
            w.stdin.write(b"stopped\n")  # tell it we stopped the server ourselves
            w.stdin.flush()
        with contextlib.suppress(OSError):
            w.stdin.close()
        try:
            w.wait(timeout=30)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()


def _watchdog_main(argv: list[str]) -> int:
    """Wait for the parent to close our stdin; if it did so without saying
    ``stopped``, stop the server immediately and remove the run dir."""
    pg_ctl, data_dir, run_dir, uid, gid = argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    data = sys.stdin.buffer.read()
    if data.startswith(b"stopped"):
        return 0
    kwargs: dict[str, Any] = {}
    if int(uid) >= 0:
        kwargs.update(user=int(uid), group=int(gid), extra_groups=[])
    if os.path.exists(os.path.join(data_dir, "postmaster.pid")):
        with contextlib.suppress(Exception):
            subprocess.run(
                [pg_ctl, "stop", "-D", data_dir, "-m", "immediate", "-w", "-t", "30"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd="/",
                timeout=60,
                check=False,
                **kwargs,
            )
    time.sleep(0.1)
    shutil.rmtree(run_dir, ignore_errors=True)
    return 0


if __name__ == "__main__" and len(sys.argv) == 7 and sys.argv[1] == "--watchdog":
    sys.exit(_watchdog_main(sys.argv[2:]))
