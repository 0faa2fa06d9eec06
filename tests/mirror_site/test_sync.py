"""The mirror's site follows the origin: periodic sync, failures shown, one syncer at a time."""

from __future__ import annotations

import base64
import fcntl
import os
import time
from pathlib import Path

import pytest
from flask import Flask

from ledger.checkpoint import verify_checkpoint
from ledger.errors import VerificationError
from ledger.ingest import open_database, stored_size
from ledger.merkle import verify_consistency
from ledger.tiles import entry_bundles_for_size, tiles_for_size
from tests.helpers import TEST_CONFIG, Ledger, check_ledger, make_ledger
from tests.mirror_site.support import mirror_of
from web.mirror import MirrorSync, create_mirror_app, sync

CONFIG = {**TEST_CONFIG, "SUYUAN_MIRROR_SYNC_SECONDS": 0, "SUYUAN_SCAN_FLUSH_THREAD": False}


@pytest.fixture
def origin(tmp_path: Path) -> Ledger:
    made = make_ledger(f"sqlite:///{tmp_path / 'origin.db'}")
    made.register("coop", "producer")
    made.notes(5)
    return made


def audit(directory: Path) -> None:
    engine = open_database(directory)
    try:
        check_ledger(engine)
    finally:
        engine.dispose()


def wait_for(predicate: object, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail("the mirror did not catch up in time")
        time.sleep(0.05)


def dispose(app: Flask) -> None:
    syncer = app.extensions.get("suyuan_mirror_sync")
    if syncer is not None:
        syncer.stop()
    app.extensions["suyuan"]["instance"].engine.dispose()


def test_the_site_follows_the_origin_through_the_periodic_sync(
    origin: Ledger, tmp_path: Path
) -> None:
    directory = mirror_of(origin.log, tmp_path / "mirror")
    app = create_mirror_app(directory, {**CONFIG, "SUYUAN_MIRROR_SYNC_SECONDS": 0.05})
    try:
        client = app.test_client()
        old = origin.log.latest_checkpoint()
        assert client.get("/healthz").get_json()["size"] == old.size
        origin.notes(30, prefix="later")
        new = origin.log.latest_checkpoint()
        mirror_of(origin.log, directory)  # what `suyuan mirror` does next
        wait_for(lambda: client.get("/healthz").get_json()["size"] == new.size)
        assert client.get(f"/e/{new.size - 1}").status_code == 200
        proof = client.get(f"/api/v1/proofs/consistency?from={old.size}&to={new.size}").get_json()
        assert proof["checkpoint"] == new.note
        verifier = origin.log.verifier  # the origin's key, not the mirror's copy of it
        before, _ = verify_checkpoint(old.note, verifier)
        after, _ = verify_checkpoint(proof["checkpoint"], verifier)
        hashes = [base64.b64decode(h) for h in proof["hashes"]]
        verify_consistency(old.size, new.size, hashes, before.root, after.root)
        listed = client.get("/api/v1/checkpoints").get_json()["checkpoints"]
        assert [(c["size"], c["note"]) for c in listed] == [
            (new.size, new.note),
            (old.size, old.note),
        ]
        site = client.get("/mirror.json").get_json()["site"]
        assert site["size"] == new.size and site["error"] is None and site["synced"]
    finally:
        dispose(app)
    audit(directory)


def test_a_failed_sync_keeps_the_verified_copy_and_says_why(origin: Ledger, tmp_path: Path) -> None:
    directory = mirror_of(origin.log, tmp_path / "mirror")
    app = create_mirror_app(directory, CONFIG)
    try:
        client = app.test_client()
        size = origin.log.size()
        origin.notes(3, prefix="tampered")
        mirror_of(origin.log, directory)
        bundle = directory / entry_bundles_for_size(origin.log.size())[-1].path()
        bundle.write_bytes(bundle.read_bytes().replace(b"tampered 2", b"tampered X"))
        with pytest.raises(VerificationError, match=f"seq {size + 2}: "):
            sync(directory)
        page = client.get("/mirror", headers={"Accept-Language": "en"}).get_data(as_text=True)
        assert 'data-mirror-sync="failed"' in page and f"seq {size + 2}: " in page
        assert f"as it was at {size} entries" in page
        assert client.get("/healthz").get_json()["size"] == size
        assert client.get(f"/e/{size}").status_code == 404
        mirror_of(origin.log, directory)  # the honest bundle again
        assert sync(directory).size == origin.log.size()
        site = client.get("/mirror.json").get_json()["site"]
        assert site["error"] is None and site["size"] == origin.log.size()
        assert "data-mirror-sync" not in client.get("/mirror").get_data(as_text=True)
    finally:
        dispose(app)


def test_one_process_syncs_at_a_time(origin: Ledger, tmp_path: Path) -> None:
    directory = mirror_of(origin.log, tmp_path / "mirror")
    engine = open_database(directory)
    syncer = MirrorSync(directory, engine, interval=3600)
    fd = os.open(directory / ".mirror" / "sync.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another worker is syncing
        assert syncer.run_once() is None
        assert stored_size(engine) == 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        result = syncer.run_once()
        assert result is not None and result.size == stored_size(engine) == origin.log.size()
    finally:
        os.close(fd)
        engine.dispose()


def test_a_tree_kept_by_suyuan_mirror_is_served_and_followed(
    origin: Ledger, tmp_path: Path
) -> None:
    """The whole path: `suyuan mirror` (ledger.mirror) keeps DIR, `serve --mirror` serves it."""
    from ledger.mirror import mirror_once
    from ledger.remote import directory_fetcher
    from ledger.static import export

    upstream = tmp_path / "published"
    export(origin.log, upstream)
    directory = tmp_path / "mirror"
    mirror_once(directory_fetcher(upstream), origin.log.verifier, directory)
    app = create_mirror_app(directory, CONFIG)
    try:
        client = app.test_client()
        size = origin.log.size()
        assert client.get(f"/e/{size - 1}").status_code == 200
        status = client.get("/mirror.json").get_json()
        assert status["checked"] and status["site"]["size"] == size
        paths = [t.path() for t in tiles_for_size(size)] + [
            "checkpoint",
            f"tile/entries/000.p/{size}",
        ]
        for path in paths:
            assert client.get(f"/log/{path}").data == (upstream / path).read_bytes(), path
        origin.notes(300, prefix="grown")
        export(origin.log, upstream)
        mirror_once(directory_fetcher(upstream), origin.log.verifier, directory)
        assert sync(directory).size == origin.log.size()
        assert client.get("/healthz").get_json()["size"] == origin.log.size()
        assert (
            client.get("/log/tile/entries/000").data == (upstream / "tile/entries/000").read_bytes()
        )
    finally:
        dispose(app)
    audit(directory)
