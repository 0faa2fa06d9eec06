"""``ledger.ingest``: a mirror's ledger database, built from verified leaves and signed notes.

The database an ingest builds must be the origin's, table for table (entries, tree
nodes, keys, log state, the origin's own checkpoint notes), so that ``suyuan verify``
passes on it.  Every refusal — a gap, a root that does not match, a tampered leaf, a
forked history, an entry breaking a rule, a note signed by another key — must leave
the database exactly as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.db import make_engine
from ledger.entry import build_entry, make_statement, sign_statement
from ledger.errors import ConfigError, InvalidInput, VerificationError
from ledger.ingest import database_url, ingest, ingest_directory, open_database
from ledger.merkle import CompactRange, leaf_hash
from ledger.note import sign_note, split_note
from ledger.tiles import entry_bundles_for_size
from tests.helpers import Ledger, check_ledger, dump, make_ledger, new_signer, now
from tests.mirror_site.support import mirror_of

LEDGER_TABLES = ("meta", "log_state", "entries", "tree_nodes", "keys")


@pytest.fixture
def origin(tmp_path: Path) -> Ledger:
    made = make_ledger(f"sqlite:///{tmp_path / 'origin.db'}")
    made.register("coop", "producer")
    made.notes(300, prefix="first")  # more than one entry bundle
    return made


@pytest.fixture
def mirror_dir(origin: Ledger, tmp_path: Path) -> Path:
    return mirror_of(origin.log, tmp_path / "mirror")


def rows(engine: Engine, table: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(f"SELECT * FROM {table} ORDER BY 1, 2"))]


def notes_by_size(engine: Engine) -> dict[int, str]:
    with engine.connect() as conn:
        return {int(s): str(n) for s, n in conn.execute(text("SELECT size, note FROM checkpoints"))}


def assert_same_ledger(origin: Ledger, mirror: Engine) -> None:
    """The mirror's ledger tables are the origin's; its checkpoints are origin-signed notes."""
    for table in LEDGER_TABLES:
        assert rows(mirror, table) == rows(origin.engine, table), table
    theirs, ours = notes_by_size(origin.engine), notes_by_size(mirror)
    assert ours and set(ours) <= set(theirs)
    for size, note in ours.items():
        assert note == theirs[size]  # verbatim: the mirror signs nothing
    assert check_ledger(mirror).size == origin.log.size()


def test_ingesting_an_exported_log_rebuilds_the_origins_database(
    origin: Ledger, mirror_dir: Path
) -> None:
    result = ingest_directory(mirror_dir)
    assert (result.before, result.size, result.checkpoints_added) == (0, origin.log.size(), 1)
    engine = make_engine(database_url(mirror_dir))
    assert_same_ledger(origin, engine)
    assert notes_by_size(engine) == {origin.log.size(): (mirror_dir / "checkpoint").read_text()}


def test_ingest_is_incremental_idempotent_and_follows_the_origin(
    origin: Ledger, mirror_dir: Path
) -> None:
    engine = open_database(mirror_dir)
    first = ingest_directory(mirror_dir, engine=engine)
    again = ingest_directory(mirror_dir, engine=engine)
    assert (again.before, again.size, again.added, again.checkpoints_added) == (
        first.size,
        first.size,
        0,
        0,
    )
    origin.register("inspector", "inspector")
    origin.notes(20, prefix="second")
    origin.log.append(  # a revocation, so the keys table changes in place too
        [
            origin.statement(
                "key.revoked",
                {"key": origin.authors["coop"].verifier.key_id, "reason": "left the co-op"},
                origin.admin,
            )
        ]
    )
    mirror_of(origin.log, mirror_dir)
    grown = ingest_directory(mirror_dir, engine=engine)
    assert (grown.before, grown.size, grown.added) == (first.size, origin.log.size(), 22)
    assert_same_ledger(origin, engine)
    assert sorted(notes_by_size(engine)) == [first.size, grown.size]


def test_the_same_leaves_again_are_compared_not_duplicated(origin: Ledger, tmp_path: Path) -> None:
    engine = open_database(tmp_path)
    size = origin.log.size()
    note = origin.log.latest_checkpoint().note
    ingest(
        engine, origin.log.origin, origin.log.verifier.vkey, 0, origin.log.leaves(0, size), [note]
    )
    before = dump(engine)
    result = ingest(
        engine,
        origin.log.origin,
        origin.log.verifier.vkey,
        100,
        origin.log.leaves(100, size),
        [note],
    )
    assert result.added == 0 and dump(engine) == before


def test_a_gap_is_refused_and_nothing_is_written(origin: Ledger, mirror_dir: Path) -> None:
    engine = open_database(mirror_dir)
    first = ingest_directory(mirror_dir, engine=engine)
    origin.notes(10, prefix="later")
    size = origin.log.size()
    before = dump(engine)
    with pytest.raises(
        InvalidInput, match=rf"start at seq {first.size + 3}.*seqs {first.size}\.\."
    ):
        ingest(
            engine,
            origin.log.origin,
            origin.log.verifier.vkey,
            first.size + 3,
            origin.log.leaves(first.size + 3, size),
            [origin.log.latest_checkpoint().note],
        )
    assert dump(engine) == before


def test_a_checkpoint_whose_root_does_not_match_the_leaves_is_refused(
    origin: Ledger, tmp_path: Path
) -> None:
    """Signed by the real log key, but over another root: the leaves do not hash to it."""
    engine = open_database(tmp_path)
    size = origin.log.size()
    real = origin.log.latest_checkpoint().checkpoint
    forged = sign_checkpoint(Checkpoint(real.origin, size, bytes(32)), origin.log_signer)
    before = dump(engine)
    with pytest.raises(VerificationError, match=f"checkpoint for size {size}: its root"):
        ingest(
            engine, real.origin, origin.log.verifier.vkey, 0, origin.log.leaves(0, size), [forged]
        )
    assert dump(engine) == before


def test_a_tampered_leaf_in_the_directory_is_refused_and_named(
    origin: Ledger, mirror_dir: Path
) -> None:
    engine = open_database(mirror_dir)
    before = dump(engine)
    bundle = entry_bundles_for_size(origin.log.size())[1]
    path = mirror_dir / bundle.path()
    data = path.read_bytes()
    target = data.index(b"first 260")  # a note's text, still valid JSON after the edit
    path.write_bytes(data[:target] + b"first 26X" + data[target + 9 :])
    with pytest.raises(VerificationError, match=r"^seq 26[0-9]: "):
        ingest_directory(mirror_dir, engine=engine)
    assert dump(engine) == before


def test_a_forked_history_is_refused(origin: Ledger, tmp_path: Path) -> None:
    """Leaves for seqs already mirrored must be the same leaves."""
    engine = open_database(tmp_path)
    size = origin.log.size()
    note = origin.log.latest_checkpoint().note
    ingest(
        engine, origin.log.origin, origin.log.verifier.vkey, 0, origin.log.leaves(0, size), [note]
    )
    before = dump(engine)
    leaves = origin.log.leaves(0, size)
    leaves[5] = leaves[6]
    with pytest.raises(VerificationError, match="seq 5: the leaf differs"):
        ingest(engine, origin.log.origin, origin.log.verifier.vkey, 0, leaves, [note])
    assert dump(engine) == before


def test_leaves_must_end_at_a_signed_checkpoint(origin: Ledger, tmp_path: Path) -> None:
    engine = open_database(tmp_path)
    early = origin.log.latest_checkpoint()
    origin.notes(5, prefix="more")
    vkey = origin.log.verifier.vkey
    size = origin.log.size()
    before = dump(engine)
    with pytest.raises(VerificationError, match=f"end at size {size}, for which no checkpoint"):
        ingest(engine, origin.log.origin, vkey, 0, origin.log.leaves(0, size), [early.note])
    with pytest.raises(VerificationError, match=f"checkpoint for size {size}: only {early.size}"):
        ingest(
            engine,
            origin.log.origin,
            vkey,
            0,
            origin.log.leaves(0, early.size),
            [early.note, origin.log.latest_checkpoint().note],
        )
    assert dump(engine) == before
    # Both notes and all the leaves: intermediate checkpoints are checked and kept too.
    result = ingest(
        engine,
        origin.log.origin,
        vkey,
        0,
        origin.log.leaves(0, size),
        [origin.log.latest_checkpoint().note, early.note],
    )
    assert result.checkpoints_added == 2
    assert sorted(notes_by_size(engine)) == [early.size, size]
    check_ledger(engine)


def test_an_entry_breaking_a_rule_is_refused_even_under_a_valid_checkpoint(
    origin: Ledger, tmp_path: Path
) -> None:
    """A log key that signs a tree with a bad entry in it does not get that entry mirrored."""
    engine = open_database(tmp_path)
    log = origin.log
    size = log.size()
    leaves = log.leaves(0, size)
    stranger = new_signer("stranger")  # never registered
    signed = sign_statement(make_statement("note", {"text": "hi"}, log.origin, now()), [stranger])
    bad = build_entry(size, leaf_hash(leaves[-1]), now(), signed).leaf
    rng = CompactRange.empty()
    for leaf in [*leaves, bad]:
        rng.append(leaf_hash(leaf))
    note = sign_checkpoint(Checkpoint(log.origin, size + 1, rng.root()), origin.log_signer)
    before = dump(engine)
    with pytest.raises(VerificationError, match=f"seq {size}: signed by unknown key"):
        ingest(engine, log.origin, log.verifier.vkey, 0, [*leaves, bad], [note])
    assert dump(engine) == before


def test_notes_by_another_key_and_databases_of_another_log_are_refused(
    origin: Ledger, tmp_path: Path
) -> None:
    engine = open_database(tmp_path)
    log = origin.log
    size = log.size()
    impostor = new_signer(log.origin)
    cp = log.latest_checkpoint().checkpoint
    with pytest.raises(VerificationError, match="checkpoint note 1 does not verify"):
        ingest(
            engine,
            log.origin,
            log.verifier.vkey,
            0,
            log.leaves(0, size),
            [sign_checkpoint(cp, impostor)],
        )
    ingest(
        engine,
        log.origin,
        log.verifier.vkey,
        0,
        log.leaves(0, size),
        [log.latest_checkpoint().note],
    )
    other = make_ledger(f"sqlite:///{tmp_path / 'other.db'}")
    with pytest.raises(ConfigError, match="this database holds the log"):
        ingest(
            engine,
            other.log.origin,
            other.log.verifier.vkey,
            0,
            other.log.leaves(0, other.log.size()),
            [other.log.latest_checkpoint().note],
        )
    with pytest.raises(ConfigError, match="named"):
        ingest(engine, "another/origin", log.verifier.vkey, 0, [], [])
    check_ledger(engine)


def test_a_rolled_back_directory_is_refused(
    origin: Ledger, mirror_dir: Path, tmp_path: Path
) -> None:
    engine = open_database(mirror_dir)
    old_checkpoint = (mirror_dir / "checkpoint").read_bytes()
    origin.notes(3)
    mirror_of(origin.log, mirror_dir)
    ingest_directory(mirror_dir, engine=engine)
    (mirror_dir / "checkpoint").write_bytes(old_checkpoint)
    with pytest.raises(VerificationError, match="rolled back"):
        ingest_directory(mirror_dir, engine=engine)
    check_ledger(engine)


def test_witness_cosignatures_added_later_are_kept_and_never_dropped(
    origin: Ledger, tmp_path: Path
) -> None:
    engine = open_database(tmp_path)
    log = origin.log
    latest = log.latest_checkpoint()
    ingest(engine, log.origin, log.verifier.vkey, 0, log.leaves(0, latest.size), [latest.note])
    text_, _signatures = split_note(latest.note)
    cosignature = split_note(sign_note(text_, [new_signer("witness.example")]))[1][0]
    cosigned = latest.note + cosignature.line()
    result = ingest(engine, log.origin, log.verifier.vkey, latest.size, [], [cosigned])
    assert result.added == 0 and notes_by_size(engine) == {latest.size: cosigned}
    ingest(engine, log.origin, log.verifier.vkey, latest.size, [], [latest.note])
    assert notes_by_size(engine) == {latest.size: cosigned}  # fewer signatures: kept as it was
    check_ledger(engine)


def test_older_checkpoints_are_accepted_by_their_roots(origin: Ledger, tmp_path: Path) -> None:
    """Notes for sizes below what is stored are checked against the stored tree, then kept."""
    engine = open_database(tmp_path)
    log = origin.log
    early = log.checkpoint(1)  # the genesis entry's checkpoint
    latest = log.latest_checkpoint()
    ingest(engine, log.origin, log.verifier.vkey, 0, log.leaves(0, latest.size), [latest.note])
    result = ingest(engine, log.origin, log.verifier.vkey, latest.size, [], [early.note])
    assert result.checkpoints_added == 1
    assert notes_by_size(engine) == {1: early.note, latest.size: latest.note}
    wrong = sign_checkpoint(Checkpoint(log.origin, 2, bytes(32)), origin.log_signer)
    with pytest.raises(VerificationError, match="checkpoint for size 2: its root"):
        ingest(engine, log.origin, log.verifier.vkey, latest.size, [], [wrong])
    check_ledger(engine)
