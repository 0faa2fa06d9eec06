"""``suyuan serve --mirror DIR``: an auditor's own read-only node, serving its verified copy.

DIR is a static C2SP tlog-tiles tree kept by ``suyuan mirror`` (``DIR/checkpoint``,
``DIR/tile/…``, ``DIR/tile/entries/…``) with the mirror's own state in
``DIR/.mirror/`` — at least ``vkey``, the log's verifier key the auditor gave.
Two kinds of log:

* **Any tlog-tiles log** (:func:`create_mirror_app` builds a small app): the
  checkpoint, tiles and entry bundles at the C2SP paths under ``/log/``, with
  the caching of ``web/log_routes.py``; ``/log/vkey``; ``/healthz``; and a home
  page saying whose log this is a mirror of, its size and checkpoint, when it was
  last updated, the upstream URL and how to verify it.  Tile paths are parsed
  with :func:`ledger.tiles.parse_tile_path` and the file name is rebuilt from the
  parsed integers: a request can never name another file.  There is no write
  route at all (405 on every ``/log/`` path).
* **A Suyuan log** (its leaf 0 is a Suyuan genesis entry): the whole read-only
  site — scan pages, entries, notices, the API, proofs, the log — from a ledger
  database the mirror builds from the verified leaves (``ledger.ingest``,
  ``DIR/.mirror/ledger.db``), opened without any key; every write answers 503.
  The mirror's own page is ``/mirror``.  The database is brought up to
  ``DIR/checkpoint`` when the server starts and every
  ``SUYUAN_MIRROR_SYNC_SECONDS`` (default 30) after, by one worker at a time
  (``DIR/.mirror/sync.lock``); the outcome is kept in ``DIR/.mirror/sync.json``
  and shown on ``/mirror`` and ``/mirror.json``.  A sync that fails (an entry
  breaking a rule, a root that does not match) leaves the site at the last
  verified size and says why.

Scan counts (``web.scans``) go to the mirror's own database file, beside the
mirrored tables; they are this node's statistics, not part of the ledger.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    jsonify,
    render_template,
    request,
)
from sqlalchemy import Engine

from ledger.checkpoint import Checkpoint
from ledger.config import Settings
from ledger.entry import decode_entry, format_time
from ledger.errors import ConfigError, Error, InvalidInput, NotFound
from ledger.ingest import (
    IngestResult,
    database_url,
    ingest_directory,
    open_database,
    read_checkpoint,
    read_verifier,
    read_vkey,
    state_dir,
    stored_size,
)
from ledger.note import Verifier
from ledger.tiles import TILE_WIDTH, EntryBundle, decode_entry_bundle, parse_tile_path
from web.errors import classify
from web.log_routes import CHECKPOINT_CACHE, plain, tile_response

log = logging.getLogger(__name__)

SYNC_FILE = "sync.json"
LOCK_FILE = "sync.lock"
SECRET_FILE = "secret_key"
DEFAULT_SYNC_SECONDS = 30.0
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


# --- what DIR holds ------------------------------------------------------------------------


@dataclass(frozen=True)
class MirrorInfo:
    """A mirrored directory as the server sees it (re-read for every page)."""

    directory: Path
    verifier: Verifier
    checkpoint: Checkpoint
    note: str
    updated: str  # when DIR/checkpoint last changed (UTC)
    upstream: str | None  # the URL ``suyuan mirror`` fetches, when its state says
    checked: str | None  # when ``suyuan mirror`` last looked upstream, when its state says
    suyuan: bool

    @property
    def origin(self) -> str:
        return self.checkpoint.origin


def _mirror_state(directory: Path) -> dict[str, Any]:
    """``suyuan mirror``'s own state file, if it keeps one (``DIR/.mirror/state.json``)."""
    try:
        value = json.loads((state_dir(directory) / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _first_text(directory: Path, names: tuple[str, ...]) -> str | None:
    for name in names:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            text = (state_dir(directory) / name).read_text(encoding="utf-8").strip()
            if text:
                return text.splitlines()[0][:2000]
    return None


def _upstream(directory: Path, state: Mapping[str, Any]) -> str | None:
    for key in ("url", "upstream", "source"):
        value = state.get(key)
        if isinstance(value, str) and value:
            return value[:2000]
    return _first_text(directory, ("upstream", "url"))


def _checked(state: Mapping[str, Any]) -> str | None:
    for key in ("checked", "last_checked", "last_check", "updated", "fetched"):
        value = state.get(key)
        if isinstance(value, str) and value:
            return value[:64]
    return None


def is_suyuan_log(directory: Path, checkpoint: Checkpoint) -> bool:
    """True when leaf 0 is a Suyuan genesis entry of this origin (a key.registered at seq 0)."""
    if checkpoint.size == 0:
        return False
    width = min(TILE_WIDTH, checkpoint.size)
    bundle = EntryBundle(0, width)
    try:
        first = decode_entry_bundle((directory / bundle.path()).read_bytes(), width)[0]
        entry = decode_entry(first)
    except (OSError, Error):
        return False
    return (
        entry.seq == 0
        and entry.kind == "key.registered"
        and entry.statement.origin == checkpoint.origin
    )


def inspect_mirror(directory: Path) -> MirrorInfo:
    """Check that DIR is a mirrored tlog-tiles tree whose checkpoint verifies; describe it.

    Raises :class:`ConfigError` (missing directory, no checkpoint, no
    ``.mirror/vkey``) or :class:`VerificationError` (the checkpoint does not verify).
    """
    if not directory.is_dir():
        raise ConfigError(
            f"{directory} is not a directory (expected a tree made by `suyuan mirror`)"
        )
    verifier = read_verifier(directory)
    checkpoint, note = read_checkpoint(directory, verifier)
    if checkpoint.size and not (directory / "tile").is_dir():
        raise ConfigError(
            f"{directory} has a checkpoint but no tile/ directory: not a tlog-tiles tree"
        )
    state = _mirror_state(directory)
    mtime = (directory / "checkpoint").stat().st_mtime
    return MirrorInfo(
        directory=directory,
        verifier=verifier,
        checkpoint=checkpoint,
        note=note,
        updated=format_time(datetime.fromtimestamp(mtime, UTC)),
        upstream=_upstream(directory, state),
        checked=_checked(state),
        suyuan=is_suyuan_log(directory, checkpoint),
    )


# --- keeping the ledger database in sync ------------------------------------------------------


def read_sync_status(directory: Path) -> dict[str, Any]:
    try:
        value = json.loads((state_dir(directory) / SYNC_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _write_sync_status(directory: Path, status: Mapping[str, Any]) -> None:
    path = state_dir(directory) / SYNC_FILE
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.{threading.get_ident()}")
    try:
        tmp.write_text(json.dumps(status, ensure_ascii=False, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:  # statistics about the sync, never a reason to stop it
        log.warning("cannot write %s: %s", path, exc)


def sync(directory: Path, engine: Engine | None = None) -> IngestResult:
    """Bring the ledger database up to DIR/checkpoint and record the outcome; raise on failure."""
    now = format_time(datetime.now(UTC))
    try:
        result = ingest_directory(directory, engine=engine)
    except Error as exc:
        previous = read_sync_status(directory)
        _write_sync_status(
            directory,
            {
                "time": now,
                "ok": False,
                "error": str(exc),
                "size": previous.get("size"),
                "synced": previous.get("synced"),
            },
        )
        raise
    _write_sync_status(
        directory, {"time": now, "ok": True, "error": None, "size": result.size, "synced": now}
    )
    return result


@contextlib.contextmanager
def _sync_lock(directory: Path) -> Iterator[bool]:
    """Yield True while this process holds DIR's sync lock, False if another one does."""
    path = state_dir(directory) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class MirrorSync:
    """A daemon thread syncing the database every ``interval`` seconds (one process at a time)."""

    def __init__(self, directory: Path, engine: Engine, interval: float) -> None:
        self.directory = directory
        self.engine = engine
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="suyuan-mirror-sync", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def run_once(self) -> IngestResult | None:
        """One sync if no other process is syncing; None when skipped.  Never raises Error."""
        try:
            with _sync_lock(self.directory) as held:
                if not held:
                    return None
                return sync(self.directory, self.engine)
        except Error as exc:
            log.warning("mirror sync of %s failed: %s", self.directory, exc)
        except OSError as exc:
            log.warning("mirror sync of %s: cannot lock: %s", self.directory, exc)
        return None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.run_once()


# --- the log's files, for any tlog-tiles log ---------------------------------------------------


files = Blueprint("mirror_files", __name__)


def _directory() -> Path:
    return Path(current_app.config["SUYUAN_MIRROR"])


@files.errorhandler(Error)
def _files_error(exc: Error) -> Response:
    status, _code = classify(exc)
    return plain(status, str(exc))


@files.get("/log/checkpoint")
def checkpoint() -> Response:
    directory = _directory()
    _checkpoint, note = read_checkpoint(directory, read_verifier(directory))  # only if it verifies
    response = Response(note, content_type="text/plain; charset=utf-8")
    response.headers["Cache-Control"] = CHECKPOINT_CACHE
    return response


@files.get("/log/vkey")
def vkey() -> Response:
    response = Response(read_vkey(_directory()) + "\n", content_type="text/plain; charset=utf-8")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


@files.get("/log/tile/<path:rest>")
def tile(rest: str) -> Response:
    try:
        resource = parse_tile_path("tile/" + rest)
    except InvalidInput as exc:
        raise NotFound(f"not a tile path: {exc}") from None
    # The file name is rebuilt from the parsed integers, never taken from the request.
    path = _directory() / resource.path()
    try:
        body = path.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"{resource.path()} is not in this mirror") from None
    except OSError as exc:
        raise NotFound(f"{resource.path()}: cannot read it ({exc.strerror})") from None
    return tile_response(resource, body)


@files.get("/")
def home() -> str:
    return _about_page()


@files.get("/healthz")
def healthz() -> Response:
    info = inspect_mirror(_directory())
    return jsonify(
        {
            "status": "ok",
            "mirror": True,
            "origin": info.origin,
            "size": info.checkpoint.size,
            "updated": info.updated,
        }
    )


# --- the mirror's own page, in both kinds ---------------------------------------------------------


about = Blueprint("mirror", __name__)


def _status(info: MirrorInfo) -> dict[str, Any]:
    status: dict[str, Any] = {
        "origin": info.origin,
        "size": info.checkpoint.size,
        "root": info.checkpoint.root.hex(),
        "vkey": info.verifier.vkey,
        "checkpoint": info.note,
        "updated": info.updated,
        "checked": info.checked,
        "upstream": info.upstream,
        "suyuan": info.suyuan,
    }
    if current_app.config["SUYUAN_MIRROR_SITE"]:
        sync_state = read_sync_status(info.directory)
        engine: Engine = current_app.extensions["suyuan"]["instance"].engine
        status["site"] = {
            "size": stored_size(engine),
            "synced": sync_state.get("synced"),
            "last_attempt": sync_state.get("time"),
            "error": sync_state.get("error"),
        }
    return status


def _about_page() -> str:
    info = inspect_mirror(_directory())
    status = _status(info)
    site = bool(current_app.config["SUYUAN_MIRROR_SITE"])  # the whole site, or the files only
    upstream = info.upstream
    context: dict[str, Any] = {
        "info": info,
        "status": status,
        "upstream_link": upstream
        if upstream and upstream.startswith(("https://", "http://"))
        else None,
        "log_url": request.url_root + "log",
        "base_template": "base.html" if site else "mirror/plain.html",
    }
    if site:
        from web.extensions import reader

        context["latest"] = reader().latest_checkpoint()
    return render_template("mirror/about.html", **context)


@about.get("/mirror")
def mirror_page() -> str:
    return _about_page()


@about.get("/mirror.json")
def mirror_json() -> Response:
    response = jsonify(_status(inspect_mirror(_directory())))
    response.headers["Cache-Control"] = "no-store"
    return response


@about.errorhandler(Error)
def _about_error(exc: Error) -> Response:
    status, _code = classify(exc)
    return plain(status, str(exc))


# --- the apps -------------------------------------------------------------------------------------


def _refuse_writes() -> Response | None:
    """Every write on a mirror answers 503: it holds no key and takes nothing from anyone."""
    if request.method in _READS:
        return None
    message = (
        f"this server is a read-only mirror of {current_app.config['SUYUAN_MIRROR_ORIGIN']}: "
        "send writes to the log itself"
    )
    if request.path.startswith("/api/"):
        response = jsonify({"error": {"code": "not_configured", "message": message}})
    else:
        response = plain(503, message)
    response.status_code = 503
    response.headers["Cache-Control"] = "no-store"
    response.headers["Retry-After"] = "86400"
    return response


def secret_key(directory: Path) -> str:
    """``SUYUAN_SECRET_KEY``, else the mirror's own (``DIR/.mirror/secret_key``, made once, 0600)."""
    given = os.environ.get("SUYUAN_SECRET_KEY")
    if given:
        return given
    path = state_dir(directory) / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            return path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc}") from None
    value = secrets.token_hex(32)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(value + "\n")
    return value


def _foreign_app(directory: Path, config: Mapping[str, Any]) -> Flask:
    from web import i18n
    from web.extensions import _security_headers

    app = Flask("web")
    app.config.from_mapping(SESSION_COOKIE_SECURE=True, **config)
    i18n.init_app(app)
    app.register_blueprint(files)
    app.after_request(_security_headers)
    return app


def _suyuan_app(directory: Path, info: MirrorInfo, config: Mapping[str, Any]) -> Flask:
    from web import create_app

    settings = Settings(
        instance=state_dir(directory) / "instance",
        database_url=database_url(directory),
        origin=info.origin,
        dev=False,
    )
    # No passphrase and no private-data key reach a mirror's app: it has no key to open.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SUYUAN_PASSPHRASE", "SUYUAN_PRIVATE_KEY", "SUYUAN_DATABASE_URL")
    }
    app = create_app(
        {
            "SUYUAN_SETTINGS": settings,
            "SUYUAN_ENV": env,
            "SECRET_KEY": secret_key(directory),
            **config,
            "SUYUAN_READ_ONLY": True,
        }
    )
    app.before_request_funcs.setdefault(None, []).insert(0, _refuse_writes)
    return app


def create_mirror_app(
    directory: Path, config: Mapping[str, Any] | None = None, *, ingest: bool = True
) -> Flask:
    """The app serving DIR: the whole read-only site for a Suyuan log, the files otherwise.

    ``ingest``: bring the ledger database up to DIR/checkpoint first (a Suyuan
    log only; raises if that fails).  ``SUYUAN_MIRROR_SYNC_SECONDS`` in
    ``config`` (default 30; 0 turns it off) starts the periodic sync thread.
    """
    directory = directory.resolve()
    info = inspect_mirror(directory)
    settings = dict(config or {})
    settings.update(
        SUYUAN_MIRROR=str(directory),
        SUYUAN_MIRROR_ORIGIN=info.origin,
        SUYUAN_MIRROR_SITE=info.suyuan,
    )
    if info.suyuan:
        if ingest or not (state_dir(directory) / "ledger.db").exists():
            warning = first_sync(directory)
            if warning:
                log.warning("mirror of %s: %s", info.origin, warning)
        app = _suyuan_app(directory, info, settings)
    else:
        app = _foreign_app(directory, settings)
    app.register_blueprint(about)
    interval = float(app.config.get("SUYUAN_MIRROR_SYNC_SECONDS", DEFAULT_SYNC_SECONDS))
    if info.suyuan and interval > 0:
        engine = app.extensions["suyuan"]["instance"].engine
        syncer = MirrorSync(directory, engine, interval)
        app.extensions["suyuan_mirror_sync"] = syncer
        syncer.start()
    return app


def prepare(directory: Path) -> tuple[MirrorInfo, str | None]:
    """What ``suyuan serve --mirror`` does before it starts: check DIR, then sync once.

    Returns DIR's description and a warning when the sync failed but the database
    still holds an earlier verified copy (the site then serves that, and says why).
    Raises when DIR is not a verified mirror, or when the first sync of an empty
    database fails.
    """
    info = inspect_mirror(directory.resolve())
    return info, first_sync(info.directory) if info.suyuan else None


def first_sync(directory: Path) -> str | None:
    """Migrate the database's schema and sync it; a warning if it stays at an earlier copy."""
    engine = open_database(directory)  # a newer release may bring migrations
    try:
        sync(directory, engine)
    except Error as exc:
        held = stored_size(engine)
        if not held:
            raise
        return f"serving the {held} entries verified before: {exc}"
    finally:
        engine.dispose()
    return None


# --- serving under gunicorn ---------------------------------------------------------------------


def run_mirror(directory: Path, host: str, port: int, workers: int | None) -> None:
    """Serve DIR with gunicorn, like ``suyuan serve`` (web/serve.py) serves a log."""
    from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]

    resolved = directory.resolve()

    class _Mirror(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            cores = (
                len(os.sched_getaffinity(0))
                if hasattr(os, "sched_getaffinity")
                else (os.cpu_count() or 1)
            )
            options = {
                "bind": f"{host}:{port}",
                "workers": workers or 2 * cores,
                "worker_class": "gthread",
                "threads": 4,
                "accesslog": os.environ.get("SUYUAN_ACCESS_LOG", "-") or None,
                "timeout": 60,
                "preload_app": False,
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Flask:
            return create_mirror_app(resolved, _config_from_env(), ingest=False)

    _Mirror().run()


def _config_from_env() -> dict[str, Any]:
    config: dict[str, Any] = {}
    raw = os.environ.get("SUYUAN_MIRROR_SYNC_SECONDS")
    if raw:
        try:
            config["SUYUAN_MIRROR_SYNC_SECONDS"] = float(raw)
        except ValueError:
            raise ConfigError(
                f"SUYUAN_MIRROR_SYNC_SECONDS must be a number of seconds, got {raw!r}"
            ) from None
    return config


__all__ = [
    "MirrorInfo",
    "MirrorSync",
    "create_mirror_app",
    "inspect_mirror",
    "prepare",
    "run_mirror",
    "secret_key",
    "sync",
]
