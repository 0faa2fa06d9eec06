"""Households' private records: encryption, commitments, proofs, crypto-shredding."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from sqlalchemy import text

from ledger import private
from ledger.errors import ConfigError, Conflict, InvalidInput, NotFound, VerificationError
from ledger.private import PrivateStore, check_id_number, id_check_digit, load_master_key
from tests.helpers import Ledger, check_ledger, dump

CODE = "GX-GN-000123"
PLACE = {"province": "广西壮族自治区", "city": "贵港市", "county": "港南区", "township": "木格镇"}


def id_number(first17: str = "45080219800101002") -> str:
    return first17 + id_check_digit(first17)


def person(**changes: str) -> dict[str, str]:
    record = {
        "name": "覃秀兰",
        "id_number": id_number(),
        "phone": "13807751234",
        "address": "广西贵港市港南区木格镇云垌村三组12号",
    }
    record.update(changes)
    return record


@pytest.fixture
def store(sqlite_ledger: Ledger) -> PrivateStore:
    return PrivateStore(sqlite_ledger.engine, os.urandom(32))


def identify(ledger: Ledger, code: str, commitment: str) -> int:
    village = ledger.authors.get("village") or ledger.register("village", "village_approver")
    body = {
        "code": code,
        "location": PLACE,
        "members": 3,
        "causes": ["illness"],
        "year": 2016,
        "commitment": commitment,
    }
    return ledger.log.append([ledger.statement("household.identified", body, village)])[0].seq


# --- the record -----------------------------------------------------------------------------


def test_id_numbers_follow_gb_11643() -> None:
    assert check_id_number("11010519491231002X") == "11010519491231002X"  # the standard's example
    assert check_id_number("11010519491231002x") == "11010519491231002X"
    with pytest.raises(InvalidInput, match="check digit is 3, GB 11643 gives X"):
        check_id_number("110105194912310023")
    with pytest.raises(InvalidInput, match="18 characters"):
        check_id_number("1101051949123100")
    with pytest.raises(InvalidInput, match="birth date"):
        check_id_number(id_number("11010519491331002"))
    with pytest.raises(InvalidInput, match="must be a string"):
        check_id_number(11010519491231002)


@pytest.mark.parametrize(
    ("record", "match"),
    [
        ({"name": "覃秀兰"}, "missing \\['id_number'\\]"),
        (person(phone="138-0775"), "phone must be 7–15 digits"),
        (person(name=""), "name must be 1–50"),
        ({**person(), "ethnicity": "壮族"}, "unexpected \\['ethnicity'\\]"),
        (person(id_number="450802198001010020"), "check digit"),
    ],
)
def test_bad_records_are_refused_without_echoing_them(record: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidInput, match=match) as caught:
        private.normalise_personal(record)
    for value in record.values():
        if len(value) > 3:
            assert value not in str(caught.value)


def test_the_commitment_is_the_documented_formula(store: PrivateStore) -> None:
    salt, commitment = store.prepare(person(id_number=id_number().replace("X", "x")))
    record = person(id_number=id_number().upper())
    expected = hashlib.sha256(
        b"suyuan/household-commitment/v1\n" + salt + rfc8785.dumps(record)
    ).hexdigest()
    assert commitment == expected
    assert store.store(CODE, record, salt) == commitment
    disclosed = store.disclose(CODE)
    assert disclosed == {
        "code": CODE,
        "record": record,
        "salt": salt.hex(),
        "commitment": commitment,
    }


# --- storing, opening, proving ---------------------------------------------------------------


def test_round_trip_and_proof(sqlite_ledger: Ledger, store: PrivateStore) -> None:
    salt, commitment = store.prepare(person())
    store.store(CODE, person(), salt)
    identify(sqlite_ledger, CODE, commitment)
    assert store.open(CODE) == person()
    store.prove(CODE, commitment)
    with pytest.raises(VerificationError, match="does not match the ledger's"):
        store.prove(CODE, hashlib.sha256(b"other").hexdigest())
    assert store.reconcile() == []
    check_ledger(sqlite_ledger.engine)


def test_the_same_record_gets_a_different_commitment_each_time(store: PrivateStore) -> None:
    assert store.prepare(person())[1] != store.prepare(person())[1]


def test_a_wrong_master_key_fails_clearly(sqlite_ledger: Ledger, store: PrivateStore) -> None:
    salt, _ = store.prepare(person())
    store.store(CODE, person(), salt)
    other = PrivateStore(sqlite_ledger.engine, os.urandom(32))
    with pytest.raises(VerificationError, match="does not unwrap with this master key"):
        other.open(CODE)
    with pytest.raises(ConfigError, match="32 bytes"):
        PrivateStore(sqlite_ledger.engine, b"short")


@pytest.mark.parametrize("column", ["ciphertext", "nonce", "wrapped_key"])
def test_tampered_rows_fail_authentication(
    sqlite_ledger: Ledger, store: PrivateStore, column: str
) -> None:
    salt, _ = store.prepare(person())
    store.store(CODE, person(), salt)
    with sqlite_ledger.engine.begin() as conn:
        value = bytearray(
            conn.execute(text(f"SELECT {column} FROM household_private")).scalar_one()
        )
        value[5] ^= 1
        conn.execute(text(f"UPDATE household_private SET {column} = :v"), {"v": bytes(value)})
    with pytest.raises(VerificationError, match=f"household {CODE}"):
        store.open(CODE)


def test_a_row_shredded_by_hand_is_not_taken_for_an_erasure(
    sqlite_ledger: Ledger, store: PrivateStore
) -> None:
    store.store(CODE, person(), store.prepare(person())[0])
    sqlite_ledger.execute("UPDATE household_private SET ciphertext = NULL")
    with pytest.raises(VerificationError, match=r"incomplete .* but not marked erased"):
        store.open(CODE)


def test_a_row_moved_to_another_household_does_not_open(
    sqlite_ledger: Ledger, store: PrivateStore
) -> None:
    salt, _ = store.prepare(person())
    store.store(CODE, person(), salt)
    other = "GX-GN-000124"
    store.store(other, person(name="韦明"), store.prepare(person())[0])
    sqlite_ledger.execute(
        "UPDATE household_private SET wrapped_key = (SELECT wrapped_key FROM household_private "
        "WHERE code = :a), nonce = (SELECT nonce FROM household_private WHERE code = :a), "
        "ciphertext = (SELECT ciphertext FROM household_private WHERE code = :a) WHERE code = :b",
        a=CODE,
        b=other,
    )
    with pytest.raises(VerificationError, match="moved from another household"):
        store.open(other)


def test_missing_records_and_bad_codes(store: PrivateStore) -> None:
    with pytest.raises(NotFound, match="no private record"):
        store.open(CODE)
    with pytest.raises(NotFound, match="no private record"):
        store.erase(CODE)
    with pytest.raises(NotFound, match="no private record"):
        store.commitment(CODE)
    with pytest.raises(InvalidInput, match="household code"):
        store.open("../etc")
    with pytest.raises(InvalidInput, match="salt must be 32 bytes"):
        store.store(CODE, person(), b"salt")


# --- erasure ----------------------------------------------------------------------------------


def test_erasure_keeps_the_ledger_green_and_the_record_closed(
    sqlite_ledger: Ledger, store: PrivateStore
) -> None:
    salt, commitment = store.prepare(person())
    store.store(CODE, person(), salt)
    identify(sqlite_ledger, CODE, commitment)
    when = store.erase(CODE)
    assert store.erase(CODE) == when  # idempotent
    check_ledger(sqlite_ledger.engine)
    with pytest.raises(NotFound, match=f"erased on {when}"):
        store.open(CODE)
    with pytest.raises(NotFound, match="erased on"):
        store.prove(CODE, commitment)
    with pytest.raises(Conflict, match="erasure is final"):
        store.store(CODE, person(), salt)
    with sqlite_ledger.engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM household_private")).mappings().one()
    assert (row["wrapped_key"], row["nonce"], row["ciphertext"]) == (None, None, None)
    assert row["erased"] == when and row["commitment"] == commitment
    assert store.reconcile() == []


def test_no_personal_data_in_any_table(sqlite_ledger: Ledger, store: PrivateStore) -> None:
    record = person()
    salt, commitment = store.prepare(record)
    store.store(CODE, record, salt)
    identify(sqlite_ledger, CODE, commitment)
    needles = [v.encode("utf-8") for v in record.values()]
    needles += [record["id_number"][:14].encode(), "覃秀兰".encode("unicode_escape")]
    for table, rows in dump(sqlite_ledger.engine).items():
        for row in rows:
            for value in row:
                raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
                assert not any(n in raw for n in needles), table
    with sqlite_ledger.engine.connect() as conn:
        leaves = [bytes(r[0]) for r in conn.execute(text("SELECT leaf FROM entries"))]
    assert any(commitment.encode() in leaf for leaf in leaves)


# --- reconciliation after crashes -------------------------------------------------------------


def test_reconcile_reports_what_a_crash_leaves(sqlite_ledger: Ledger, store: PrivateStore) -> None:
    # stored, then crashed before the append
    salt, commitment = store.prepare(person())
    store.store(CODE, person(), salt)
    # appended with a record stored, then the record replaced (a correction not yet appended)
    b, c = "GX-GN-000200", "GX-GN-000300"
    salt_b, commitment_b = store.prepare(person(name="韦明"))
    store.store(b, person(name="韦明"), salt_b)
    seq_b = identify(sqlite_ledger, b, commitment_b)
    new_b = store.store(b, person(name="韦明", phone="13900000000"), store.prepare(person())[0])
    # a household with no private record at all
    seq_c = identify(sqlite_ledger, c, hashlib.sha256(b"c").hexdigest())
    assert store.reconcile() == [
        {
            "code": CODE,
            "problem": "unregistered",
            "private_commitment": commitment,
            "ledger_commitment": None,
            "ledger_seq": None,
        },
        {
            "code": b,
            "problem": "mismatch",
            "private_commitment": new_b,
            "ledger_commitment": commitment_b,
            "ledger_seq": seq_b,
        },
        {
            "code": c,
            "problem": "missing",
            "private_commitment": None,
            "ledger_commitment": hashlib.sha256(b"c").hexdigest(),
            "ledger_seq": seq_c,
        },
    ]
    # recovery: append the entry with the stored commitment
    identify(sqlite_ledger, CODE, store.commitment(CODE))
    assert [r["code"] for r in store.reconcile()] == [b, c]
    check_ledger(sqlite_ledger.engine)


# --- the master key --------------------------------------------------------------------------------


def test_master_key_from_the_environment(tmp_path: Path) -> None:
    key = os.urandom(32)
    env = {"SUYUAN_PRIVATE_KEY": base64.b64encode(key).decode()}
    assert load_master_key(tmp_path, env) == key
    assert not (tmp_path / "private.key").exists()
    with pytest.raises(ConfigError, match="32 bytes"):
        load_master_key(tmp_path, {"SUYUAN_PRIVATE_KEY": base64.b64encode(b"x" * 16).decode()})
    with pytest.raises(ConfigError, match="not base64"):
        load_master_key(tmp_path, {"SUYUAN_PRIVATE_KEY": "not base64!"})


def test_master_key_file_is_made_once_with_mode_0600(tmp_path: Path, sqlite_ledger: Ledger) -> None:
    instance = tmp_path / "instance"
    first = load_master_key(instance, {})
    path = instance / "private.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_master_key(instance, {}) == first
    from_instance = PrivateStore.for_instance(sqlite_ledger.engine, instance, {}, create=True)
    from_instance.store(CODE, person(), from_instance.prepare(person())[0])
    assert PrivateStore(sqlite_ledger.engine, first).open(CODE) == person()
    assert len(first) == 32
    assert [p.name for p in instance.iterdir()] == ["private.key"]  # no temporary left
    path.write_text("garbage\n")
    with pytest.raises(ConfigError, match=r"private\.key"):
        load_master_key(instance, {})


def test_only_a_storing_import_makes_the_master_key(tmp_path: Path, sqlite_ledger: Ledger) -> None:
    """Reading, proving or erasing never mints a second master key; an import makes it
    when it stores its first record, not when it is merely opened."""
    instance = tmp_path / "instance"
    with pytest.raises(ConfigError, match="no private-data master key"):
        PrivateStore.for_instance(sqlite_ledger.engine, instance, {})
    with pytest.raises(ConfigError, match="SUYUAN_PRIVATE_KEY"):
        load_master_key(instance, {}, create=False)
    lazy = PrivateStore.for_instance(sqlite_ledger.engine, instance, {}, create=True)
    assert not (instance / "private.key").exists()
    lazy.store(CODE, person(), lazy.prepare(person())[0])
    key = load_master_key(instance, {}, create=False)
    assert PrivateStore(sqlite_ledger.engine, key).open(CODE) == person()


def test_discard_undoes_a_store_whose_entry_was_refused(
    sqlite_ledger: Ledger, store: PrivateStore
) -> None:
    """What the importer does when the append fails after the records were stored."""
    salt, _ = PrivateStore.prepare(person())
    store.store("GX-GN-000001", person(), salt)
    store.discard("GX-GN-000001")
    with pytest.raises(NotFound, match="no private record"):
        store.open("GX-GN-000001")
    salt, commitment = PrivateStore.prepare(person())
    store.store("GX-GN-000001", person(), salt)  # unlike after an erasure, it can come back
    identify(sqlite_ledger, "GX-GN-000001", commitment)
    with pytest.raises(Conflict, match="on the ledger"):
        store.discard("GX-GN-000001")
    assert store.open("GX-GN-000001")["name"] == person()["name"]
    check_ledger(sqlite_ledger.engine)
