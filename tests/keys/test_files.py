"""Tests for keys.files: encrypted Ed25519 PKCS#8 key files."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from keys import generate_key_file, load_private_key, public_key_bytes
from ledger.errors import InvalidInput, KeyFileError

PASS = b"correct horse battery staple"


def _seed(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def _write(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.write_bytes(data)
    path.chmod(mode)


def test_create_and_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "log.key"
    key = generate_key_file(path, PASS)
    loaded = load_private_key(path, PASS)
    assert _seed(loaded) == _seed(key)
    assert public_key_bytes(loaded) == public_key_bytes(key.public_key())
    assert len(public_key_bytes(key)) == 32


def test_file_mode_is_0600(tmp_path: Path) -> None:
    path = tmp_path / "log.key"
    old_umask = os.umask(0)  # even a permissive umask must not widen the mode
    try:
        generate_key_file(path, PASS)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_missing_parent_directory_is_created_0700(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "log.key"
    generate_key_file(path, PASS)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_private_key(path, PASS) is not None


def test_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "log.key"
    key = generate_key_file(path, PASS)
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="exists"):
        generate_key_file(path, b"another passphrase")
    assert path.read_bytes() == before
    assert _seed(load_private_key(path, PASS)) == _seed(key)


def test_wrong_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "log.key"
    generate_key_file(path, PASS)
    wrong = b"hunter2-not-the-passphrase"
    with pytest.raises(KeyFileError, match="wrong passphrase") as info:
        load_private_key(path, wrong)
    assert wrong.decode() not in str(info.value)
    assert PASS.decode() not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="not found"):
        load_private_key(tmp_path / "absent.key", PASS)


def test_ecdsa_key_file_rejected(tmp_path: Path) -> None:
    path = tmp_path / "p256.key"
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(PASS)
    )
    _write(path, pem)
    with pytest.raises(KeyFileError, match="expected Ed25519"):
        load_private_key(path, PASS)


def test_unencrypted_key_file_rejected(tmp_path: Path) -> None:
    path = tmp_path / "plain.key"
    pem = Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    _write(path, pem)
    with pytest.raises(KeyFileError, match="not an encrypted PKCS#8"):
        load_private_key(path, PASS)


def test_garbage_key_file_rejected(tmp_path: Path) -> None:
    path = tmp_path / "garbage.key"
    _write(
        path, b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
    )
    with pytest.raises(KeyFileError):
        load_private_key(path, PASS)


def test_contents_are_encrypted(tmp_path: Path) -> None:
    path = tmp_path / "log.key"
    key = generate_key_file(path, PASS)
    data = path.read_bytes()
    assert data.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    seed = _seed(key)
    assert seed not in data
    assert base64.b64encode(seed) not in data
    assert seed not in base64.b64decode(b"".join(data.splitlines()[1:-1]))


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o700])
def test_loose_permissions_rejected(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "log.key"
    generate_key_file(path, PASS)
    path.chmod(mode)
    if mode & 0o077:
        with pytest.raises(KeyFileError, match="chmod 600"):
            load_private_key(path, PASS)
    else:
        assert load_private_key(path, PASS) is not None


def test_empty_passphrase_rejected(tmp_path: Path) -> None:
    path = tmp_path / "log.key"
    with pytest.raises(KeyFileError, match="non-empty passphrase"):
        generate_key_file(path, b"")
    assert not path.exists()
    generate_key_file(path, PASS)
    with pytest.raises(KeyFileError, match="non-empty passphrase"):
        load_private_key(path, b"")
    with pytest.raises(KeyFileError, match="as bytes"):
        load_private_key(path, "text passphrase")  # type: ignore[arg-type]


def test_not_a_regular_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError):
        load_private_key(tmp_path, PASS)


def test_public_key_bytes_rejects_other_keys() -> None:
    with pytest.raises(InvalidInput):
        public_key_bytes(ec.generate_private_key(ec.SECP256R1()))  # type: ignore[arg-type]
