"""Settings from the environment (``SUYUAN_*``) and the instance folder.

``SUYUAN_INSTANCE``  the instance folder (keys, blobs, SQLite file); default ``./instance``
``SUYUAN_DATABASE_URL``  default ``sqlite:///<instance>/suyuan.db``; the *primary*: every write
``SUYUAN_READ_DATABASE_URL``  optional: a read replica (PostgreSQL hot standby) for the read
    path — pages, proofs, tiles, API reads (``Instance.reader()``); default: the primary
``SUYUAN_ORIGIN``  the log's origin line, used by ``suyuan init``
``SUYUAN_PASSPHRASE``  decrypts private keys without a prompt
``SUYUAN_SECRET_KEY``  the web session secret (required outside development)
``SUYUAN_DEV``  ``1`` enables development defaults (never in production)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ledger.errors import ConfigError

DEFAULT_ORIGIN = "localhost:8000/log"


@dataclass(frozen=True)
class Settings:
    instance: Path
    database_url: str
    origin: str
    dev: bool
    #: None: reads go to ``database_url`` like writes.
    read_database_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        instance = Path(env.get("SUYUAN_INSTANCE") or "instance").resolve()
        url = env.get("SUYUAN_DATABASE_URL") or f"sqlite:///{instance / 'suyuan.db'}"
        read_url = env.get("SUYUAN_READ_DATABASE_URL") or None
        origin = env.get("SUYUAN_ORIGIN") or DEFAULT_ORIGIN
        if any(ch.isspace() for ch in origin) or "+" in origin or not origin:
            raise ConfigError(f"SUYUAN_ORIGIN {origin!r} must be non-empty with no spaces or '+'")
        return cls(
            instance=instance,
            database_url=url,
            origin=origin,
            dev=env.get("SUYUAN_DEV") == "1",
            read_database_url=read_url,
        )

    def ensure_instance(self) -> None:
        try:
            self.instance.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the instance folder {self.instance}: {exc}") from None
