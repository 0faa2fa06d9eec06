"""Opening the operator's log from settings: the glue the CLI and the web app share.

Here the database, the instance folder's key store and the passphrase meet.
Nothing in the pure core imports this module.

Two engines.  :attr:`Instance.engine` is the *primary* (``SUYUAN_DATABASE_URL``): every
write — appends, users, drafts, tokens, scan counts — MUST go through it.
:attr:`Instance.read_engine` is ``SUYUAN_READ_DATABASE_URL`` when that is set (a
PostgreSQL hot standby streaming from the primary), else the very same engine object;
:meth:`Instance.reader` reads through it.  A standby refuses writes (SQLSTATE 25006,
reported as :class:`~ledger.errors.StorageError` by ``ledger.db.write_connection``), so
a write sent to the wrong engine fails loudly instead of going missing.

What a reader on a lagging replica sees is still a consistent log: the primary commits
an append's entries, tree nodes and signed checkpoint in ONE transaction (stages 3–5 in
``ledger.log``), and a hot standby makes a transaction's rows visible all at once, when
it replays the commit record; so every checkpoint the replica shows comes with every
entry and tree node it covers.  Proofs are always computed against a checkpoint the
replica has; an entry the replica does not have yet is "not found" (HTTP 404), never a
broken proof.  This relies on the read URL naming ONE standby: behind a pool that
spreads connections over several standbys, two queries of one request could see
different points in the log's history.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from keys.store import KeyStore, passphrase_from
from ledger.config import Settings
from ledger.db import has_schema, make_engine, upgrade
from ledger.entry import Entry, format_time, make_statement, nfc, sign_statement
from ledger.errors import ConfigError, Error
from ledger.log import Log
from ledger.note import Signer


class Instance:
    """One operator's settings, database engine and key store."""

    def __init__(self, settings: Settings, env: Mapping[str, str]) -> None:
        self.settings = settings
        self.env = env
        self.engine: Engine = make_engine(settings.database_url)
        read_url = settings.read_database_url
        self.read_engine: Engine = (
            self.engine
            if read_url is None or read_url == settings.database_url
            else make_engine(read_url)
        )
        self.keystore = KeyStore(settings.instance)
        self._passphrase: bytes | None = None

    def passphrase(self, *, confirm: bool = False) -> bytes:
        if self._passphrase is None:
            self._passphrase = passphrase_from(self.env, confirm=confirm)
        return self._passphrase

    @property
    def replicated(self) -> bool:
        """True when reads go to a separate database (``SUYUAN_READ_DATABASE_URL``)."""
        return self.read_engine is not self.engine

    def has_log(self) -> bool:
        return has_schema(self.engine) and _has_meta(self)

    def reader(self) -> Log:
        """The log, read-only (no passphrase needed), on the read database (the replica)."""
        return _open_reader(self.read_engine)

    def primary_reader(self) -> Log:
        """The log, read-only, on the primary: for a reader that must see its own writes."""
        return self.reader() if not self.replicated else _open_reader(self.engine)

    def writer(self) -> Log:
        """The log with its signing key, after the start-up consistency check.

        Only the primary is consulted: a writer MUST NOT depend on the replica being up.
        """
        reader = _open_reader(self.engine)
        signer = self.keystore.log_signer(reader.origin, self.passphrase())
        upgrade(self.engine)  # a newer release may bring migrations
        return Log.open(self.engine, signer)

    def author(self, name: str) -> Signer:
        return self.keystore.author(name, self.passphrase())

    def initialize(
        self, origin: str, org: str, admin_name: str = "admin"
    ) -> tuple[Log, Signer, bool]:
        """Create the schema, the log key, the admin key and the genesis entry.

        Returns (log, admin signer, created).  Idempotent: an existing log is
        returned untouched with ``created`` False.  Refuses to make a second log
        with an existing log key (that would be a fork of the first).
        """
        self.settings.ensure_instance()
        upgrade(self.engine)
        if _has_meta(self):
            return self.writer(), self.author(admin_name), False
        if self.keystore.log_key_path.exists():
            raise ConfigError(
                f"{self.keystore.log_key_path} exists but the database holds no log: making a new log "
                "with the same key would fork the old one. Restore the database, or use a new instance folder."
            )
        passphrase = self.passphrase(confirm=True)
        log_signer = self.keystore.new_log_key(origin, passphrase)
        admin = self.keystore.new_author(admin_name, passphrase)
        try:
            log = Log.initialize(self.engine, log_signer)
            genesis = make_statement(
                "key.registered",
                {"name": admin_name, "vkey": admin.verifier.vkey, "role": "admin", "org": nfc(org)},
                origin,
                format_time(datetime.now(UTC)),
            )
            log.append([sign_statement(genesis, [admin])])
        except Error:
            self.keystore.log_key_path.unlink(missing_ok=True)
            self.keystore.discard_author(admin_name)
            raise
        return log, admin, True

    def sign_and_append(
        self, log: Log, kind: str, body: Mapping[str, Any], signers: Sequence[Signer]
    ) -> Entry:
        statement = make_statement(kind, nfc(body), log.origin, format_time(datetime.now(UTC)))
        return log.append([sign_statement(statement, signers)])[0]

    def dispose(self) -> None:
        """Close every pooled connection (both engines)."""
        self.engine.dispose()
        if self.replicated:
            self.read_engine.dispose()


def _open_reader(engine: Engine) -> Log:
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and not Path(database).exists():
        raise ConfigError(f"no log at {database} yet: run `suyuan init` first")
    if not has_schema(engine):
        raise ConfigError("no log here yet: run `suyuan init` first")
    return Log.open(engine)


def _has_meta(instance: Instance) -> bool:
    try:
        Log.open(instance.engine)
    except ConfigError:
        return False
    return True
