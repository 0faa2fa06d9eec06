"""Auditing a log through its C2SP tlog-tiles alone: ``ledger.remote`` and ``suyuan verify --url``.

The auditor trusts only the log's verifier key.  These tests give it honest
logs (an exported directory, and the Flask app served over loopback HTTP) and
dishonest ones: bytes flipped in entry bundles, replaced tiles, checkpoints
signed by another key or re-signed over a wrong root, a rollback, and a log
rewritten under the same key after a shared prefix.  Every honest audit must
say ``OK <n> entries``; every dishonest one must FAIL and say where.

The shared logs are built once per module:

* ``original``: 700 entries, checkpoints at every hundred; exported to one
  directory at sizes 300, 500 and 700 in turn (so it holds the partial tiles
  of those three checkpoints, as the spec requires of a log);
* ``fork``: the original's database as it was at size 300, grown under the same
  log key to 720 *different* entries;
* ``big``: 5,002 entries, enough for the audit's worker processes.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from werkzeug.serving import make_server

import ledger.verify
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.cli import main
from ledger.db import make_engine
from ledger.entry import make_statement, sign_statement
from ledger.errors import Error, VerificationError
from ledger.log import Log
from ledger.note import Signer
from ledger.remote import audit_remote, directory_fetcher, fetcher_for, http_fetcher
from ledger.static import export
from ledger.tiles import decode_entry_bundle, entry_bundles_for_size, tiles_for_size
from ledger.verify import PARALLEL_THRESHOLD
from tests.conftest import Site
from tests.helpers import ORIGIN, Ledger, env_for, make_ledger, new_signer, now

SIZE = 700
FORK_AT = 300
FORK_SIZE = 720
BIG = 5_002

# --- building logs ------------------------------------------------------------------------


def grow(log: Log, signer: Signer, upto: int, *, batch: int = 100, text: str = "entry") -> None:
    """Append notes ``f"{text} {seq:05d}"`` until the log has ``upto`` entries.

    Signatures are made here, in process, by a registered key: the append may skip
    re-checking them (what ``suyuan append --key`` does).
    """
    size = log.size()
    while size < upto:
        count = min(batch - size % batch, upto - size)  # checkpoints at multiples of batch
        items = [
            sign_statement(
                make_statement("note", {"text": f"{text} {seq:05d}"}, log.origin, now()), [signer]
            )
            for seq in range(size, size + count)
        ]
        log.append(items, signatures_verified=True)
        size += count


def backup(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database (WAL included)."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


@dataclass
class Original:
    ledger: Ledger
    coop: Signer
    exported: Path  # written at sizes 300, 500, 700

    @property
    def log(self) -> Log:
        return self.ledger.log

    @property
    def vkey(self) -> str:
        return self.ledger.log.verifier.vkey

    def note(self, size: int) -> str:
        return self.ledger.log.checkpoint(size).note


@dataclass
class Fork:
    log: Log
    exported: Path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("remote")


@pytest.fixture(scope="module")
def original(workdir: Path) -> Iterator[Original]:
    made = make_ledger(f"sqlite:///{workdir / 'original.db'}")
    coop = made.register("coop")
    exported = workdir / "original-export"
    grow(made.log, coop, FORK_AT)
    backup(workdir / "original.db", workdir / "fork.db")
    export(made.log, exported)
    grow(made.log, coop, 500)
    export(made.log, exported)
    grow(made.log, coop, SIZE)
    export(made.log, exported)
    yield Original(made, coop, exported)
    made.engine.dispose()


@pytest.fixture(scope="module")
def fork(original: Original, workdir: Path) -> Iterator[Fork]:
    engine = make_engine(f"sqlite:///{workdir / 'fork.db'}")
    log = Log.open(engine, original.ledger.log_signer)  # the same log key
    assert log.size() == FORK_AT
    grow(log, original.coop, FORK_SIZE, text="rewritten")
    exported = workdir / "fork-export"
    export(log, exported)
    yield Fork(log, exported)
    engine.dispose()


@pytest.fixture(scope="module")
def big(workdir: Path) -> Iterator[tuple[Ledger, Path]]:
    made = make_ledger(f"sqlite:///{workdir / 'big.db'}")
    coop = made.register("coop")
    grow(made.log, coop, BIG, batch=1000)
    exported = workdir / "big-export"
    export(made.log, exported)
    yield made, exported
    made.engine.dispose()


# --- running the auditor --------------------------------------------------------------------


def suyuan() -> list[str]:
    script = Path(sys.executable).with_name("suyuan")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ledger.cli"]


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real ``suyuan`` command, in its own process."""
    return subprocess.run(
        [*suyuan(), *args],
        env=env_for(tmp_path / "auditor-instance"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def cli(*args: str) -> Result:
    """``suyuan`` in process (click's runner); anything but a clean exit propagates."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def audit(directory: Path, original: Original, since: str | None = None) -> Any:
    return audit_remote(
        directory_fetcher(directory), original.log.verifier, since_note=since, workers=0
    )


def copy(src: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(src, target)
    return target


def snapshot(directory: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file: its bytes, inode and mtime (to prove a file was not rewritten)."""
    return {
        str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_ino, p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def expected_files(size: int) -> set[str]:
    return (
        {t.path() for t in tiles_for_size(size)}
        | {b.path() for b in entry_bundles_for_size(size)}
        | {"checkpoint", "vkey"}
    )


def fails(directory: Path, original: Original, match: str, since: str | None = None) -> str:
    with pytest.raises(VerificationError, match=match) as caught:
        audit(directory, original, since)
    return str(caught.value)


# --- honest logs ------------------------------------------------------------------------------


def test_suyuan_export_then_audit_remote(site: Site, tmp_path: Path) -> None:
    log = site.log
    coop = new_signer("coop")
    log.append(
        [
            sign_statement(
                make_statement(
                    "key.registered",
                    {"name": "coop", "vkey": coop.verifier.vkey, "role": "producer", "org": "社"},
                    log.origin,
                    now(),
                ),
                [site.admin],
            )
        ]
    )
    grow(log, coop, 301)
    directory = tmp_path / "static"
    result = cli("export", str(directory))  # the instance comes from SUYUAN_* (the site's)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"exported 301 entries to {directory}")

    done = audit_remote(directory_fetcher(directory), log.verifier)
    latest = log.latest_checkpoint()
    assert done.result.size == 301
    assert done.checkpoint == latest.checkpoint
    assert done.note == latest.note == (directory / "checkpoint").read_text(encoding="utf-8")
    assert done.since is None
    assert set(snapshot(directory)) == expected_files(301)  # nothing else, no temp files
    assert (directory / "vkey").read_text() == log.verifier.vkey + "\n"

    verified = cli("verify", "--url", str(directory), "--vkey", log.verifier.vkey)
    assert verified.exit_code == 0, verified.output
    assert verified.stdout == "OK 301 entries\n"


def test_every_past_checkpoint_of_the_export_audits(original: Original) -> None:
    for size in [FORK_AT, 500]:
        done = audit(original.exported, original, since=original.note(size))
        assert done.result.size == SIZE and done.since is not None and done.since.size == size
    # The exported partial tiles of those checkpoints are still there (c2sp: MUST serve).
    assert (original.exported / "tile/0/001.p/44").is_file()  # size 300
    assert (original.exported / "tile/entries/001.p/244").is_file()  # size 500


def test_export_is_incremental_and_idempotent(site: Site, tmp_path: Path) -> None:
    log = site.log
    grow(log, site.admin, 301)
    directory = tmp_path / "static"
    size, written = export(log, directory)
    assert (size, written) == (301, len(expected_files(301)))
    first = snapshot(directory)

    assert export(log, directory) == (301, 0)
    assert snapshot(directory) == first  # same bytes, same inodes, same mtimes

    old_note = log.latest_checkpoint().note
    grow(log, site.admin, 700, text="later")
    size, written = export(log, directory)
    after = snapshot(directory)
    assert size == 700
    changed = {p for p in after if p not in first or after[p][0] != first[p][0]}
    assert written == len(changed)
    assert changed == expected_files(700) - {"tile/0/000", "tile/entries/000", "vkey"}
    # A full tile, once written, is never written again; old partials stay, as the spec asks.
    assert after["tile/0/000"] == first["tile/0/000"]
    assert after["tile/entries/000"] == first["tile/entries/000"]
    assert set(first) <= set(after)

    done = audit_remote(directory_fetcher(directory), log.verifier, since_note=old_note)
    assert done.result.size == 700


def _serve(site_app: Any) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, site_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def served(site: Site) -> Iterator[str]:
    yield from _serve(site.app)


def test_verify_over_http_with_save_and_since(site: Site, served: str, tmp_path: Path) -> None:
    log = site.log
    grow(log, site.admin, 300)
    vkey = log.verifier.vkey
    saved = tmp_path / "checkpoint.txt"

    first = run(tmp_path, "verify", "--url", f"{served}/log", "--vkey", vkey, "--save", str(saved))
    assert first.returncode == 0, first.stderr
    assert first.stdout == "OK 300 entries\n"
    assert saved.read_text(encoding="utf-8") == log.latest_checkpoint().note

    # The same audit in process, through the HTTP fetcher (gzip-encoded bundles included).
    fetch = http_fetcher(f"{served}/log")
    client = site.app.test_client()
    assert fetch("tile/entries/000") == client.get("/log/tile/entries/000").get_data()
    assert audit_remote(fetch, log.verifier, workers=0).note == saved.read_text(encoding="utf-8")

    grow(log, site.admin, 555, text="later")
    later = run(tmp_path, "verify", "--url", f"{served}/log", "--vkey", vkey, "--since", str(saved))
    assert later.returncode == 0, later.stderr
    assert later.stdout == "OK 555 entries\n"

    # A wrong prefix: a clear error, no traceback.
    wrong = run(tmp_path, "verify", "--url", f"{served}/nolog", "--vkey", vkey)
    assert wrong.returncode == 2
    assert wrong.stderr.startswith("error: ") and "404" in wrong.stderr
    assert "Traceback" not in wrong.stderr and wrong.stdout == ""


def test_unreachable_url_is_a_clear_error(tmp_path: Path, original: Original) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run(
        tmp_path, "verify", "--url", f"http://127.0.0.1:{port}/log", "--vkey", original.vkey
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: cannot fetch http://127.0.0.1:{port}/log/checkpoint")
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.slow
def test_a_big_log_is_audited_by_worker_processes(
    big: tuple[Ledger, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    made, directory = big
    assert BIG >= 5000 > PARALLEL_THRESHOLD
    pools: list[int] = []
    real_pool = ledger.verify.ProcessPoolExecutor

    class CountingPool(real_pool):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pools.append(kwargs.get("max_workers") or args[0])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(ledger.verify, "ProcessPoolExecutor", CountingPool)
    done = audit_remote(directory_fetcher(directory), made.log.verifier, workers=2)
    assert pools == [2]
    assert done.result.size == BIG
    assert done.checkpoint.root == made.log.latest_checkpoint().checkpoint.root

    # Tampering deep in the log is caught on the worker path too.
    tampered = copy(directory, tmp_path)
    _flip_text_digit(tampered, 4500)
    with pytest.raises(VerificationError, match=r"^seq 4500: "):
        audit_remote(directory_fetcher(tampered), made.log.verifier, workers=2)
    assert len(pools) == 2

    # And the real command, in its own process, with its default workers.
    result = run(tmp_path, "verify", "--url", str(directory), "--vkey", made.log.verifier.vkey)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"OK {BIG} entries\n"


# --- tampering, caught through tiles -------------------------------------------------------


def _bundle_for(directory: Path, seq: int) -> tuple[Path, int]:
    size = int((directory / "checkpoint").read_text(encoding="utf-8").splitlines()[1])
    bundle = entry_bundles_for_size(size)[seq // 256]
    path = directory / bundle.path()
    data = path.read_bytes()
    offset = 0
    for leaf in decode_entry_bundle(data)[: seq % 256]:
        offset += 2 + len(leaf)
    return path, offset  # offset of seq's 2-byte length prefix


def _flip(directory: Path, seq: int, needle: bytes, at: int) -> None:
    """Flip the low bit of one byte of entry ``seq``, ``at`` bytes from where ``needle`` starts
    (from where it ends, if ``at`` is negative)."""
    path, offset = _bundle_for(directory, seq)
    data = bytearray(path.read_bytes())
    length = int.from_bytes(data[offset : offset + 2], "big")
    start = data.index(needle, offset + 2, offset + 2 + length)
    data[start + at if at >= 0 else start + len(needle) + at] ^= 0x01
    path.write_bytes(bytes(data))


def _flip_text_digit(directory: Path, seq: int) -> None:
    _flip(directory, seq, f'"text":"entry {seq:05d}"'.encode(), at=-2)  # last digit


@pytest.mark.parametrize(
    ("seq", "needle", "at", "match"),
    [
        (300, None, -2, r"^seq 300: signature by coop\+[0-9a-f]{8} does not verify"),
        (0, b'"role":"admin"', 3, r"^seq 0: "),  # the genesis statement
        (5, b'"sig":"', 12, r"^seq 5: "),  # inside the signature
        (256, b'"kind":"note"', 9, r"^seq 256: .*unknown kind 'nnte'"),  # a bundle's first
        (699, b'"seq":699', -1, r"^seq 699: the entry stored here says it is seq 698"),
        (300, b'"prev":"', 10, r"^seq 300: prev"),
        # The log time is not signed by the author, so a changed time (its last digit)
        # may be caught only by the next entry's link, or for the last entry by the root.
        (300, b'"time":"', 33, r"\b300\b"),
        (699, b'"time":"', 33, r"\b699\b"),
    ],
)
def test_flipped_byte_in_an_entry_bundle_fails_naming_the_entry(
    original: Original, tmp_path: Path, seq: int, needle: bytes | None, at: int, match: str
) -> None:
    directory = copy(original.exported, tmp_path)
    if needle is None:
        _flip_text_digit(directory, seq)
    else:
        _flip(directory, seq, needle, at)
    fails(directory, original, match)
    result = cli("verify", "--url", str(directory), "--vkey", original.vkey)
    assert result.exit_code == 1
    assert result.stdout.startswith("FAIL ")
    assert re.search(match, result.stdout.removeprefix("FAIL ")), result.stdout


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        ("length_prefix", r"^entry bundle tile/entries/001: "),
        ("truncated", r"^entry bundle tile/entries/001: .*truncated"),
        ("extra_entry", r"^entry bundle tile/entries/001: .*at most 256"),
        ("empty", r"^entry bundle tile/entries/001: .*expected 256 entries, found 0"),
        ("swapped_entries", r"^seq 259: the entry stored here says it is seq 260"),
    ],
)
def test_malformed_entry_bundle_fails(
    original: Original, tmp_path: Path, damage: str, match: str
) -> None:
    directory = copy(original.exported, tmp_path)
    path = directory / "tile/entries/001"
    data = bytearray(path.read_bytes())
    leaves = decode_entry_bundle(bytes(data))
    if damage == "length_prefix":
        data[0] ^= 0x01
    elif damage == "truncated":
        del data[-1]
    elif damage == "extra_entry":
        data += len(leaves[0]).to_bytes(2, "big") + leaves[0]
    elif damage == "swapped_entries":
        leaves[3], leaves[4] = leaves[4], leaves[3]
        data = bytearray(b"".join(len(x).to_bytes(2, "big") + x for x in leaves))
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    fails(directory, original, match)
    result = cli("verify", "--url", str(directory), "--vkey", original.vkey)
    assert result.exit_code == 1
    assert re.search(match, result.stdout.removeprefix("FAIL ")), result.stdout


@pytest.mark.parametrize(
    ("tile", "damage", "seq"),
    [
        ("tile/0/001", "copy_of_tile_0", 256),
        ("tile/0/001", "one_bit", 259),  # byte 100 is in the hash of seq 256 + 3
        ("tile/0/002.p/188", "swap_two_hashes", 512),
        ("tile/0/000", "random", 0),
        ("tile/0/000", "short", 0),
        ("tile/1/000.p/2", "random", 0),
    ],
)
def test_replaced_tile_fails(
    original: Original, tmp_path: Path, tile: str, damage: str, seq: int
) -> None:
    directory = copy(original.exported, tmp_path)
    path = directory / tile
    data = bytearray(path.read_bytes())
    if damage == "copy_of_tile_0":
        data = bytearray((directory / "tile/0/000").read_bytes())
    elif damage == "one_bit":
        data[100] ^= 0x80
    elif damage == "swap_two_hashes":
        data[0:32], data[32:64] = data[32:64], data[0:32]
    elif damage == "random":
        data = bytearray(os.urandom(len(data)))
    else:
        del data[-32:]
    path.write_bytes(bytes(data))
    message = f"seq {seq}: tile {tile} does not hold the hashes of the entries it covers"
    fails(directory, original, "^" + re.escape(message))
    result = cli("verify", "--url", str(directory), "--vkey", original.vkey)
    assert result.exit_code == 1
    assert result.stdout.startswith(f"FAIL {message}")


def _other_signer(name: str = ORIGIN) -> Signer:
    return Signer(name, Ed25519PrivateKey.generate())


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (
            lambda o: sign_checkpoint(o.log.latest_checkpoint().checkpoint, _other_signer()),
            "the served checkpoint does not verify",
        ),
        (
            lambda o: sign_checkpoint(
                Checkpoint("evil.example/log", SIZE, o.log.latest_checkpoint().checkpoint.root),
                _other_signer("evil.example/log"),
            ),
            "the served checkpoint does not verify",
        ),
        (  # the log's own key over a root the entries do not have
            lambda o: sign_checkpoint(Checkpoint(ORIGIN, SIZE, bytes(32)), o.ledger.log_signer),
            r"^checkpoint for size 700: its root does not match entries 0\.\.699",
        ),
        (  # the log's own key, but the root of another size
            lambda o: sign_checkpoint(
                Checkpoint(ORIGIN, SIZE, o.log.checkpoint(500).checkpoint.root),
                o.ledger.log_signer,
            ),
            "root does not match",
        ),
        (lambda o: "not a checkpoint\n", "the served checkpoint does not verify"),
        (lambda o: b"\xff\xfe\n", "not UTF-8"),
    ],
    ids=[
        "other_key_same_name",
        "other_key_other_name",
        "wrong_root",
        "old_root",
        "garbage",
        "binary",
    ],
)
def test_replaced_checkpoint_fails(
    original: Original, tmp_path: Path, make: Any, match: str
) -> None:
    directory = copy(original.exported, tmp_path)
    note = make(original)
    path = directory / "checkpoint"
    if isinstance(note, bytes):
        path.write_bytes(note)
    else:
        path.write_text(note, encoding="utf-8")
    fails(directory, original, match)
    result = cli("verify", "--url", str(directory), "--vkey", original.vkey)
    assert result.exit_code == 1 and result.stdout.startswith("FAIL ")


def test_checkpoint_promising_entries_the_log_does_not_serve(
    original: Original, tmp_path: Path
) -> None:
    directory = copy(original.exported, tmp_path)
    note = sign_checkpoint(Checkpoint(ORIGIN, 800, bytes(32)), original.ledger.log_signer)
    (directory / "checkpoint").write_text(note, encoding="utf-8")
    with pytest.raises(Error, match="tile/entries/002"):
        audit(directory, original)
    result = cli("verify", "--url", str(directory), "--vkey", original.vkey)
    assert result.exit_code != 0
    assert "tile/entries/002" in result.output


def test_rollback_is_caught_with_since(original: Original, tmp_path: Path) -> None:
    directory = copy(original.exported, tmp_path)
    (directory / "checkpoint").write_text(original.note(500), encoding="utf-8")
    # Alone, the rolled-back log is a perfectly good log of 500 entries ...
    assert audit(directory, original).result.size == 500
    # ... but not to an auditor who saw 700.
    message = fails(directory, original, "shrank", since=original.note(SIZE))
    assert "rollback" in message and "700" in message and "500" in message
    saved = tmp_path / "saved.txt"
    saved.write_text(original.note(SIZE), encoding="utf-8")
    result = cli("verify", "--url", str(directory), "--vkey", original.vkey, "--since", str(saved))
    assert result.exit_code == 1
    assert result.stdout.startswith("FAIL the log shrank")


def test_rewritten_log_is_caught_with_since(original: Original, fork: Fork, tmp_path: Path) -> None:
    # The fork is signed by the same key and, alone, audits clean: only history tells.
    assert audit(fork.exported, original).result.size == FORK_SIZE
    for size in [1, 100, FORK_AT]:  # checkpoints of the shared prefix: still consistent
        assert audit(fork.exported, original, since=original.note(size)).result.size == FORK_SIZE
    for size in [400, 500, SIZE]:
        message = fails(fork.exported, original, "does not match", since=original.note(size))
        assert f"checkpoint for size {size}" in message
    saved = tmp_path / "saved.txt"
    saved.write_text(original.note(500), encoding="utf-8")
    result = cli(
        "verify", "--url", str(fork.exported), "--vkey", original.vkey, "--since", str(saved)
    )
    assert result.exit_code == 1
    assert result.stdout.startswith("FAIL checkpoint for size 500: its root does not match")


def test_exporting_a_fork_over_the_original_is_refused(
    original: Original, fork: Fork, tmp_path: Path
) -> None:
    directory = copy(original.exported, tmp_path)
    before = snapshot(directory)
    # Caught by the consistency proof from DIR's checkpoint before any file is written
    # (had DIR no checkpoint, the differing full tile would stop it).
    with pytest.raises(VerificationError, match="does not extend the one exported"):
        export(fork.log, directory)
    assert snapshot(directory) == before  # the checkpoint above all
    assert audit(directory, original).result.size == SIZE


def test_exporting_a_fork_that_diverges_after_the_full_tiles_is_refused(
    original: Original, fork: Fork, tmp_path: Path
) -> None:
    # DIR as `suyuan export` left it when the original had 500 entries: tile 0 full,
    # tile 1 partial (256..499).  The fork shares entries 0..299 only.
    directory = tmp_path / "at-500"
    for name in expected_files(500) - {"checkpoint"}:
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(original.exported / name, directory / name)
    (directory / "checkpoint").write_text(original.note(500), encoding="utf-8")
    assert audit(directory, original).result.size == 500
    before = snapshot(directory)
    with pytest.raises(VerificationError):
        export(fork.log, directory)
    assert snapshot(directory)["checkpoint"] == before["checkpoint"]


def test_saved_checkpoint_that_does_not_verify(original: Original, tmp_path: Path) -> None:
    saved = tmp_path / "saved.txt"
    saved.write_text(
        sign_checkpoint(original.log.latest_checkpoint().checkpoint, _other_signer()),
        encoding="utf-8",
    )
    result = cli(
        "verify", "--url", str(original.exported), "--vkey", original.vkey, "--since", str(saved)
    )
    assert result.exit_code == 1
    assert result.stdout.startswith("FAIL your saved checkpoint does not verify")


# --- the command line's refusals ----------------------------------------------------------


def test_wrong_vkey_fails(original: Original) -> None:
    for other in [_other_signer().verifier.vkey, new_signer("someone").verifier.vkey]:
        result = cli("verify", "--url", str(original.exported), "--vkey", other)
        assert result.exit_code == 1
        assert result.stdout.startswith("FAIL the served checkpoint does not verify")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--vkey", "garbage"], "error: expected a vkey"),
        (["--vkey", ORIGIN + "+00000000+AAAA"], "error: "),
        (["--vkey", ""], "error: "),
        ([], "error: --url needs --vkey"),
    ],
)
def test_bad_vkey_is_exit_2_with_a_clear_message(
    original: Original, args: list[str], message: str
) -> None:
    result = cli("verify", "--url", str(original.exported), *args)
    assert result.exit_code == 2
    assert result.stderr.startswith(message), result.stderr
    assert result.stdout == ""


def test_file_url_prefix_reads_a_directory(original: Original) -> None:
    fetch = fetcher_for("file://" + str(original.exported))
    assert fetch("checkpoint") == (original.exported / "checkpoint").read_bytes()
    done = audit_remote(fetch, original.log.verifier, workers=0)
    assert done.result.size == SIZE


def test_neither_url_nor_directory(original: Original, tmp_path: Path) -> None:
    result = cli("verify", "--url", str(tmp_path / "nowhere"), "--vkey", original.vkey)
    assert result.exit_code == 2
    assert "neither an http(s) URL nor a directory" in result.stderr


def test_garbage_vkey_in_a_real_process(original: Original, tmp_path: Path) -> None:
    result = run(tmp_path, "verify", "--url", str(original.exported), "--vkey", "garbage")
    assert result.returncode == 2
    assert result.stderr.startswith("error: expected a vkey")
    assert "Traceback" not in result.stderr
