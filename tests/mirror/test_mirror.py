"""``ledger.mirror``: a verified copy of a tlog-tiles log, through its tiles alone.

The logs are real Suyuan ledgers exported with ``ledger.static.export`` and
served over loopback HTTP (``http.server`` on the export directory, sockets and
all), plus hand-made trees for what a ledger cannot produce (a log that signs a
rule-breaking entry, a foreign log of opaque entries).  Every honest mirror must
end up byte-for-byte equal to the log's own export and pass ``audit_remote``;
every dishonest remote must be refused, naming what was wrong, keeping the
evidence and leaving DIR unchanged.

The logs (``logs``, ``big``) are described in tests/mirror/conftest.py.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from ledger.checkpoint import Checkpoint, verify_checkpoint
from ledger.entry import build_entry, make_statement, sign_statement
from ledger.errors import ConfigError, Error, NotFound, StorageError
from ledger.merkle import leaf_hash
from ledger.mirror import Mirror, MirrorBusy, MirrorRefused, MirrorResult, mirror_once
from ledger.note import Signer, Verifier, sign_note
from ledger.remote import Fetcher, audit_remote, directory_fetcher, http_fetcher
from ledger.tiles import entry_bundles_for_size
from tests.helpers import new_signer, now
from tests.mirror.support import (
    SIZES,
    Big,
    Counting,
    Logs,
    bundles,
    copy_tree,
    files_of,
    flip,
    serve_directory,
    tree,
    write_tree,
)


def mirror(
    remote: Path | Fetcher, directory: Path, verifier: Verifier, **options: Any
) -> MirrorResult:
    fetch = directory_fetcher(remote) if isinstance(remote, Path) else remote
    options.setdefault("sleep", lambda _s: None)
    return mirror_once(fetch, verifier, directory, **options)


def audited(directory: Path, verifier: Verifier, since: str | None = None) -> int:
    """``suyuan verify --url DIR``'s audit of the mirror; returns the size it verified."""
    return audit_remote(
        directory_fetcher(directory), verifier, since_note=since, workers=0
    ).result.size


def refused(
    match: str, source: Path | Fetcher, directory: Path, verifier: Verifier
) -> MirrorRefused:
    before = tree(directory, state=False) if directory.exists() else {}
    with pytest.raises(MirrorRefused, match=match) as caught:
        mirror(source, directory, verifier)
    after = tree(directory, state=False) if directory.exists() else {}
    assert after == before, "a refused run changed DIR"
    assert not (directory / ".mirror" / "staging").exists(), "a refused run left staging behind"
    return caught.value


# --- honest logs --------------------------------------------------------------------------


def test_mirror_over_http_first_then_only_new_bundles(logs: Logs, tmp_path: Path) -> None:
    directory = tmp_path / "mirror"
    with serve_directory(logs.exports[300]) as served:
        first = mirror(http_fetcher(served.url), directory, logs.verifier, source=served.url)
        assert (first.origin, first.old_size, first.size, first.new) == (
            logs.log.origin,
            0,
            300,
            300,
        )
        assert first.rules and first.log == "suyuan"
        assert first.note == logs.note(300)
        assert tree(directory) == tree(logs.exports[300])  # byte for byte the log's own export
        assert audited(directory, logs.verifier) == 300

        served.root = logs.exports[700]
        served.requests.clear()
        second = mirror(http_fetcher(served.url), directory, logs.verifier)
        assert (second.old_size, second.size, second.new) == (300, 700, 400)
        # Only the bundles that changed: 000 was full at 300 and is never fetched again.
        assert sorted(bundles(served.requests)) == ["tile/entries/001", "tile/entries/002.p/188"]
        assert "tile/0/000" not in served.requests
        assert second.fetched == len(served.requests)
        mirrored = tree(directory)
        assert set(mirrored) == files_of(700) | files_of(300)  # old partial tiles stay
        assert {p: mirrored[p] for p in files_of(700)} == tree(logs.exports[700])
        assert audited(directory, logs.verifier, since=logs.note(300)) == 700

        served.requests.clear()
        third = mirror(http_fetcher(served.url), directory, logs.verifier)
        assert (third.old_size, third.size, third.new, third.fetched) == (700, 700, 0, 1)
        assert served.requests == ["checkpoint"]

    state = directory / ".mirror"
    assert (state / "vkey").read_text() == logs.verifier.vkey + "\n"
    assert not (state / "staging").exists()
    leftovers = [p for p in directory.rglob("*") if ".tmp" in p.name]
    assert leftovers == []


