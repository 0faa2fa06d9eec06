"""``suyuan mirror`` keeps a verified copy of a log written by Go's golang.org/x/mod
sumdb/tlog + sumdb/note (``tests/interop/golog``), and Go verifies the copy.

The Go log's entries are opaque byte strings (entry 5 is empty, entry 7 is 1,000
bytes): the mirror verifies the tree only.  It is mirrored over real HTTP at
300 entries, then grown by Go past a full level-1 tile (65,536) and mirrored
again; Go's own verifier (``tlog.TileHashReader``, ``ProveRecord``/``CheckRecord``,
``ProveTree``/``CheckTree``) then checks the mirror directory, byte for byte the
same tree as Go's.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.mirror import MirrorRefused, mirror_once
from ledger.note import parse_vkey
from ledger.remote import directory_fetcher, http_fetcher
from ledger.tiles import entry_bundles_for_size, tiles_for_size
from tests.interop.golog import GoLog, build_go_log, go_entry, go_verify, require_go
from tests.mirror.support import bundles, flip, serve_directory, tree

GROWN = 66_000


@pytest.fixture(scope="module")
def golog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GoLog]:
    require_go()
    yield build_go_log(tmp_path_factory.mktemp("golog") / "log", [6, 300])


def test_mirror_a_go_log_over_http_and_go_verifies_the_copy(golog: GoLog, tmp_path: Path) -> None:
    verifier = parse_vkey(golog.vkey)
    directory = tmp_path / "mirror"
    leaves: list[bytes] = []
    with serve_directory(golog.directory) as served:
        first = mirror_once(
            http_fetcher(served.url),
            verifier,
            directory,
            on_entries=lambda start, batch: leaves.extend(batch),
            source=served.url,
        )
        assert (first.origin, first.size, first.log, first.rules) == (
            golog.origin,
            300,
            "opaque",
            False,
        )
        saved = tmp_path / "checkpoint-300"
        saved.write_bytes((directory / "checkpoint").read_bytes())

        golog.grow(GROWN)
        served.requests.clear()
        second = mirror_once(
            http_fetcher(served.url),
            verifier,
            directory,
            on_entries=lambda start, batch: leaves.extend(batch),
        )
        assert (second.old_size, second.size) == (300, GROWN)
        assert "tile/entries/000" not in bundles(served.requests)  # full at 300 already

    assert leaves == [go_entry(i) for i in range(GROWN)]
    assert leaves[5] == b"" and len(leaves[7]) == 1000
    paths = {t.path() for t in tiles_for_size(GROWN)} | {
        b.path() for b in entry_bundles_for_size(GROWN)
    }
    assert "tile/1/000" in paths and "tile/2/000.p/1" in paths
    theirs, ours = tree(golog.directory), tree(directory)
    assert {p: ours[p] for p in paths | {"checkpoint"}} == {
        p: theirs[p] for p in paths | {"checkpoint"}
    }
    verified = go_verify(directory, golog.vkey, since=saved)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.strip() == f"OK {GROWN} entries"


def test_a_tampered_go_log_and_a_go_rollback_are_refused(tmp_path: Path) -> None:
    require_go()
    golog = build_go_log(tmp_path / "golog", [300, 800])
    verifier = parse_vkey(golog.vkey)
    directory = tmp_path / "mirror"
    mirror_once(directory_fetcher(golog.directory), verifier, directory)
    size = golog.size

    rolled = tmp_path / "rolled"
    shutil.copytree(golog.directory, rolled)
    (rolled / "checkpoint").write_text(golog.checkpoint_note(300))
    with pytest.raises(
        MirrorRefused,
        match=f"rolled back: it serves a checkpoint for size 300, the mirror holds size {size}",
    ):
        mirror_once(directory_fetcher(rolled), verifier, directory)

    golog.grow(size + 1000)
    tampered = tmp_path / "tampered"
    shutil.copytree(golog.directory, tampered)
    last = entry_bundles_for_size(size + 1000)[-1]
    flip(tampered / last.path(), 10)
    with pytest.raises(MirrorRefused, match=f"entry bundle {last.path()}: seq {last.index * 256} "):
        mirror_once(directory_fetcher(tampered), verifier, directory)
    assert mirror_once(directory_fetcher(golog.directory), verifier, directory).new == 1000
    assert go_verify(directory, golog.vkey).returncode == 0
