"""Publishing cosignatures on ``/log/checkpoint``, and ``suyuan witnesses …`` (CLI and loop)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ledger import witnessing
from ledger.checkpoint import verify_checkpoint
from ledger.cli import main
from ledger.cli_witness_log import witnessing_subprocess
from ledger.cosignature import verify_cosignatures
from ledger.note import open_note
from tests.conftest import Site
from tests.helpers import ORIGIN, check_ledger, env_for
from tests.web.support import add_notes
from tests.witnessing.support import running_witness


def test_log_checkpoint_carries_the_cosignatures(site: Site, tmp_path: Path) -> None:
    log = site.log
    client = site.app.test_client()
    with running_witness(tmp_path / "w", log.verifier.vkey) as witness:
        # no witnesses: the log's note, unchanged
        assert client.get("/log/checkpoint").get_data(as_text=True) == log.latest_checkpoint().note
        witnessing.add_witness(log.engine, witness.vkey, witness.url)
        add_notes(log, site.admin, 3)
        witnessing.witness_round(log)
        response = client.get("/log/checkpoint")
        assert response.status_code == 200
        assert response.content_type == "text/plain; charset=utf-8"
        note = response.get_data(as_text=True)
        latest = log.latest_checkpoint()
        assert note == witnessing.cosigned_note(log, latest) and note.startswith(latest.note)
        lines = note.rpartition("\n\n")[2].splitlines()
        assert len(lines) == 2 and lines[1].startswith(f"— {witness.name} ")
        # still a valid checkpoint for a client that knows only the log key
        checkpoint, opened = verify_checkpoint(note, log.verifier, ORIGIN)
        assert checkpoint.size == latest.size and len(opened.unverified) == 1
        assert len(open_note(note, [log.verifier, witness.verifier]).verified) == 2
        assert [n for n, _ in verify_cosignatures(note, [witness.verifier])] == [witness.name]

        # a new checkpoint is served at once, before any witness has seen it (no lines)
        add_notes(log, site.admin, 1)
        newest = client.get("/log/checkpoint").get_data(as_text=True)
        assert newest == log.latest_checkpoint().note
        assert verify_cosignatures(newest, [witness.verifier]) == []
        witnessing.witness_round(log)
        assert verify_cosignatures(
            client.get("/log/checkpoint").get_data(as_text=True), [witness.verifier]
        )
    check_ledger(log.engine)


# --- the CLI ------------------------------------------------------------------------------


class Cli:
    def __init__(self, tmp_path: Path) -> None:
        self.env = env_for(tmp_path / "instance")
        self.runner = CliRunner()

    def __call__(self, *args: str) -> Result:
        return self.runner.invoke(main, list(args), env=self.env, catch_exceptions=False)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    made = Cli(tmp_path)
    assert made("init").exit_code == 0
    return made


def test_witnesses_commands(cli: Cli, tmp_path: Path) -> None:
    vkey = cli("log", "vkey").output.strip()
    assert "no witnesses configured" in cli("witnesses", "list").output
    with running_witness(tmp_path / "w", vkey) as witness:
        vkey_file = tmp_path / "witness.vkey"
        vkey_file.write_text(f"\n{witness.vkey}\n", encoding="utf-8")
        added = cli("witnesses", "add", str(vkey_file), witness.url)
        assert added.exit_code == 0, added.output
        key_id = witness.verifier.key_id
        assert f"added witness {key_id} at {witness.url}/add-checkpoint" in added.output

        again = cli("witnesses", "add", witness.vkey, witness.url)
        assert again.exit_code == 2 and "configured already" in again.output
        wrong = cli("witnesses", "add", vkey, witness.url)  # the log's own key
        assert wrong.exit_code == 2 and "0x04" in wrong.output
        bad_url = cli("witnesses", "add", witness.vkey.replace("w1", "w2"), "witness.example")
        assert bad_url.exit_code == 2

        listed = cli("witnesses", "list").output
        assert f"{witness.name}\t{key_id}\t{witness.url}\tactive\tacknowledged 0\t" in listed
        assert "cosigned none\tnever" in listed

        once = cli("witnesses", "run", "--once")
        assert once.exit_code == 0, once.output
        assert f"size 1: 1/1 witnesses current; {witness.name}: cosigned" in once.output
        listed = cli("witnesses", "list").output
        assert "acknowledged 1\tcosigned 1\tcosigned at " in listed

        assert "disabled witness" in cli("witnesses", "disable", witness.name).output
        assert "\tdisabled\t" in cli("witnesses", "list").output
        assert cli("witnesses", "run", "--once").output.strip() == "size 1: no active witnesses"
        assert "enabled witness" in cli("witnesses", "enable", key_id).output
        assert cli("witnesses", "remove", "nobody").exit_code == 2
    # the witness is gone: run --once says so and exits 1
    assert cli("keys", "new", "coop", "--role", "producer", "--org", "Co-op").exit_code == 0
    down = cli("witnesses", "run", "--once", "--timeout", "2")
    assert down.exit_code == 1 and "unreachable" in down.output
    assert "unreachable" in cli("witnesses", "list").output
    assert f"removed witness {key_id}" in cli("witnesses", "remove", witness.vkey).output
    assert "no witnesses configured" in cli("witnesses", "list").output


def _wait(predicate: object, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    pytest.fail("timed out waiting")


@pytest.mark.slow
def test_run_loop_in_its_own_process_stops_on_sigterm(site: Site, tmp_path: Path) -> None:
    log = site.log
    with running_witness(tmp_path / "w", log.verifier.vkey) as witness:
        witnessing.add_witness(log.engine, witness.vkey, witness.url)
        env = env_for(site.instance.settings.instance)
        output = tmp_path / "run.out"
        with output.open("wb") as out:
            child = subprocess.Popen(
                [sys.executable, "-m", "ledger.cli", "witnesses", "run", "--interval", "0.2"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        idle = f"size 3: 1/1 witnesses current; {witness.name}: up-to-date".encode()
        try:
            _wait(lambda: witnessing.latest_witnessed(log.engine) is not None)
            add_notes(log, site.admin, 2)
            _wait(lambda: idle in output.read_bytes())  # cosigned, then an idle round
        finally:
            child.send_signal(signal.SIGTERM)
            code = child.wait(timeout=20)
        assert code == 0
        lines = output.read_text().splitlines()
        assert any(f"size 3: 1/1 witnesses current; {witness.name}: cosigned" in x for x in lines)
        assert any("up-to-date" in x for x in lines)  # one line per round, idle rounds too


@pytest.mark.slow
def test_serve_starts_the_loop_only_with_active_witnesses(site: Site, tmp_path: Path) -> None:
    log = site.log
    instance = site.instance
    with witnessing_subprocess(instance):  # no witnesses: no child
        pass
    with running_witness(tmp_path / "w", log.verifier.vkey) as witness:
        witnessing.add_witness(log.engine, witness.vkey, witness.url)
        with witnessing_subprocess(instance, enabled=False):  # read-only serve: no child
            time.sleep(0.5)
        assert witnessing.latest_witnessed(log.engine) is None
        assert witness.requests == []
        with witnessing_subprocess(instance):
            _wait(lambda: witnessing.latest_witnessed(log.engine) is not None)
            add_notes(log, site.admin, 1)
            _wait(lambda: (witnessing.latest_witnessed(log.engine) or log.checkpoint(1)).size == 2)
        sent = len(witness.requests)
        add_notes(log, site.admin, 1)
        time.sleep(1.0)  # the child is gone: nothing more is submitted
        assert len(witness.requests) == sent
