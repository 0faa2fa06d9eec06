"""``suyuan mirror`` on the command line: the real ``suyuan`` in its own process
against real HTTP servers (the live Flask site, and ``http.server`` over exports),
a ``kill -9`` in the middle of a catch-up, ``--follow``, the lock, and refused
arguments (exit 2, nothing written).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from werkzeug.serving import make_server

from ledger import demo
from ledger.checkpoint import verify_checkpoint
from ledger.cli import main
from ledger.mirror import mirror_once
from ledger.remote import audit_remote, directory_fetcher
from ledger.static import export
from tests.conftest import Site
from tests.helpers import ORIGIN
from tests.mirror.support import Big, Logs, bundles, grow, serve_directory, tree


def suyuan() -> list[str]:
    script = Path(sys.executable).with_name("suyuan")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ledger.cli"]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SUYUAN_")}


def run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*suyuan(), *args],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def size_of(directory: Path, vkey: str) -> int:
    from ledger.note import parse_vkey

    path = directory / "checkpoint"
    if not path.exists():
        return 0
    return verify_checkpoint(path.read_bytes(), parse_vkey(vkey))[0].size


@pytest.fixture
def live(site: Site) -> Iterator[str]:
    """The real site (werkzeug, threaded, real sockets) with the demo data loaded."""
    demo.load_demo(site.instance, households=40)
    server = make_server("127.0.0.1", 0, site.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/log"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_mirror_the_live_site_then_verify_the_mirror(site: Site, live: str, tmp_path: Path) -> None:
    log = site.log
    vkey = log.verifier.vkey
    size = log.size()
    directory = tmp_path / "mirror"

    first = run("mirror", live, "--vkey", vkey, "--dir", str(directory))
    assert first.returncode == 0, first.stderr
    assert first.stdout == f"mirrored {ORIGIN} size {size} (+{size} new)\n"
    verified = run("verify", "--url", str(directory), "--vkey", vkey)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout == f"OK {size} entries\n"

    grow(log, site.admin, size + 300, text="later")
    second = run("mirror", live, "--vkey", vkey, "--dir", str(directory), "--quiet")
    assert second.returncode == 0, second.stderr
    assert second.stdout == f"mirrored {ORIGIN} size {size + 300} (+300 new)\n"
    assert second.stderr == ""
    exported = tmp_path / "export"
    export(log, exported)
    mirrored = tree(directory)
    assert {p: mirrored[p] for p in tree(exported)} == tree(exported)
    state = directory / ".mirror" / "state.json"
    assert f'"url": "{live}"' in state.read_text() and '"log": "suyuan"' in state.read_text()


def test_kill_9_mid_catch_up_then_resume(big: Big, tmp_path: Path) -> None:
    verifier = big.ledger.log.verifier
    directory = tmp_path / "mirror"
    mirror_once(directory_fetcher(big.exports[2_000]), verifier, directory)
    before = (directory / "checkpoint").read_bytes()
    staging = directory / ".mirror" / "staging" / "tile" / "entries"

    with serve_directory(big.exports[5_002]) as served:
        served.set_delay(lambda path: 0.4 if path.startswith("tile/entries/") else 0.0)
        process = subprocess.Popen(
            [*suyuan(), "mirror", served.url, "--vkey", verifier.vkey, "--dir", str(directory)],
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if staging.is_dir() and len(list(staging.iterdir())) >= 3:
                break
            assert process.poll() is None, process.communicate()
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
        assert process.returncode == -signal.SIGKILL
        staged = {f"tile/entries/{p.name}" for p in staging.iterdir() if p.is_file()}
        assert len(staged) >= 3
        # The previous verified checkpoint and its tree are intact.
        assert (directory / "checkpoint").read_bytes() == before
        assert audit_remote(directory_fetcher(directory), verifier, workers=0).result.size == 2_000

        served.set_delay(lambda _path: 0.0)
        served.requests.clear()
        done = run("mirror", served.url, "--vkey", verifier.vkey, "--dir", str(directory))
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"mirrored {ORIGIN} size 5002 (+3002 new)\n"
        fetched = set(bundles(served.requests))
        assert fetched and not fetched & staged  # what was staged was not downloaded again
    assert audit_remote(directory_fetcher(directory), verifier, workers=0).result.size == 5_002


def test_follow_polls_until_a_refusal(logs: Logs, tmp_path: Path) -> None:
    vkey = logs.verifier.vkey
    directory = tmp_path / "mirror"
    with serve_directory(logs.exports[300]) as served:
        args = ["mirror", served.url, "--vkey", vkey, "--dir", str(directory)]
        process = subprocess.Popen(
            [*suyuan(), *args, "--follow", "--interval", "0.2", "--quiet"],
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            for root, size in [(logs.exports[300], 300), (logs.exports[700], 700)]:
                served.root = root
                deadline = time.monotonic() + 60
                while size_of(directory, vkey) != size:
                    assert time.monotonic() < deadline and process.poll() is None
                    time.sleep(0.05)
            served.root = logs.exports[500]  # the log rolls back: --follow stops, exit 1
            out, err = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 1, err
    lines = out.splitlines()
    assert lines[:2] == [
        f"mirrored {ORIGIN} size 300 (+300 new)",
        f"mirrored {ORIGIN} size 700 (+400 new)",
    ]
    assert lines[2].startswith(
        "FAIL the remote log rolled back: it serves a checkpoint for size 500"
    )
    assert f"(evidence: {directory}/.mirror/evidence/" in lines[2]
    assert size_of(directory, vkey) == 700


def test_follow_stops_cleanly_on_interrupt(logs: Logs, tmp_path: Path) -> None:
    directory = tmp_path / "mirror"
    process = subprocess.Popen(
        [
            *suyuan(),
            "mirror",
            str(logs.exports[300]),
            "--vkey",
            logs.verifier.vkey,
            "--dir",
            str(directory),
            "--follow",
            "--interval",
            "0.2",
        ],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while size_of(directory, logs.verifier.vkey) != 300:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    time.sleep(0.5)  # a few empty polls: they print nothing
    process.send_signal(signal.SIGINT)
    out, _err = process.communicate(timeout=30)
    assert process.returncode == 0
    assert out == f"mirrored {ORIGIN} size 300 (+300 new)\n"


def test_refusal_exits_1_naming_it_with_evidence(logs: Logs, tmp_path: Path) -> None:
    directory = tmp_path / "mirror"
    vkey = logs.verifier.vkey
    assert cli("mirror", str(logs.exports[700]), "--vkey", vkey, "--dir", str(directory))[0] == 0
    code, out, _err = cli("mirror", str(logs.fork_same), "--vkey", vkey, "--dir", str(directory))
    assert code == 1
    assert out.startswith("FAIL the remote log forked: its checkpoint for size 700 has a different")
    evidence = Path(out.rsplit("(evidence: ", 1)[1].rstrip(")\n"))
    assert (evidence / "remote.checkpoint").read_text() == (
        logs.fork_same / "checkpoint"
    ).read_text()


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--vkey": "not-a-vkey"}, "error: expected a vkey 'name+hex8+base64'"),
        ({"URL": "ftp://example.org/log"}, "is neither an http(s) URL nor a directory"),
        ({"--dir": "FILE"}, "is not a directory"),
        ({"--dir": "NOT-A-MIRROR"}, "holds files (index.html…) but is not a mirror"),
        ({"--dir": "OTHER-LOG"}, "mirrors the log with key other.example/log+"),
        ({"--interval": "5"}, "--interval goes with --follow"),
        ({"--once": None, "--follow": None}, "--once and --follow exclude each other"),
    ],
)
def test_refused_arguments_exit_2_and_write_nothing(
    logs: Logs, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    not_mirror = tmp_path / "site"
    not_mirror.mkdir()
    (not_mirror / "index.html").write_text("hello")
    other = tmp_path / "other"
    from tests.helpers import new_signer
    from tests.mirror.support import write_tree

    other_signer = new_signer("other.example/log")
    write_tree(tmp_path / "other-remote", [b"x"], other_signer)
    mirror_once(directory_fetcher(tmp_path / "other-remote"), other_signer.verifier, other)
    places = {"FILE": afile, "NOT-A-MIRROR": not_mirror, "OTHER-LOG": other}
    options = {"URL": str(logs.exports[300]), "--vkey": logs.verifier.vkey, "--dir": "new"}
    options.update(change)
    args = ["mirror", options.pop("URL")]
    for name, value in options.items():
        args.append(name)
        if value is not None:
            args.append(str(places.get(value, tmp_path / value if name == "--dir" else value)))
    before = tree(tmp_path, state=True)
    code, out, err = cli(*args)
    assert code == 2, (out, err)
    assert message in err and out == ""
    assert tree(tmp_path, state=True) == before  # nothing written anywhere
    assert not (tmp_path / "new").exists()


def test_a_second_run_on_a_busy_directory_exits_2(logs: Logs, tmp_path: Path) -> None:
    directory = tmp_path / "mirror"
    inside, release = threading.Event(), threading.Event()
    honest = directory_fetcher(logs.exports[300])

    def slow(path: str) -> bytes:
        if path == "checkpoint":
            inside.set()
            assert release.wait(60)
        return honest(path)

    thread = threading.Thread(
        target=mirror_once, args=(slow, logs.verifier, directory), daemon=True
    )
    thread.start()
    try:
        assert inside.wait(30)
        busy = run(
            "mirror", str(logs.exports[300]), "--vkey", logs.verifier.vkey, "--dir", str(directory)
        )
    finally:
        release.set()
        thread.join(60)
    assert busy.returncode == 2
    assert f"is being mirrored by another run (pid {os.getpid()} holds" in busy.stderr
    assert busy.stdout == ""
    assert size_of(directory, logs.verifier.vkey) == 300
