"""The ``suyuan`` command line, end to end on a real instance folder (SQLite)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ledger.cli import main
from ledger.db import make_engine
from ledger.log import Log
from tests.helpers import ORIGIN, check_ledger, dump, env_for


class Cli:
    def __init__(self, tmp_path: Path) -> None:
        self.instance = tmp_path / "instance"
        self.env = env_for(self.instance)
        self.runner = CliRunner()

    def __call__(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None
    ) -> Result:
        return self.runner.invoke(
            main, list(args), input=input, env={**self.env, **(env or {})}, catch_exceptions=False
        )

    @property
    def engine(self):  # type: ignore[no-untyped-def]
        return make_engine(f"sqlite:///{self.instance / 'suyuan.db'}")


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    made = Cli(tmp_path)
    result = made("init", "--org", "讷河市扶贫办")
    assert result.exit_code == 0, result.output
    return made


def test_init_prints_the_vkey_and_is_idempotent(cli: Cli) -> None:
    vkey = cli("log", "vkey").output.strip()
    assert vkey.startswith(ORIGIN + "+")
    again = cli("init")
    assert again.exit_code == 0
    assert again.stdout.strip() == vkey
    assert "nothing changed" in again.stderr
    assert stat.S_IMODE((cli.instance / "log.key").stat().st_mode) == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in (cli.instance / "keys" / "admin.key").read_bytes()
    assert check_ledger(cli.engine).size == 1


def test_init_refuses_to_fork_an_existing_key(cli: Cli) -> None:
    (cli.instance / "suyuan.db").unlink()
    result = cli("init")
    assert result.exit_code == 2
    assert "would fork" in result.stderr


def test_keys_new_list_revoke(cli: Cli) -> None:
    made = cli("keys", "new", "coop1", "--role", "producer", "--org", "讷河赤松茸合作社")
    assert made.exit_code == 0, made.output
    seq, key_id = made.stdout.splitlines()[0].split()
    assert seq == "1" and key_id.startswith("coop1+")
    listed = cli("keys", "list").stdout
    assert key_id in listed and "producer" in listed and "held-here" in listed
    revoked = cli("keys", "revoke", "coop1", "--reason", "手机丢失 lost phone")
    assert revoked.exit_code == 0 and f"revoked {key_id}" in revoked.stdout
    assert "revoked@2" in cli("keys", "list").stdout
    assert check_ledger(cli.engine).size == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["keys", "new", "bad name", "--role", "producer", "--org", "x"], "key name"),
        (["keys", "new", "ok", "--role", "emperor", "--org", "x"], "emperor"),
        (["keys", "new", "ok", "--role", "producer", "--org", ""], "org"),
        (["keys", "new", "admin", "--role", "producer", "--org", "x"], "exists"),
        (["keys", "revoke", "nobody", "--reason", "x"], "0 active keys"),
    ],
)
def test_keys_refusals_leave_nothing_behind(cli: Cli, args: list[str], message: str) -> None:
    before = dump(cli.engine)
    files = sorted(p.name for p in (cli.instance / "keys").iterdir())
    result = cli(*args)
    assert result.exit_code == 2
    assert message in result.output
    assert dump(cli.engine) == before
    assert sorted(p.name for p in (cli.instance / "keys").iterdir()) == files


def test_append_prints_seq_and_leaf_hash(cli: Cli) -> None:
    cli("keys", "new", "coop1", "--role", "producer", "--org", "合作社")
    lines = "\n".join(
        json.dumps({"kind": "note", "body": {"text": f"批次 {i}"}}, ensure_ascii=False)
        for i in range(3)
    )
    result = cli("append", "--key", "coop1", input=lines + "\n")
    assert result.exit_code == 0, result.output
    out = [line.split() for line in result.stdout.splitlines()]
    assert [int(seq) for seq, _ in out] == [2, 3, 4]
    log = Log.open(cli.engine)
    for seq, leaf_hash in out:
        assert log.entry(int(seq)).leaf_hash().hex() == leaf_hash
    assert check_ledger(cli.engine).size == 5


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        (
            '{"kind":"note","body":{"text":"ok"}}\n{"kind":"note","body":{"text":\n',
            "line 2: invalid JSON",
        ),
        (
            '{"kind":"note","body":{"text":"ok"}}\n{"kind":"note","body":{"amount":1.5}}\n',
            "line 2: number 1.5",
        ),
        ('{"kind":"note","body":{"text":"ok","text":"x"}}\n', "line 1: duplicate object key"),
        ('{"kind":"nope","body":{}}\n', "unknown kind"),
        ('{"kind":"note"}\n', "line 1: expected"),
        ("", "no statements"),
        ('{"kind":"note","body":{"text":"' + "x" * 70000 + '"}}\n', "65535"),
    ],
)
def test_append_refusals_write_nothing(cli: Cli, stdin: str, message: str) -> None:
    before = dump(cli.engine)
    result = cli("append", "--key", "admin", input=stdin)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert dump(cli.engine) == before


def test_append_needs_a_key_for_unsigned_statements(cli: Cli) -> None:
    result = cli("append", input='{"kind":"note","body":{"text":"x"}}\n')
    assert result.exit_code == 2 and "--key" in result.stderr


def test_offline_multi_party_signing(cli: Cli) -> None:
    cli("keys", "new", "village", "--role", "village_approver", "--org", "某村")
    cli("keys", "new", "township", "--role", "township_approver", "--org", "某镇")
    first = cli("sign", "--key", "village", input='{"kind":"note","body":{"text":"双认定"}}\n')
    assert first.exit_code == 0, first.output
    second = cli("sign", "--key", "township", input=first.stdout)
    signed = json.loads(second.stdout)
    assert len(signed["signatures"]) == 2
    result = cli("append", input=second.stdout)
    assert result.exit_code == 0, result.output
    entry = Log.open(cli.engine).entry(int(result.stdout.split()[0]))
    assert len(entry.signed.signatures) == 2
    # A tampered pre-signed statement is refused.
    signed["statement"]["body"]["text"] = "改了 changed"
    bad = cli("append", input=json.dumps(signed, ensure_ascii=False) + "\n")
    assert bad.exit_code == 1 and "does not verify" in bad.stderr


def test_verify_save_since_and_export(cli: Cli, tmp_path: Path) -> None:
    saved = tmp_path / "cp.txt"
    ok = cli("verify", "--save", str(saved))
    assert ok.exit_code == 0 and ok.stdout.strip() == "OK 1 entries"
    cli("append", "--key", "admin", input='{"kind":"note","body":{"text":"x"}}\n')
    later = cli("verify", "--since", str(saved))
    assert later.exit_code == 0 and later.stdout.strip() == "OK 2 entries"
    exported = cli("export", str(tmp_path / "static"))
    assert exported.exit_code == 0 and "exported 2 entries" in exported.stdout
    vkey = cli("log", "vkey").stdout.strip()
    remote = cli("verify", "--url", str(tmp_path / "static"), "--vkey", vkey, "--since", str(saved))
    assert remote.exit_code == 0 and remote.stdout.strip() == "OK 2 entries"
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("other.example/log\n1\n" + "A" * 43 + "=\n\n— other.example/log AAAA\n")
    bad = cli("verify", "--since", str(foreign))
    assert bad.exit_code == 1 and bad.stdout.startswith("FAIL")


def test_verify_argument_errors(cli: Cli) -> None:
    assert cli("verify", "--url", "/nonexistent").exit_code == 2
    assert cli("verify", "--vkey", "x").exit_code == 2
    result = cli("verify", "--url", "/tmp", "--vkey", "garbage")
    assert result.exit_code == 2 and "error:" in result.stderr


def test_checkpoint_command(cli: Cli) -> None:
    note = cli("log", "checkpoint").stdout
    assert note.startswith(f"{ORIGIN}\n1\n") and "\n\n— " in note


def test_tokens(cli: Cli) -> None:
    token = cli("token", "new", "shop-1").stdout.strip()
    assert token.startswith("syt_")
    assert "shop-1" in cli("token", "list").stdout
    assert cli("token", "new", "shop-1").exit_code == 2
    assert cli("token", "revoke", "shop-1").exit_code == 0
    assert "revoked" in cli("token", "list").stdout
    assert cli("token", "revoke", "shop-1").exit_code == 2


def test_wrong_or_missing_passphrase(cli: Cli) -> None:
    wrong = cli(
        "append",
        "--key",
        "admin",
        input='{"kind":"note","body":{"text":"x"}}\n',
        env={"SUYUAN_PASSPHRASE": "hunter2-secret"},
    )
    assert wrong.exit_code == 2 and "decrypt" in wrong.stderr
    assert "hunter2" not in wrong.output  # the passphrase is never echoed


def test_commands_before_init(tmp_path: Path) -> None:
    fresh = Cli(tmp_path)
    for args in (["log", "vkey"], ["keys", "list"], ["verify"]):
        result = fresh(*args)
        assert result.exit_code in (1, 2), args
        assert "init" in result.output or "no log" in result.output
