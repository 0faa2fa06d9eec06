"""Opening the operator's log from settings: the glue the CLI and the web app share.

Here the database, the instance folder's key store and the passphrase meet.
Nothing in the pure core imports this module.
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
        self.keystore = KeyStore(settings.instance)
        self._passphrase: bytes | None = None

    def passphrase(self, *, confirm: bool = False) -> bytes:
        if self._passphrase is None:
            self._passphrase = passphrase_from(self.env, confirm=confirm)
        return self._passphrase

    def has_log(self) -> bool:
        return has_schema(self.engine) and _has_meta(self)

    def reader(self) -> Log:
        """The log, read-only (no passphrase needed)."""
        database = self.engine.url.database
        if self.engine.dialect.name == "sqlite" and database and not Path(database).exists():
            raise ConfigError(f"no log at {database} yet: run `suyuan init` first")
        if not has_schema(self.engine):
            raise ConfigError("no log here yet: run `suyuan init` first")
        return Log.open(self.engine)

    def writer(self) -> Log:
        """The log with its signing key, after the start-up consistency check."""
        reader = self.reader()
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


def _has_meta(instance: Instance) -> bool:
    try:
        Log.open(instance.engine)
    except ConfigError:
        return False
    return True
