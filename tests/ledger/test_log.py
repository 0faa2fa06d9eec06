"""The append path and the read side of ``ledger.log.Log``, on SQLite and PostgreSQL.

Every refusal must leave the database exactly as it was (compared row by row),
and every test that writes ends with the full audit.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta

import pytest

from ledger.checkpoint import verify_checkpoint
from ledger.db import make_engine, upgrade
from ledger.entry import (
    SignatureRecord,
    SignedStatement,
    add_signatures,
    format_time,
    make_statement,
    sign_statement,
)
from ledger.errors import (
    ConfigError,
    Conflict,
    InvalidEntry,
    InvalidInput,
    NotFound,
    RuleViolation,
    VerificationError,
)
from ledger.log import Log
from ledger.merkle import verify_consistency, verify_inclusion
from tests.helpers import ORIGIN, Ledger, check_ledger, dump, new_signer, now


def refused(
    ledger: Ledger, error: type[Exception], message: str, items: list[SignedStatement]
) -> None:
    """Assert ``items`` are refused with ``error`` matching ``message`` and nothing changes."""
    before = dump(ledger.engine)
    with pytest.raises(error, match=message):
        ledger.log.append(items)
    assert dump(ledger.engine) == before
    check_ledger(ledger.engine)


def test_append_and_read_back(ledger: Ledger) -> None:
    coop = ledger.register("coop", "producer")
    entry = ledger.note("第一批赤松茸入冷库 first Stropharia lot in cold store", coop)
    assert entry.seq == 2
    assert ledger.log.entry(2) == entry
    assert ledger.log.leaves(0, 3)[2] == entry.leaf
    assert ledger.log.size() == 3
    assert [k.name for k in ledger.log.registered_keys()] == ["admin", "coop"]
    result = check_ledger(ledger.engine)
    assert result.size == 3


def test_every_batch_publishes_a_checkpoint_and_all_proofs_verify(ledger: Ledger) -> None:
    ledger.notes(5)
    ledger.notes(1)
    ledger.notes(9)
    stored = sorted(ledger.log.checkpoints(), key=lambda c: c.size)
    assert [c.size for c in stored] == [0, 1, 6, 7, 16]
    for cp in stored:
        verify_checkpoint(cp.note, ledger.log_signer.verifier, ORIGIN)
    latest = stored[-1].checkpoint
    for seq in range(latest.size):
        proof = ledger.log.inclusion_proof(seq, latest.size)
        verify_inclusion(ledger.log.entry(seq).leaf_hash(), seq, latest.size, proof, latest.root)
    for old in stored[1:]:
        for new in stored:
            if old.size <= new.size:
                proof = ledger.log.consistency_proof(old.size, new.size)
                verify_consistency(
                    old.size, new.size, proof, old.checkpoint.root, new.checkpoint.root
                )


def test_batch_is_all_or_nothing_and_names_the_bad_statement(ledger: Ledger) -> None:
    stranger = new_signer("stranger")
    items = [ledger.statement("note", {"text": f"n{i}"}, ledger.admin) for i in range(4)]
    items.insert(2, ledger.statement("note", {"text": "bad"}, stranger))
    refused(ledger, RuleViolation, "statement 3: signed by unknown key", items)


def test_unknown_key_refused(ledger: Ledger) -> None:
    refused(
        ledger,
        RuleViolation,
        "unknown key",
        [ledger.statement("note", {"text": "x"}, new_signer("x"))],
    )


def test_bad_signature_refused(ledger: Ledger) -> None:
    good = ledger.statement("note", {"text": "x"}, ledger.admin)
    forged = SignedStatement(make_statement("note", {"text": "y"}, ORIGIN, now()), good.signatures)
    refused(ledger, VerificationError, "does not verify", [forged])
    # A signature that is valid base64 but wrong, by a key registered in the same batch, is caught too.
    newcomer = new_signer("newcomer")
    register = ledger.statement(
        "key.registered",
        {"name": "newcomer", "vkey": newcomer.verifier.vkey, "role": "producer", "org": "x"},
        ledger.admin,
    )
    wrong = SignedStatement(
        make_statement("note", {"text": "z"}, ORIGIN, now()),
        (SignatureRecord(newcomer.verifier.key_id, bytes(64)),),
    )
    refused(ledger, VerificationError, "does not verify", [register, wrong])


def test_revoked_key_refused_from_revocation_on(ledger: Ledger) -> None:
    coop = ledger.register("coop")
    before = ledger.note("signed while active", coop)
    ledger.log.append(
        [
            ledger.statement(
                "key.revoked", {"key": coop.verifier.key_id, "reason": "lost phone"}, ledger.admin
            )
        ]
    )
    refused(
        ledger, RuleViolation, "revoked at seq", [ledger.statement("note", {"text": "late"}, coop)]
    )
    assert ledger.log.entry(before.seq) == before
    # A revoked key never comes back.
    refused(
        ledger,
        RuleViolation,
        "already registered",
        [
            ledger.statement(
                "key.registered",
                {"name": "coop", "vkey": coop.verifier.vkey, "role": "producer", "org": "x"},
                ledger.admin,
            )
        ],
    )
    refused(
        ledger,
        RuleViolation,
        "already revoked",
        [
            ledger.statement(
                "key.revoked", {"key": coop.verifier.key_id, "reason": "again"}, ledger.admin
            )
        ],
    )


def test_registry_needs_an_admin(ledger: Ledger) -> None:
    coop = ledger.register("coop")
    other = new_signer("other")
    body = {"name": "other", "vkey": other.verifier.vkey, "role": "admin", "org": "x"}
    refused(ledger, RuleViolation, "role admin", [ledger.statement("key.registered", body, coop)])
    refused(
        ledger,
        RuleViolation,
        "role admin",
        [
            ledger.statement(
                "key.revoked", {"key": ledger.admin.verifier.key_id, "reason": "coup"}, coop
            )
        ],
    )
    refused(
        ledger,
        RuleViolation,
        "last active admin",
        [
            ledger.statement(
                "key.revoked", {"key": ledger.admin.verifier.key_id, "reason": "oops"}, ledger.admin
            )
        ],
    )
    refused(
        ledger,
        RuleViolation,
        "not registered",
        [ledger.statement("key.revoked", {"key": "ghost+00000000", "reason": "?"}, ledger.admin)],
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "x", "vkey": "garbage", "role": "producer", "org": "o"}, "vkey"),
        ({"name": "y", "vkey": None, "role": "producer", "org": "o"}, "must be a string"),
        ({"name": "x", "vkey": "VKEY", "role": "emperor", "org": "o"}, "role"),
        ({"name": "x", "vkey": "VKEY", "role": "producer", "org": ""}, "org"),
        ({"name": "other", "vkey": "VKEY", "role": "producer", "org": "o"}, "differs"),
        ({"name": "x", "vkey": "VKEY", "role": "producer"}, "missing"),
    ],
)
def test_key_registration_bodies(ledger: Ledger, body: dict[str, object], message: str) -> None:
    key = new_signer("x")
    body = {k: (key.verifier.vkey if v == "VKEY" else v) for k, v in body.items()}
    refused(ledger, InvalidEntry, message, [ledger.statement("key.registered", body, ledger.admin)])


def test_key_registered_and_used_in_one_batch(ledger: Ledger) -> None:
    coop = new_signer("coop")
    entries = ledger.log.append(
        [
            ledger.statement(
                "key.registered",
                {"name": "coop", "vkey": coop.verifier.vkey, "role": "producer", "org": "o"},
                ledger.admin,
            ),
            ledger.statement("note", {"text": "hello"}, coop),
        ]
    )
    assert [e.seq for e in entries] == [1, 2]
    check_ledger(ledger.engine)


def test_replays_are_refused(ledger: Ledger) -> None:
    statement = ledger.statement("note", {"text": "pay 2,000 yuan"}, ledger.admin)
    ledger.log.append([statement])
    refused(ledger, Conflict, "already in the log at seq 1", [statement])
    other = ledger.statement("note", {"text": "other"}, ledger.admin)
    refused(ledger, Conflict, "repeats statement 1", [other, other])


@pytest.mark.parametrize(
    ("kind", "body", "error", "message"),
    [
        ("batch.unknown", {"x": 1}, InvalidEntry, "unknown kind"),
        ("note", {"text": ""}, InvalidEntry, "non-empty"),
        ("note", {"text": "x", "ref": 99}, InvalidEntry, "earlier entry"),
        ("note", {"text": "x", "extra": 1}, InvalidEntry, "unexpected"),
        ("note", {"text": "x" * 70_000}, InvalidEntry, "65535"),
    ],
)
def test_bad_bodies(
    ledger: Ledger, kind: str, body: dict[str, object], error: type[Exception], message: str
) -> None:
    refused(ledger, error, message, [ledger.statement(kind, body, ledger.admin)])


def test_origin_and_clock_skew(ledger: Ledger) -> None:
    other = sign_statement(
        make_statement("note", {"text": "x"}, "other.example/log", now()), [ledger.admin]
    )
    refused(ledger, RuleViolation, "for log 'other.example/log'", [other])
    future = format_time(datetime.now(UTC) + timedelta(minutes=30))
    late = sign_statement(make_statement("note", {"text": "x"}, ORIGIN, future), [ledger.admin])
    refused(ledger, RuleViolation, "later than the log time", [late])


def test_multi_party_statement(ledger: Ledger) -> None:
    village, township = (
        ledger.register("village", "village_approver"),
        ledger.register("township", "township_approver"),
    )
    statement = make_statement("note", {"text": "双认定 approved by both"}, ORIGIN, now())
    signed = add_signatures(
        sign_statement(statement, [village]), sign_statement(statement, [township]).signatures
    )
    entry = ledger.log.append([signed])[0]
    assert set(entry.signed.key_ids()) == {village.verifier.key_id, township.verifier.key_id}
    check_ledger(ledger.engine)


def test_read_only_and_wrong_key(ledger: Ledger) -> None:
    reader = Log.open(ledger.engine)
    with pytest.raises(ConfigError, match="read-only"):
        reader.append([ledger.statement("note", {"text": "x"}, ledger.admin)])
    with pytest.raises(ConfigError, match="not this log's key"):
        Log.open(ledger.engine, new_signer(ORIGIN))


def test_initialize_twice_refused(ledger: Ledger) -> None:
    with pytest.raises(ConfigError, match="already holds a log"):
        Log.initialize(ledger.engine, ledger.log_signer)


def test_genesis_rules(tmp_path: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/g.db")
    upgrade(engine)
    signer = new_signer(ORIGIN)
    log = Log.initialize(engine, signer)
    admin, other = new_signer("admin"), new_signer("other")

    def genesis(role: str, *signers: object) -> SignedStatement:
        body = {"name": "admin", "vkey": admin.verifier.vkey, "role": role, "org": "o"}
        return sign_statement(make_statement("key.registered", body, ORIGIN, now()), signers)  # type: ignore[arg-type]

    for items, message in [
        (
            [sign_statement(make_statement("note", {"text": "x"}, ORIGIN, now()), [admin])],
            "genesis",
        ),
        ([genesis("producer", admin)], "role admin"),
        ([genesis("admin", other)], "signed by the key it registers"),
        ([genesis("admin", admin, other)], "only by it"),
    ]:
        with pytest.raises(RuleViolation, match=message):
            log.append(items)
    assert log.size() == 0
    log.append([genesis("admin", admin)])
    assert check_ledger(engine).size == 1


def test_log_time_never_decreases_when_the_clock_steps_back(ledger: Ledger) -> None:
    times = iter([datetime(2030, 1, 1, tzinfo=UTC), datetime(2020, 1, 1, tzinfo=UTC)] * 10)
    log = Log.open(ledger.engine, ledger.log_signer, clock=lambda: next(times))
    created = "2019-12-31T00:00:00Z"
    first = log.append(
        [sign_statement(make_statement("note", {"text": "a"}, ORIGIN, created), [ledger.admin])]
    )[0]
    second = log.append(
        [sign_statement(make_statement("note", {"text": "b"}, ORIGIN, created), [ledger.admin])]
    )[0]
    assert second.time == first.time == "2030-01-01T00:00:00.000000Z"
    check_ledger(ledger.engine)


def test_read_side_refuses_what_is_not_published(ledger: Ledger) -> None:
    with pytest.raises(NotFound):
        ledger.log.entry(5)
    with pytest.raises(NotFound):
        ledger.log.tile(0, 0, 2)
    with pytest.raises(NotFound):
        ledger.log.entry_bundle(0, 2)
    with pytest.raises(NotFound):
        ledger.log.inclusion_proof(0, 2)
    with pytest.raises(InvalidInput):
        ledger.log.consistency_proof(0, 1)
    with pytest.raises(NotFound):
        ledger.log.checkpoint(7)
    assert ledger.log.tile(0, 0, 1) == ledger.log.entry(0).leaf_hash()
    leaf = ledger.log.entry(0).leaf
    assert ledger.log.entry_bundle(0, 1) == len(leaf).to_bytes(2, "big") + leaf


def test_too_many_statements_refused(ledger: Ledger) -> None:
    one = ledger.statement("note", {"text": "x"}, ledger.admin)
    with pytest.raises(InvalidInput, match="at most"):
        ledger.log.append([one] * 10_001)


def test_startup_refuses_a_tree_that_disagrees_with_its_checkpoint(ledger: Ledger) -> None:
    ledger.notes(3)  # size 4: the right edge is the single node (level 2, index 0)
    ledger.execute("UPDATE tree_nodes SET hash = :h WHERE level = 2 AND idx = 0", h=bytes(32))
    from ledger.errors import StorageError

    with pytest.raises(StorageError, match="does not hash to the root"):
        Log.open(ledger.engine, ledger.log_signer)


def test_signature_text_is_base64(ledger: Ledger) -> None:
    entry = ledger.note("x")
    sig = re.search(rb'"sig":"([^"]+)"', entry.leaf)
    assert sig is not None and len(base64.b64decode(sig.group(1))) == 64
