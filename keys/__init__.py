"""Private key handling for Suyuan: encrypted Ed25519 key files (see :mod:`keys.files`)."""

from __future__ import annotations

from keys.files import KEY_FILE_MODE, generate_key_file, load_private_key, public_key_bytes

__all__ = ["KEY_FILE_MODE", "generate_key_file", "load_private_key", "public_key_bytes"]
