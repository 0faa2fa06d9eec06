"""A C2SP tlog-tiles log made by Go's transparency-log code, for interoperability tests.

``tests/interop/golog/main.go`` is a small program on golang.org/x/mod's
``sumdb/tlog`` (tree hashing, tiles, proofs) and ``sumdb/note`` (signed
notes), built offline from Debian's ``golang-go`` and
``golang-golang-x-mod-dev``.  This module builds it once per test session and
drives it:

* :func:`build_go_log` makes a static C2SP tlog-tiles tree (``checkpoint``,
  ``tile/<L>/<N>[.p/<W>]``, ``tile/entries/<N>[.p/<W>]``) whose entries are
  :func:`go_entry` byte strings, not Suyuan entries;
* :meth:`GoLog.consistency_proof` and :meth:`GoLog.inclusion_proof` are Go's
  ``tlog.ProveTree`` / ``tlog.ProveRecord``;
* :func:`go_verify` has Go check any C2SP tlog-tiles tree (e.g. a
  ``suyuan export``) through its tiles alone.

Tests call :func:`require_go` first: it skips with the reason when Go or the
x/mod sources are missing, and fails instead when ``SUYUAN_REQUIRE_GO=1``
(CI sets it), so CI cannot pass by skipping.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import pytest

__all__ = [
    "DEFAULT_ORIGIN",
    "GOLOG_SOURCE",
    "GoLog",
    "build_go_log",
    "go_available",
    "go_entry",
    "go_verify",
    "golog_binary",
    "require_go",
]

GOLOG_SOURCE = Path(__file__).resolve().with_name("golog") / "main.go"
"""The Go program's only source file."""

DEFAULT_ORIGIN = "go.interop.example/log"
"""Origin line (and note key name) of a Go log unless build_go_log is told otherwise."""

GOPATH = Path(os.environ.get("SUYUAN_GOPATH", "/usr/share/gocode"))
"""Where Debian's golang-golang-x-mod-dev puts golang.org/x/mod (GO111MODULE=off)."""

_X_MOD_PACKAGES = ("sumdb/tlog/tlog.go", "sumdb/tlog/tile.go", "sumdb/note/note.go")
_TIMEOUT = 120  # seconds for any one Go invocation (a cold build takes about one)

# Entry shape; main.go's entry() MUST stay in step.
_EMPTY_INDEX = 5
_BIG_INDEX = 7
_BIG_SIZE = 1000


