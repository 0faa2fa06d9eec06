"""The instance folder's key store: the log key and the author keys this operator holds.

Layout (all files PKCS8 PEM encrypted with the passphrase, mode 0600)::

    <instance>/log.key           the log's checkpoint key; its note name is the log origin
    <instance>/keys/<NAME>.key   author keys (admin, cooperatives, officials, ...)

Key *names* of author keys held here are restricted to ``[A-Za-z0-9][A-Za-z0-9._-]*``
(at most 64 characters) so that they are safe file names; the ledger itself
accepts any C2SP key name.  Private keys MUST NOT be printed or logged.
"""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from keys.files import generate_key_file, load_private_key
from ledger.errors import ConfigError, InvalidInput, KeyFileError
from ledger.note import Signer

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_author_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or name.endswith(".key"):
        raise InvalidInput(
            f"key name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def passphrase_from(env: Mapping[str, str], *, confirm: bool = False) -> bytes:
    """``SUYUAN_PASSPHRASE``, or a prompt on the terminal; never echoed or logged."""
    value = env.get("SUYUAN_PASSPHRASE")
    if value:
        return value.encode("utf-8")
    try:
        tty = os.open("/dev/tty", os.O_RDWR)
        os.close(tty)
    except OSError:
        raise ConfigError("no passphrase: set SUYUAN_PASSPHRASE or run in a terminal") from None
    first = getpass.getpass("Key passphrase: ")
    if confirm and getpass.getpass("Repeat passphrase: ") != first:
        raise KeyFileError("the passphrases do not match")
    if not first:
        raise KeyFileError("the passphrase must not be empty")
    return first.encode("utf-8")


@dataclass(frozen=True)
class KeyStore:
    instance: Path

    @property
    def log_key_path(self) -> Path:
        return self.instance / "log.key"

    def author_path(self, name: str) -> Path:
        return self.instance / "keys" / f"{check_author_name(name)}.key"

    def new_log_key(self, origin: str, passphrase: bytes) -> Signer:
        return Signer(origin, generate_key_file(self.log_key_path, passphrase))

    def log_signer(self, origin: str, passphrase: bytes) -> Signer:
        return Signer(origin, load_private_key(self.log_key_path, passphrase))

    def new_author(self, name: str, passphrase: bytes) -> Signer:
        return Signer(name, generate_key_file(self.author_path(name), passphrase))

    def author(self, name: str, passphrase: bytes) -> Signer:
        path = self.author_path(name)
        if not path.exists():
            raise KeyFileError(f"no private key named {name!r} in {path.parent}")
        return Signer(name, load_private_key(path, passphrase))

    def author_names(self) -> list[str]:
        folder = self.instance / "keys"
        if not folder.is_dir():
            return []
        return sorted(p.name[: -len(".key")] for p in folder.glob("*.key"))

    def discard_author(self, name: str) -> None:
        """Remove a key file that never made it into the ledger (its registration failed)."""
        self.author_path(name).unlink(missing_ok=True)
