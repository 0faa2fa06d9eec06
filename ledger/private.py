"""Households' personal data, off the ledger: encrypted, committed to, erasable.

Personal data (name, ID number, phone, address) MUST NOT appear in any entry.  It
lives in the table ``household_private`` — not a projection: ``suyuan verify``
never reads it, so erasing a row leaves the audit green — and the ledger carries
only a *commitment* to it (``household.identified`` / ``household.corrected``).

**Commitment** (docs/DOMAIN.md, "Households" states it for auditors)::

    commitment = hex(SHA-256(b"suyuan/household-commitment/v1\\n" ‖ salt ‖ JCS(record)))

where ``salt`` is 32 random bytes and ``JCS(record)`` is the RFC 8785 canonical
JSON (UTF-8) of the validated record (:func:`normalise_personal`).  The salt keeps
the commitment from being confirmed by guessing a name and ID number.

**Encryption.**  Each household has its own 32-byte data key; the plaintext
``JCS({"record": record, "salt": hex(salt), "v": 1})`` is sealed with AES-256-GCM
under it (12-byte random nonce, associated data ``b"suyuan/household-private/v1\\n"
‖ code`` so a row moved to another code fails to open).  The data key is stored
wrapped with the master key by AES key wrap (RFC 3394).  The master key is 32
bytes from ``SUYUAN_PRIVATE_KEY`` (base64) or ``<instance>/private.key``
(:func:`load_master_key`).

**Erasure (crypto-shredding).**  :meth:`PrivateStore.erase` overwrites the wrapped
key, nonce and ciphertext with NULL (SQLite with ``secure_delete``; freed pages
may linger in the write-ahead log until its next checkpoint) and keeps the
row with the time of erasure and the commitment (a hash that, without the salt,
reveals nothing).  Copies of the row in backups made before the erasure can still
be opened with the master key: rotate backups (or the master key) accordingly.

**Crash safety.**  The private record is stored *before* the entry that commits
to it is appended, each in its own transaction:

* crash after :meth:`~PrivateStore.store`, before the append — the row exists and
  no household entry does; :meth:`PrivateStore.reconcile` reports it as
  ``unregistered``; recovery appends the entry again with the row's commitment
  (:meth:`PrivateStore.commitment`), or erases the row;
* a correction: :meth:`~PrivateStore.store` replaces the record, then the
  ``household.corrected`` entry is appended; a crash in between leaves
  ``reconcile`` reporting ``mismatch`` and :meth:`~PrivateStore.prove` failing
  until the correction is appended (dry-run it with ``Log.check`` first: the old
  record is gone once replaced);
* the reverse order is never used: an entry committing to data that was never
  stored could not be proved by anyone.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import re
import unicodedata
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    LargeBinary,
    String,
    Table,
    column,
    delete,
    insert,
    select,
    table,
    update,
)

from ledger import canonical
from ledger.entry import format_time
from ledger.errors import (
    ConfigError,
    Conflict,
    InvalidInput,
    NotFound,
    VerificationError,
)
from ledger.projection import PRIVATE_TABLES
from ledger.schema import metadata

household_private = Table(
    "household_private",
    metadata,
    Column("code", String(32), primary_key=True),
    Column("wrapped_key", LargeBinary, nullable=True),  # NULL once erased
    Column("nonce", LargeBinary, nullable=True),
    Column("ciphertext", LargeBinary, nullable=True),
    Column("commitment", String(64), nullable=True),
    Column("stored", String(32), nullable=False),
    Column("erased", String(32), nullable=True),
)
PRIVATE_TABLES.add(household_private.name)

COMMITMENT_CONTEXT = b"suyuan/household-commitment/v1\n"
AAD_CONTEXT = b"suyuan/household-private/v1\n"
SALT_BYTES = 32
KEY_BYTES = 32
ENV_KEY = "SUYUAN_PRIVATE_KEY"
KEY_FILE = "private.key"

#: field → required?
FIELDS = {"name": True, "id_number": True, "phone": False, "address": False}
_ID_RE = re.compile(r"^[0-9]{17}[0-9X]$")
_PHONE_RE = re.compile(r"^[0-9]{7,15}$")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_CODE_RE = re.compile(r"^[A-Z0-9][A-Z0-9-]{3,31}$")

# The household list, without importing ledger.domain (which imports this module).
_households = table("households", column("code"), column("commitment"), column("seq"))


# --- the record and its commitment ---------------------------------------------------------


def id_check_digit(first17: str) -> str:
    """The GB 11643-1999 check character (ISO 7064 MOD 11-2) of the first 17 digits."""
    return _ID_CHECK[sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


def check_id_number(value: Any) -> str:
    """An 18-character resident ID number (GB 11643), upper-case X; raise InvalidInput."""
    if not isinstance(value, str):
        raise InvalidInput(
            f"id_number must be a string of 18 characters, got {type(value).__name__}"
        )
    number = value.strip().upper()
    if not _ID_RE.fullmatch(number):
        raise InvalidInput(
            f"id_number must be 17 digits and a check digit or X (18 characters), got {len(number)} characters"
        )
    try:
        date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise InvalidInput("id_number: characters 7–14 are not a real birth date") from None
    if id_check_digit(number[:17]) != number[17]:
        raise InvalidInput(
            f"id_number: check digit is {number[17]}, GB 11643 gives {id_check_digit(number[:17])}"
        )
    return number


def normalise_personal(personal: Mapping[str, Any]) -> dict[str, str]:
    """Validate a personal record and return its canonical form.

    Fields: ``name`` (required, 1–50 characters), ``id_number`` (required, GB 11643;
    a lower-case x becomes X), ``phone`` (optional, 7–15 digits), ``address``
    (optional, 1–200 characters).  Text is NFC-normalised and stripped.  Raises
    :class:`InvalidInput` saying which field is wrong — never echoing its value.
    """
    if not isinstance(personal, Mapping):
        raise InvalidInput(f"personal data must be an object, got {type(personal).__name__}")
    missing = sorted(k for k, required in FIELDS.items() if required and k not in personal)
    extra = sorted(str(k) for k in personal if k not in FIELDS)
    if missing or extra:
        raise InvalidInput(f"personal data: fields missing {missing}, unexpected {extra}")
    out: dict[str, str] = {}
    for name in FIELDS:
        if name not in personal:
            continue
        value = personal[name]
        if not isinstance(value, str):
            raise InvalidInput(
                f"personal data: {name} must be a string, got {type(value).__name__}"
            )
        value = unicodedata.normalize("NFC", value).strip()
        if name == "id_number":
            value = check_id_number(value)
        elif name == "phone" and not _PHONE_RE.fullmatch(value):
            raise InvalidInput("personal data: phone must be 7–15 digits (no spaces or signs)")
        elif name in ("name", "address"):
            limit = 50 if name == "name" else 200
            if not 1 <= len(value) <= limit:
                raise InvalidInput(f"personal data: {name} must be 1–{limit} characters")
        out[name] = value
    return out


def commitment_of(salt: bytes, record: Mapping[str, str]) -> str:
    """``hex(SHA-256(COMMITMENT_CONTEXT ‖ salt ‖ JCS(record)))`` for a normalised record."""
    if len(salt) != SALT_BYTES:
        raise InvalidInput(f"salt must be {SALT_BYTES} bytes, got {len(salt)}")
    return hashlib.sha256(COMMITMENT_CONTEXT + salt + canonical.dumps(dict(record))).hexdigest()


# --- the master key --------------------------------------------------------------------------


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{where} is not base64") from None
    if len(key) != KEY_BYTES:
        raise ConfigError(f"{where} must hold {KEY_BYTES} bytes (base64), found {len(key)}")
    return key


def load_master_key(
    instance: Path, env: Mapping[str, str] | None = None, *, create: bool = True
) -> bytes:
    """The 32-byte master key: ``SUYUAN_PRIVATE_KEY`` (base64) if set, else the file
    ``<instance>/private.key`` (base64, one line), created on first use unless
    ``create`` is false (then a missing key is a :class:`ConfigError`: a command that
    only reads or erases records MUST NOT mint a second master key, which would split
    the records between two keys).

    The file is written to a temporary name (mode 0600, ``O_EXCL``), fsynced and then
    hard-linked into place, which fails if it exists: two processes starting at once
    end up with one key, and nobody ever reads a half-written file.
    """
    env = os.environ if env is None else env
    if env.get(ENV_KEY):
        return _decode_key(env[ENV_KEY], ENV_KEY)
    path = instance / KEY_FILE
    if not path.exists():
        if not create:
            raise ConfigError(
                f"no private-data master key: set {ENV_KEY} or restore {path} "
                "(the first import of household records makes it)"
            )
        _create_key_file(path)
    try:
        return _decode_key(path.read_text("ascii"), str(path))
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"cannot read the private-data master key {path}: {exc}") from None


def _checked_master(key: bytes) -> bytes:
    if len(key) != KEY_BYTES:
        raise ConfigError(f"the master key must be {KEY_BYTES} bytes, got {len(key)}")
    return key


def _create_key_file(path: Path) -> None:
    temp = path.with_name(f".{KEY_FILE}.{os.getpid()}.{os.urandom(4).hex()}")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, base64.b64encode(os.urandom(KEY_BYTES)) + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        with contextlib.suppress(FileExistsError):  # another process won the race: use its key
            os.link(temp, path)
    except OSError as exc:
        raise ConfigError(f"cannot create the private-data master key {path}: {exc}") from None
    finally:
        temp.unlink(missing_ok=True)


# --- the store ---------------------------------------------------------------------------------


def _now() -> str:
    return format_time(datetime.now(UTC))


def _check_code(code: Any) -> str:
    if not isinstance(code, str) or not _CODE_RE.fullmatch(code):
        raise InvalidInput(
            f"a household code is 4–32 upper-case ASCII letters, digits and hyphens, got {code!r}"
        )
    return code


class PrivateStore:
    """The ``household_private`` table over an engine, with the master key.

    Every method runs in its own short transaction; none touches the ledger.
    """

    def __init__(self, engine: Engine, master_key: bytes | Callable[[], bytes]) -> None:
        """``master_key`` is the key, or a function that loads it at the first use."""
        self.engine = engine
        self._key: bytes | None = None
        self._load_key: Callable[[], bytes] | None = None
        if callable(master_key):
            self._load_key = master_key
        else:
            self._key = _checked_master(master_key)

    @property
    def _master(self) -> bytes:
        if self._key is None:
            assert self._load_key is not None
            self._key = _checked_master(self._load_key())
        return self._key

    @classmethod
    def for_instance(
        cls,
        engine: Engine,
        instance: Path,
        env: Mapping[str, str] | None = None,
        *,
        create: bool = False,
    ) -> PrivateStore:
        """The store with the instance's master key (:func:`load_master_key`).

        With ``create`` (an import of household records) a missing key is made, but
        only when the first record is stored, so an import refused at its checks
        leaves no key behind.  Without it a missing key is a :class:`ConfigError`.
        """
        if create:
            return cls(engine, lambda: load_master_key(instance, env))
        return cls(engine, load_master_key(instance, env, create=False))

    # writing

    @staticmethod
    def prepare(personal: Mapping[str, Any]) -> tuple[bytes, str]:
        """A fresh salt and the commitment to ``personal`` (validated) under it."""
        salt = os.urandom(SALT_BYTES)
        return salt, commitment_of(salt, normalise_personal(personal))

    def store(self, code: str, personal: Mapping[str, Any], salt: bytes) -> str:
        """Encrypt and store (or replace) the household's record; return its commitment.

        Raises :class:`Conflict` if the household's data was erased (erasure is final).
        """
        _check_code(code)
        record = normalise_personal(personal)
        commitment = commitment_of(salt, record)
        data_key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(12)
        plaintext = canonical.dumps({"record": record, "salt": salt.hex(), "v": 1})
        values = {
            "wrapped_key": aes_key_wrap(self._master, data_key),
            "nonce": nonce,
            "ciphertext": AESGCM(data_key).encrypt(nonce, plaintext, _aad(code)),
            "commitment": commitment,
            "stored": _now(),
            "erased": None,
        }
        with self.engine.begin() as conn:
            row = self._row(conn, code)
            if row is not None and row["erased"] is not None:
                raise Conflict(
                    f"household {code}'s personal data was erased on {row['erased']}; "
                    "erasure is final"
                )
            if row is None:
                conn.execute(insert(household_private).values(code=code, **values))
            else:
                conn.execute(
                    update(household_private)
                    .where(household_private.c.code == code)
                    .values(**values)
                )
        return commitment

    def erase(self, code: str) -> str:
        """Crypto-shred the household's record; return when it was erased.

        Idempotent: erasing again returns the first time.  Raises :class:`NotFound`.
        """
        _check_code(code)
        with self.engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA secure_delete = ON")  # overwrite freed pages
            row = self._row(conn, code)
            if row is None:
                raise NotFound(f"no private record for household {code}")
            if row["erased"] is not None:
                return str(row["erased"])
            when = _now()
            conn.execute(
                update(household_private)
                .where(household_private.c.code == code)
                .values(wrapped_key=None, nonce=None, ciphertext=None, erased=when)
            )
        return when

    def discard(self, code: str) -> None:
        """Delete a record that no household entry commits to (an append that was refused
        after the record was stored).  Unlike :meth:`erase` it leaves no row behind, so the
        household can be registered later; a code on the ledger raises :class:`Conflict`."""
        _check_code(code)
        with self.engine.begin() as conn:
            if conn.execute(select(_households.c.code).where(_households.c.code == code)).first():
                raise Conflict(
                    f"household {code} is on the ledger; erase its record instead of discarding it"
                )
            conn.execute(delete(household_private).where(household_private.c.code == code))

    # reading

    def open(self, code: str) -> dict[str, str]:
        """The household's personal record.  Raises :class:`NotFound` (never stored, or
        erased — the message says when) or :class:`VerificationError` (wrong master key,
        altered row)."""
        return dict(self._decrypt(code)["record"])

    def disclose(self, code: str) -> dict[str, Any]:
        """What an authorised auditor needs to recompute the commitment independently:
        ``{"code", "record": {…}, "salt": hex, "commitment": hex}``."""
        opened = self._decrypt(code)
        salt = bytes.fromhex(opened["salt"])
        return {
            "code": code,
            "record": dict(opened["record"]),
            "salt": opened["salt"],
            "commitment": commitment_of(salt, opened["record"]),
        }

    def prove(self, code: str, commitment: str) -> None:
        """Raise :class:`VerificationError` unless the private record opens and hashes to
        ``commitment`` (the ledger's).  Never reveals the record."""
        computed = self.disclose(code)["commitment"]
        if not hmac.compare_digest(computed, str(commitment)):
            raise VerificationError(
                f"household {code}: the private record's commitment {computed} does not match "
                f"the ledger's {commitment}"
            )

    def commitment(self, code: str) -> str:
        """The commitment recorded with the private row (no decryption)."""
        with self.engine.connect() as conn:
            row = self._row(conn, _check_code(code))
        if row is None or row["commitment"] is None:
            raise NotFound(f"no private record for household {code}")
        return str(row["commitment"])

    def reconcile(self) -> list[dict[str, Any]]:
        """Disagreements between the private table and the ledger's households, by code:
        ``{"code", "problem", "private_commitment", "ledger_commitment", "ledger_seq"}``
        where problem is ``unregistered`` (stored, no household entry: a crash or a refused
        append), ``mismatch`` (a correction not yet appended) or ``missing`` (a household
        with no private record, never stored).  Erased records are not problems."""
        with self.engine.connect() as conn:
            private = {
                r.code: r
                for r in conn.execute(
                    select(
                        household_private.c.code,
                        household_private.c.commitment,
                        household_private.c.erased,
                    )
                )
            }
            ledger = {r.code: r for r in conn.execute(select(_households))}
        out: list[dict[str, Any]] = []
        for code in sorted(set(private) | set(ledger)):
            mine, theirs = private.get(code), ledger.get(code)
            if mine is not None and mine.erased is not None:
                continue
            problem = (
                "unregistered"
                if theirs is None
                else "missing"
                if mine is None
                else "mismatch"
                if mine.commitment != theirs.commitment
                else None
            )
            if problem:
                out.append(
                    {
                        "code": code,
                        "problem": problem,
                        "private_commitment": None if mine is None else mine.commitment,
                        "ledger_commitment": None if theirs is None else theirs.commitment,
                        "ledger_seq": None if theirs is None else int(theirs.seq),
                    }
                )
        return out

    # internals

    @staticmethod
    def _row(conn: Connection, code: str) -> Any:
        return (
            conn.execute(select(household_private).where(household_private.c.code == code))
            .mappings()
            .first()
        )

    def _decrypt(self, code: str) -> dict[str, Any]:
        _check_code(code)
        with self.engine.connect() as conn:
            row = self._row(conn, code)
        if row is None:
            raise NotFound(f"no private record for household {code}")
        if row["erased"] is not None:
            raise NotFound(f"household {code}'s personal data was erased on {row['erased']}")
        if row["wrapped_key"] is None or row["nonce"] is None or row["ciphertext"] is None:
            raise VerificationError(
                f"household {code}: the private record is incomplete (key, nonce or ciphertext "
                "missing) but not marked erased"
            )
        try:
            data_key = aes_key_unwrap(self._master, bytes(row["wrapped_key"]))
        except (InvalidUnwrap, ValueError):
            raise VerificationError(
                f"household {code}: the data key does not unwrap with this master key "
                "(wrong SUYUAN_PRIVATE_KEY / private.key, or the row was altered)"
            ) from None
        try:
            plaintext = AESGCM(data_key).decrypt(
                bytes(row["nonce"]), bytes(row["ciphertext"]), _aad(code)
            )
            opened = json.loads(plaintext)
        except (InvalidTag, ValueError):
            raise VerificationError(
                f"household {code}: the encrypted record fails authentication (altered, "
                "or moved from another household)"
            ) from None
        if (
            not isinstance(opened, dict)
            or opened.get("v") != 1
            or not isinstance(opened.get("record"), dict)
            or not isinstance(opened.get("salt"), str)
            or len(opened["salt"]) != 2 * SALT_BYTES
        ):
            raise VerificationError(f"household {code}: the private record has an unknown format")
        return opened


def _aad(code: str) -> bytes:
    return AAD_CONTEXT + code.encode("ascii")
