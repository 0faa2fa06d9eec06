"""Ed25519 private key files: passphrase-encrypted PKCS#8 PEM, mode 0600.

Suyuan keeps each private signing key (the log key, an actor's key) in its own
file, encrypted with a passphrase (``BestAvailableEncryption``) so a copied
file alone does not give the key away.

Contracts:

* :func:`generate_key_file` MUST NOT overwrite an existing file; it creates the
  file with ``O_EXCL`` and mode 0600 and fsyncs the file and its directory.
* :func:`load_private_key` refuses files that group or others can access, files
  that are not encrypted PKCS#8 PEM, and keys that are not Ed25519.
* Private key bytes and passphrases MUST NOT be printed, logged or put into an
  exception message; every error here is a :class:`~ledger.errors.KeyFileError`
  naming the file only.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from ledger.errors import InvalidInput, KeyFileError

__all__ = ["KEY_FILE_MODE", "generate_key_file", "load_private_key", "public_key_bytes"]

KEY_FILE_MODE = 0o600
"""Mode of a key file: read/write for the owner only."""

_DIR_MODE = 0o700
_PEM_HEADER = b"-----BEGIN ENCRYPTED PRIVATE KEY-----"
_MAX_KEY_FILE_BYTES = 64 * 1024


def _check_passphrase(passphrase: bytes) -> None:
    if not isinstance(passphrase, bytes):
        raise KeyFileError(f"expected the passphrase as bytes, found {type(passphrase).__name__}")
    if not passphrase:
        raise KeyFileError("expected a non-empty passphrase: key files are always encrypted")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def generate_key_file(path: Path, passphrase: bytes) -> Ed25519PrivateKey:
    """Generate an Ed25519 key, write it encrypted to the new file ``path``, return it.

    ``passphrase`` MUST be non-empty bytes.  The file MUST NOT exist already
    (KeyFileError, the existing file is left untouched).  A missing parent
    directory is created with mode 0700.  The file is created with
    ``O_CREAT | O_EXCL`` and mode 0600, holds a PKCS#8 PEM encrypted with
    ``BestAvailableEncryption(passphrase)``, and is fsynced together with its
    directory before this returns.  Raises KeyFileError on any failure.
    """
    _check_passphrase(passphrase)
    path = Path(path)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(passphrase))
    directory = path.parent
    try:
        if not directory.exists():
            directory.mkdir(mode=_DIR_MODE, parents=True)
    except OSError as exc:
        raise KeyFileError(f"cannot create key directory {directory}: {exc.strerror}") from exc
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, KEY_FILE_MODE)
    except FileExistsError:
        raise KeyFileError(f"key file {path} exists; refusing to overwrite it") from None
    except OSError as exc:
        raise KeyFileError(f"cannot create key file {path}: {exc.strerror}") from exc
    try:
        try:
            os.fchmod(fd, KEY_FILE_MODE)  # the umask may have narrowed it; make it exact
            view = memoryview(pem)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_dir(directory)
    except OSError as exc:
        with contextlib.suppress(OSError):
            path.unlink()
        raise KeyFileError(f"cannot write key file {path}: {exc.strerror}") from exc
    return key


def load_private_key(path: Path, passphrase: bytes) -> Ed25519PrivateKey:
    """Read and decrypt the Ed25519 private key in ``path``.

    Raises KeyFileError if the file is missing or not a regular file; if its
    mode lets group or others access it (fix: ``chmod 600``); if it is not an
    encrypted PKCS#8 PEM; if the passphrase does not decrypt it; or if the key
    is not Ed25519.
    """
    _check_passphrase(passphrase)
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} not found") from None
    except OSError as exc:
        raise KeyFileError(f"cannot open key file {path}: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"key file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise KeyFileError(
                f"key file {path} is accessible by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {path}"
            )
        if info.st_size > _MAX_KEY_FILE_BYTES:
            raise KeyFileError(f"key file {path} is too large to be a key ({info.st_size} bytes)")
        chunks = []
        while chunk := os.read(fd, _MAX_KEY_FILE_BYTES):
            chunks.append(chunk)
        data = b"".join(chunks)
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    if _PEM_HEADER not in data:
        raise KeyFileError(f"key file {path} is not an encrypted PKCS#8 PEM private key")
    try:
        key = load_pem_private_key(data, password=passphrase)
    except UnsupportedAlgorithm:
        raise KeyFileError(f"key file {path} holds an unsupported key type") from None
    except (ValueError, TypeError):
        raise KeyFileError(f"cannot decrypt key file {path}: wrong passphrase?") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"key file {path} holds a {type(key).__name__}, expected Ed25519")
    return key


def public_key_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The raw 32-byte Ed25519 public key of ``key`` (private or public)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    if not isinstance(public, Ed25519PublicKey):
        raise InvalidInput(f"expected an Ed25519 key, found {type(key).__name__}")
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)