def go_entry(index: int) -> bytes:
    """Entry ``index`` of every Go log (the same bytes main.go's ``entry`` writes).

    ``go-entry-<i>`` plus ``i % 23`` repetitions of `` ~`` and a newline, except
    entry 5, which is empty, and entry 7, which is 1000 bytes long.
    """
    if index == _EMPTY_INDEX:
        return b""
    if index == _BIG_INDEX:
        head = f"go-entry-{index} "
        body = "0123456789" * (_BIG_SIZE // 10)
        return (head + body[: _BIG_SIZE - len(head) - 1] + "\n").encode()
    return f"go-entry-{index}{' ~' * (index % 23)}\n".encode()


def _go_command() -> str | None:
    return shutil.which("go") or shutil.which("go", path="/usr/lib/go/bin")


def _missing() -> str | None:
    """Why the Go log cannot be built here, or None when it can."""
    if _go_command() is None:
        return "no `go` command (install golang-go, e.g. `make system-deps` as root)"
    sources = GOPATH / "src" / "golang.org" / "x" / "mod"
    absent = [p for p in _X_MOD_PACKAGES if not (sources / p).is_file()]
    if absent:
        return (
            f"golang.org/x/mod sources not found under {sources} (missing {', '.join(absent)}; "
            "install golang-golang-x-mod-dev, e.g. `make system-deps` as root, "
            "or set SUYUAN_GOPATH)"
        )
    return None


def go_available() -> bool:
    """True when ``go`` and the golang.org/x/mod sumdb sources are installed."""
    return _missing() is None


def require_go() -> None:
    """Skip the calling test when Go is missing; fail instead under SUYUAN_REQUIRE_GO=1."""
    reason = _missing()
    if reason is None:
        return
    if os.environ.get("SUYUAN_REQUIRE_GO") == "1":
        pytest.fail(f"SUYUAN_REQUIRE_GO=1 but {reason}", pytrace=False)
    pytest.skip(reason)


_built: dict[str, Path] = {}
_workdir: Path | None = None


def _session_dir() -> Path:
    global _workdir
    if _workdir is None:
        _workdir = Path(tempfile.mkdtemp(prefix="suyuan-golog-"))
        atexit.register(shutil.rmtree, _workdir, True)
    return _workdir


def _go_env(workdir: Path) -> dict[str, str]:
    """An offline GOPATH-mode build: no modules, no proxy, no user go.env."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "GO111MODULE": "off",
        "GOPATH": str(GOPATH),
        "GOCACHE": str(workdir / "gocache"),
        "GOFLAGS": "",
        "GOPROXY": "off",
        "GOENV": "off",
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
    }


def golog_binary() -> Path:
    """Return the built Go program, building it on first use (cached by source hash).

    Call :func:`require_go` first.  A failed build raises RuntimeError with
    Go's output: with Go installed, the program not building is a defect.
    """
    source = GOLOG_SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    binary = _built.get(digest)
    if binary is not None and binary.exists():
        return binary
    go = _go_command()
    if go is None:
        raise RuntimeError(_missing() or "no go command")
    workdir = _session_dir()
    binary = workdir / f"golog-{digest}"
    result = subprocess.run(
        [go, "build", "-o", str(binary), GOLOG_SOURCE.name],
        cwd=GOLOG_SOURCE.parent,
        env=_go_env(workdir),
        capture_output=True,
        text=True,
        timeout=_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"go build of {GOLOG_SOURCE} failed:\n{result.stdout}{result.stderr}")
    _built[digest] = binary
    return binary


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(golog_binary()), *args],
        capture_output=True,
        text=True,
        timeout=_TIMEOUT,
        check=False,
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"golog {' '.join(args[:1])} failed: {result.stderr.strip()}")
    return result


def _proof(stdout: str) -> list[bytes]:
    return [base64.b64decode(line, validate=True) for line in stdout.splitlines()]


@dataclass
class GoLog:
    """A Go-built log in ``directory``; ``grow`` extends it, the other methods ask Go.

    ``skey`` is the log's note signer key (a throwaway test key, in Go's
    ``PRIVATE+KEY+...`` format); ``vkey`` its verifier key; the key name is
    ``origin``.  ``checkpoints`` holds the note published at each size the log
    has had.
    """

    directory: Path
    origin: str
    vkey: str
    skey: str = field(repr=False)
    size: int = 0
    checkpoints: dict[int, str] = field(default_factory=dict)

    def grow(self, new_size: int) -> str:
        """Extend the log to ``new_size`` entries and publish (return) its checkpoint.

        Go writes the new entry bundles and tiles (full ones never change; each
        level gets a new partial tile for the new width, older partial tiles
        stay), then the checkpoint last.
        """
        if new_size < self.size:
            raise ValueError(f"a log only grows: it has {self.size} entries, asked for {new_size}")
        _run("build", "-dir", str(self.directory), "-skey", self.skey, "-size", str(new_size))
        self.size = new_size
        note = (self.directory / "checkpoint").read_text(encoding="utf-8")
        self.checkpoints[new_size] = note
        return note

    def checkpoint_note(self, size: int) -> str:
        """The log's signed checkpoint note for ``size`` (<= the current size).

        Sizes the log was published at come from :attr:`checkpoints`; others
        are signed by Go on demand (Ed25519 is deterministic, so re-signing a
        published size gives the same note).
        """
        if size in self.checkpoints:
            return self.checkpoints[size]
        result = _run(
            "checkpoint", "-dir", str(self.directory), "-skey", self.skey, "-size", str(size)
        )
        return result.stdout

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        """Go's ``tlog.ProveTree(new, old)``: the RFC 9162 consistency proof, as bytes."""
        result = _run("prove", "-dir", str(self.directory), "-old", str(old), "-new", str(new))
        return _proof(result.stdout)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """Go's ``tlog.ProveRecord(size, index)``: the RFC 9162 inclusion proof, as bytes."""
        result = _run(
            "inclusion", "-dir", str(self.directory), "-index", str(index), "-size", str(size)
        )
        return _proof(result.stdout)

    def entry(self, index: int) -> bytes:
        """Entry ``index`` of this log (see :func:`go_entry`)."""
        if not 0 <= index < self.size:
            raise IndexError(f"entry {index}: the log has {self.size} entries")
        return go_entry(index)

    def go_verify(
        self, directory: Path, vkey: str, since: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Same as :func:`go_verify` (a convenience for tests holding a GoLog)."""
        return go_verify(directory, vkey, since)


def build_go_log(directory: Path, sizes: list[int], *, origin: str = DEFAULT_ORIGIN) -> GoLog:
    """Make a new Go log in ``directory`` (a fresh key) and grow it through ``sizes``.

    ``sizes`` MUST be non-empty and non-decreasing; a checkpoint is published
    at each.  Call :func:`require_go` first.
    """
    if not sizes or any(b < a for a, b in pairwise(sizes)) or sizes[0] < 0:
        raise ValueError(f"sizes: expected a non-empty non-decreasing list, found {sizes}")
    if (directory / "checkpoint").exists():
        raise ValueError(f"{directory} already holds a log")
    directory.mkdir(parents=True, exist_ok=True)
    skey, vkey = _run("keygen", origin).stdout.splitlines()
    log = GoLog(directory=directory, origin=origin, vkey=vkey, skey=skey)
    for size in sizes:
        log.grow(size)
    return log


def go_verify(
    directory: Path, vkey: str, since: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Have Go verify the C2SP tlog-tiles tree in ``directory`` against ``vkey``.

    Go opens the checkpoint with ``note.Open``, authenticates the tiles with
    ``tlog.TileHashReader``, checks every entry bundle against its leaf hashes
    and inclusion proofs (``tlog.ProveRecord`` / ``tlog.CheckRecord``) and,
    given ``since`` (an older checkpoint file), consistency with it
    (``tlog.ProveTree`` / ``tlog.CheckTree``).  Returns the finished process:
    exit 0 and ``OK <size> entries`` on stdout when the tree verifies, exit 1
    and the reason on stderr otherwise.
    """
    args = ["verify", "-dir", str(directory), "-vkey", vkey]
    if since is not None:
        args += ["-since", str(since)]
    return _run(*args, check=False)