def test_on_entries_gets_every_verified_leaf_once_in_order(logs: Logs, tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    leaves: list[bytes] = []

    def on_entries(start: int, batch: list[bytes]) -> None:
        assert start == len(leaves)
        calls.append((start, len(batch)))
        leaves.extend(batch)

    directory = tmp_path / "mirror"
    for size in SIZES:
        mirror(logs.exports[size], directory, logs.verifier, on_entries=on_entries)
    assert leaves == logs.log.leaves(0, 700)
    assert calls == [(0, 256), (256, 44), (300, 200), (500, 12), (512, 188)]


def test_rule_state_survives_between_runs_or_is_replayed(logs: Logs, tmp_path: Path) -> None:
    directory = tmp_path / "mirror"
    said: list[str] = []
    mirror(logs.exports[300], directory, logs.verifier, say=said.append)
    snapshot = directory / ".mirror" / "rules.pickle"
    assert snapshot.is_file()
    mirror(logs.exports[500], directory, logs.verifier, say=said.append)
    assert not [s for s in said if "replaying" in s]  # loaded from rules.pickle

    snapshot.write_bytes(pickle.dumps({"version": 1, "snapshot": os.system}))  # not allowed
    result = mirror(logs.exports[700], directory, logs.verifier, say=said.append)
    assert result.rules and result.size == 700
    assert any("ignoring" in s and "posix.system is not allowed" in s for s in said)
    assert said[-1] == "replaying the ledger's rules over the mirrored entries 0..499"


def test_rules_replay_from_an_older_snapshot_after_no_rules(logs: Logs, tmp_path: Path) -> None:
    directory = tmp_path / "mirror"
    said: list[str] = []
    mirror(logs.exports[300], directory, logs.verifier)
    skipped = mirror(logs.exports[500], directory, logs.verifier, rules=False)
    assert not skipped.rules and skipped.log == "suyuan"
    checked = mirror(logs.exports[700], directory, logs.verifier, say=said.append)
    assert checked.rules
    assert said == ["replaying the ledger's rules over the mirrored entries 300..499"]


def test_follow_keeps_the_rule_state_in_memory(logs: Logs, tmp_path: Path) -> None:
    directory = tmp_path / "mirror"
    source = {"root": logs.exports[300]}
    said: list[str] = []
    follower = Mirror(
        lambda path: directory_fetcher(source["root"])(path),
        logs.verifier,
        directory,
        say=said.append,
    )
    assert follower.run().size == 300
    (directory / ".mirror" / "rules.pickle").unlink()
    source["root"] = logs.exports[700]
    assert follower.run().new == 400
    assert said == []  # no replay: the state of the last run was still in memory


def test_mirror_of_a_big_log_with_workers_resumes_after_a_crash(
    big: Big, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ledger.mirror.PARALLEL_THRESHOLD", 1000)  # 3,002 new: worker processes
    verifier = big.ledger.log.verifier
    directory = tmp_path / "mirror"
    mirror(big.exports[2_000], directory, verifier)
    before = (directory / "checkpoint").read_bytes()
    needed = {b.path() for b in entry_bundles_for_size(5_002)[2_000 // 256 :]}

    def crash(path: str, count: int) -> BaseException | None:
        return RuntimeError("killed") if path.startswith("tile/entries/") and count > 6 else None

    crashing = Counting(directory_fetcher(big.exports[5_002]), fail=crash)
    with pytest.raises(RuntimeError, match="killed"):
        mirror(crashing, directory, verifier, workers=2)
    assert (directory / "checkpoint").read_bytes() == before  # the last verified checkpoint
    assert audited(directory, verifier) == 2_000
    staging = directory / ".mirror" / "staging"
    staged = {str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file()}
    staged_bundles = {p for p in staged if p.startswith("tile/entries/")}
    assert len(staged_bundles) >= 5

    # A staged copy damaged meanwhile is re-verified, dropped and fetched again.
    damaged = sorted(staged_bundles)[-1]
    flip(staging / damaged, 40)
    counting = Counting(directory_fetcher(big.exports[5_002]))
    result = mirror(counting, directory, verifier, workers=2)
    assert (result.old_size, result.size, result.rules) == (2_000, 5_002, True)
    fetched = set(bundles(counting.paths))
    assert fetched == (needed - staged_bundles) | {damaged}
    assert result.reused == len(staged_bundles) - 1
    assert audited(directory, verifier, since=big.ledger.log.checkpoint(2_000).note) == 5_002
    assert {p: b for p, b in tree(directory).items() if p in files_of(5_002)} == tree(
        big.exports[5_002]
    )
    assert not staging.exists()


def test_partial_tiles_deleted_by_the_log_are_read_from_full_ones(big: Big, tmp_path: Path) -> None:
    """c2sp tlog-tiles: a log MAY delete a partial tile once the full one exists."""
    remote = copy_tree(big.exports[5_002], tmp_path / "remote")
    older = big.exports[2_000]
    shutil.copy(older / "tile/1/000.p/7", remote / "tile/1/000.p/7")  # level 1 is never full here
    (remote / "checkpoint").write_text(big.ledger.log.checkpoint(2_000).note)
    assert not (remote / "tile/0/007.p/208").exists()
    assert not (remote / "tile/entries/007.p/208").exists()
    directory = tmp_path / "mirror"
    counting = Counting(directory_fetcher(remote))
    result = mirror(counting, directory, big.ledger.log.verifier)
    assert result.size == 2_000
    assert {"tile/0/007.p/208", "tile/0/007", "tile/entries/007"} <= set(counting.paths)
    assert tree(directory) == tree(older)  # the mirror serves the partials itself


def test_transient_errors_are_retried_not_found_is_not(logs: Logs, tmp_path: Path) -> None:
    failures = {"tile/entries/000": 2, "checkpoint": 1}
    sleeps: list[float] = []

    def flaky(path: str, _count: int) -> BaseException | None:
        if failures.get(path, 0) > 0:
            failures[path] -= 1
            return Error(f"http://x/{path}: HTTP 503")
        return None

    counting = Counting(directory_fetcher(logs.exports[300]), fail=flaky)
    result = mirror(counting, tmp_path / "mirror", logs.verifier, sleep=sleeps.append)
    assert result.size == 300
    assert sorted(sleeps) == [0.5, 0.5, 1.0]
    assert counting.paths.count("tile/entries/000") == 3

    missing = Counting(directory_fetcher(tmp_path / "nothing-here"))
    with pytest.raises(NotFound, match="no checkpoint at the remote"):
        mirror(missing, tmp_path / "other", logs.verifier, sleep=sleeps.append)
    assert missing.paths == ["checkpoint"]


def test_new_cosignatures_on_the_same_checkpoint_are_served(logs: Logs, tmp_path: Path) -> None:
    directory = tmp_path / "mirror"
    mirror(logs.exports[700], directory, logs.verifier)
    remote = copy_tree(logs.exports[700], tmp_path / "remote")
    witness = new_signer("witness.example")
    text = Checkpoint(logs.log.origin, 700, logs.log.checkpoint(700).checkpoint.root).text()
    cosigned = sign_note(text, [logs.ledger.log_signer, witness])
    (remote / "checkpoint").write_text(cosigned)
    result = mirror(remote, directory, logs.verifier)
    assert result.new == 0
    assert (directory / "checkpoint").read_text() == cosigned
    assert audited(directory, logs.verifier) == 700


# --- dishonest remotes --------------------------------------------------------------------


def test_rollback_is_refused_with_evidence(logs: Logs, tmp_path: Path) -> None:
    directory = tmp_path / "mirror"
    mirror(logs.exports[700], directory, logs.verifier)
    caught = refused("the remote log rolled back", logs.exports[500], directory, logs.verifier)
    assert "size 500, the mirror holds size 700" in str(caught)
    assert "an older checkpoint" in str(caught)
    evidence = caught.evidence
    assert evidence is not None and evidence.parent == directory / ".mirror" / "evidence"
    assert "rollback" in evidence.name
    assert (evidence / "mirrored.checkpoint").read_text() == logs.note(700)
    assert (evidence / "remote.checkpoint").read_text() == logs.note(500)
    assert "rolled back" in (evidence / "reason.txt").read_text()
    # The same incident again keeps one folder, not two.
    again = refused("rolled back", logs.exports[500], directory, logs.verifier)
    assert again.evidence == evidence
    assert audited(directory, logs.verifier) == 700


def test_fork_at_the_same_size_is_refused_with_both_notes(logs: Logs, tmp_path: Path) -> None:
    directory = tmp_path / "mirror"
    mirror(logs.exports[700], directory, logs.verifier)
    caught = refused("the remote log forked", logs.fork_same, directory, logs.verifier)
    evidence = caught.evidence
    assert evidence is not None
    ours = verify_checkpoint((evidence / "mirrored.checkpoint").read_text(), logs.verifier)[0]
    theirs = verify_checkpoint((evidence / "remote.checkpoint").read_text(), logs.verifier)[0]
    assert ours.size == theirs.size == 700 and ours.root != theirs.root  # proof of the fork


def test_fork_at_a_larger_size_is_refused_at_the_first_bundle(logs: Logs, tmp_path: Path) -> None:
    directory = tmp_path / "mirror"
    mirror(logs.exports[500], directory, logs.verifier)
    counting = Counting(directory_fetcher(logs.fork_more))
    said: list[str] = []
    with pytest.raises(MirrorRefused, match="the remote log forked") as caught:
        mirror(counting, directory, logs.verifier, say=said.append, prefetch=1)
    message = str(caught.value)
    assert "checkpoint for size 720 signs another entry at seq 300 than the mirrored " in message
    assert "checkpoint for size 500" in message
    assert said and "do not prove its checkpoint for size 720 consistent" in said[0]
    # Refused at the first bundle (with one fetched ahead), not after downloading the log.
    assert bundles(counting.paths) == ["tile/entries/001", "tile/entries/002.p/208"]
    evidence = caught.value.evidence
    assert evidence is not None and "fork" in evidence.name
    assert (evidence / "served" / "tile/entries/001").is_file()
    assert audited(directory, logs.verifier) == 500


def test_rollback_to_a_forked_root_says_so(logs: Logs, tmp_path: Path) -> None:
    directory = tmp_path / "mirror"
    mirror(logs.fork_more, directory, logs.verifier)
    caught = refused("rolled back", logs.exports[700], directory, logs.verifier)
    assert "does NOT match the mirrored tree at that size: a fork" in str(caught)


def leaf_offset(bundle: Path, k: int) -> int:
    """Where leaf ``k``'s bytes start in an entry bundle file."""
    data, pos = bundle.read_bytes(), 0
    for _ in range(k):
        pos += 2 + int.from_bytes(data[pos : pos + 2], "big")
    return pos + 2


def test_tampered_entry_bundle_is_named(logs: Logs, tmp_path: Path) -> None:
    directory = tmp_path / "mirror"
    mirror(logs.exports[300], directory, logs.verifier)
    remote = copy_tree(logs.exports[700], tmp_path / "remote")
    bundle = remote / "tile/entries/001"
    flip(bundle, leaf_offset(bundle, 130) + 20)  # seq 386
    caught = refused(
        r"entry bundle tile/entries/001: seq 386 does not hash to the leaf the checkpoint for "
        "size 700 signs",
        remote,
        directory,
        logs.verifier,
    )
    assert "the entry was altered" in str(caught)
    assert caught.evidence is not None
    served = caught.evidence / "served" / "tile/entries/001"
    assert served.read_bytes() == (remote / "tile/entries/001").read_bytes()
    # Once the remote serves the honest bundle again, the mirror catches up (nothing was kept).
    assert mirror(logs.exports[700], directory, logs.verifier).size == 700


def test_tampered_bundle_prefix_already_mirrored_is_named(logs: Logs, tmp_path: Path) -> None:
    directory = tmp_path / "mirror"
    mirror(logs.exports[300], directory, logs.verifier)
    remote = copy_tree(logs.exports[700], tmp_path / "remote")
    bundle = remote / "tile/entries/001"
    flip(bundle, leaf_offset(bundle, 0) + 20)  # seq 256: mirrored already at size 300
    refused(
        r"entry bundle tile/entries/001: seq 256 is not the entry mirrored at size 300 .*"
        "the entry was altered",
        remote,
        directory,
        logs.verifier,
    )


@pytest.mark.parametrize(
    ("path", "hash_index", "match"),
    [
        ("tile/0/002.p/188", 5, r"tile tile/0/002.p/188: hash 5 is not the hash of entry seq 517"),
        ("tile/1/000.p/2", 1, r"tile tile/1/000.p/2: hash 1 \(entries 256..511\) differs"),
    ],
)
def test_tampered_tile_is_named(
    logs: Logs, tmp_path: Path, path: str, hash_index: int, match: str
) -> None:
    directory = tmp_path / "mirror"
    mirror(logs.exports[300], directory, logs.verifier)
    remote = copy_tree(logs.exports[700], tmp_path / "remote")
    flip(remote / path, hash_index * 32 + 7)
    caught = refused(match, remote, directory, logs.verifier)
    assert caught.evidence is not None and (caught.evidence / "served" / path).is_file()


def test_bad_signature_and_wrong_key_are_refused_without_evidence(
    logs: Logs, tmp_path: Path
) -> None:
    remote = copy_tree(logs.exports[300], tmp_path / "remote")
    note = (remote / "checkpoint").read_text()
    sig = note.rstrip("\n").rsplit(" ", 1)[1]
    forged = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    (remote / "checkpoint").write_text(note.replace(sig, forged))
    directory = tmp_path / "mirror"
    with pytest.raises(
        MirrorRefused, match="the remote checkpoint was refused: it does not verify"
    ):
        mirror(remote, directory, logs.verifier)
    assert not (directory / "checkpoint").exists()
    assert not (directory / ".mirror" / "evidence").exists()  # anyone can write a bad note

    impostor = new_signer(logs.log.origin).verifier
    with pytest.raises(
        MirrorRefused, match=re.escape(f"does not verify with the key {impostor.key_id}")
    ):
        mirror(logs.exports[300], directory, impostor)
    assert not (directory / ".mirror" / "state.json").exists()
    # The right key still works in the same directory: nothing was fixed by the failures.
    assert mirror(logs.exports[300], directory, logs.verifier).size == 300


def test_two_runs_on_one_directory_do_not_interleave(logs: Logs, tmp_path: Path) -> None:
    directory = tmp_path / "mirror"
    inside, release = threading.Event(), threading.Event()
    honest = directory_fetcher(logs.exports[300])

    def slow(path: str) -> bytes:
        if path == "checkpoint":
            inside.set()
            assert release.wait(30)
        return honest(path)

    outcome: list[object] = []
    thread = threading.Thread(
        target=lambda: outcome.append(mirror(slow, directory, logs.verifier)), daemon=True
    )
    thread.start()
    assert inside.wait(30)
    with pytest.raises(MirrorBusy, match=rf"being mirrored by another run \(pid {os.getpid()}"):
        mirror(logs.exports[300], directory, logs.verifier)
    release.set()
    thread.join(30)
    assert isinstance(outcome[0], MirrorResult) and outcome[0].size == 300
    assert mirror(logs.exports[500], directory, logs.verifier).size == 500  # lock released


def test_unusable_directories_are_refused_before_writing(logs: Logs, tmp_path: Path) -> None:
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(ConfigError, match="is not a directory"):
        mirror(logs.exports[300], afile, logs.verifier)
    assert afile.read_text() == "x"
    other = tmp_path / "other"
    other.mkdir()
    (other / "index.html").write_text("hello")
    with pytest.raises(ConfigError, match=r"holds files .* but is not a mirror"):
        mirror(logs.exports[300], other, logs.verifier)
    assert [p.name for p in other.iterdir()] == ["index.html"]
    mirrored = tmp_path / "mirror"
    mirror(logs.exports[300], mirrored, logs.verifier)
    stranger = new_signer("someone.else/log").verifier
    with pytest.raises(
        ConfigError, match=re.escape(f"mirrors the log with key {logs.verifier.vkey}")
    ):
        mirror(logs.exports[300], mirrored, stranger)


def test_damaged_directory_is_a_storage_error(logs: Logs, tmp_path: Path) -> None:
    directory = tmp_path / "mirror"
    mirror(logs.exports[300], directory, logs.verifier)
    flip(directory / "tile/0/001.p/44", 3)
    with pytest.raises(StorageError, match="damaged: its tiles do not produce the root"):
        mirror(logs.exports[700], directory, logs.verifier)


# --- the rules of a Suyuan log, and foreign logs ------------------------------------------------


def _with_bad_entry(logs: Logs) -> list[bytes]:
    """The log's first 40 leaves, then an entry signed by a key the registry never saw."""
    leaves = logs.log.leaves(0, 40)
    stranger = new_signer("stranger")
    signed = sign_statement(
        make_statement("note", {"text": "not allowed"}, logs.log.origin, now()), [stranger]
    )
    last = logs.log.entry(39)
    bad = build_entry(40, leaf_hash(leaves[-1]), max(now(), last.time), signed)
    return [*leaves, bad.leaf]


def test_an_entry_breaking_the_rules_is_refused_after_the_tree_verifies(
    logs: Logs, tmp_path: Path
) -> None:
    remote = tmp_path / "remote"
    write_tree(remote, _with_bad_entry(logs), logs.ledger.log_signer)
    directory = tmp_path / "mirror"
    caught = refused(
        r"breaks its rules, in the tree its checkpoint for size 41 signs: seq 40: ",
        remote,
        directory,
        logs.verifier,
    )
    assert "stranger" in str(caught)
    assert caught.evidence is not None
    assert (caught.evidence / "served" / "tile/entries/000.p/41").is_file()
    assert not (directory / "checkpoint").exists()

    tree_only = mirror(remote, directory, logs.verifier, rules=False)
    assert (tree_only.size, tree_only.rules, tree_only.log) == (41, False, "suyuan")


def test_a_foreign_log_of_opaque_entries_is_mirrored_by_its_tree(tmp_path: Path) -> None:
    key = Signer("foreign-key", new_signer("x").private_key)  # not named after the origin
    origin = "foreign.example/log"
    leaves = [b"", b"\x00\xff" * 10, *(f"record {i}".encode() for i in range(2, 600))]
    remote = tmp_path / "remote"
    write_tree(remote, [], key, origin)  # the empty log: size 0, root SHA-256("")
    directory = tmp_path / "mirror"
    empty = mirror(remote, directory, key.verifier, origin=origin)
    assert (empty.size, empty.new, empty.log) == (0, 0, "")
    assert (directory / "checkpoint").read_bytes() == (remote / "checkpoint").read_bytes()
    write_tree(remote, leaves[:300], key, origin)
    with pytest.raises(MirrorRefused, match=r"origin 'foreign\.example/log' is not the expected"):
        mirror(remote, tmp_path / "elsewhere", key.verifier)  # the key's name is not the origin
    first = mirror(remote, directory, key.verifier)  # DIR remembers the origin it was given
    assert (first.size, first.log, first.rules) == (300, "opaque", False)
    write_tree(remote, leaves, key, origin)
    second = mirror(remote, directory, key.verifier, origin=origin)
    assert (second.old_size, second.size) == (300, 600)
    assert tree(directory) == {**tree(remote), "vkey": (key.verifier.vkey + "\n").encode()}
