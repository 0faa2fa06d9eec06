"""Content-addressed blob store for evidence documents (contracts, photos, notices).

The ledger holds only a document's SHA-256 (``common.evidence``); the bytes live
here, named by that hash, so anyone holding a file can check it against the
ledger and the store can never serve a file that differs from the one recorded.

:class:`BlobStore` is the small protocol the rest of the code uses;
:class:`FileBlobStore` keeps blobs in a directory (by default
``<instance>/blobs``) at ``<root>/sha256/<first 2 hex>/<64 hex>``.  An operator
may plug in any other storage that implements the protocol.

Crash safety: :meth:`FileBlobStore.put` writes a temporary file in the target
directory, fsyncs it, renames it into place and fsyncs the directory.  A crash
leaves either no blob or the complete blob under its name — never a partial
file under a hash name; stray ``.tmp-*`` files may remain and are ignored (and
are safe to delete).  Rename replaces atomically, so two writers of the same
content both succeed and leave one identical file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Protocol

from ledger.domain import common
from ledger.errors import InvalidInput, NotFound, StorageError, VerificationError

MAX_BLOB_SIZE = 50 * 1024 * 1024  # 50 MiB
_HEX_RE = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20
BLOB_DIR = "blobs"


class BlobStore(Protocol):
    """Storage for evidence files, addressed by the SHA-256 of their content."""

    def put(self, data: bytes) -> str:
        """Store ``data`` (idempotent); return its SHA-256 as 64 lower-case hex digits."""
        ...

    def get(self, digest: str) -> bytes:
        """The bytes whose SHA-256 is ``digest``; NotFound, or VerificationError if altered."""
        ...

    def has(self, digest: str) -> bool:
        """True if a blob with this hash is stored."""
        ...


def check_digest(digest: Any) -> str:
    """Refuse anything but 64 lower-case hex digits (so a name can never leave the root)."""
    if not isinstance(digest, str) or not _HEX_RE.fullmatch(digest):
        raise InvalidInput(f"a blob name is a SHA-256 as 64 lower-case hex digits, got {digest!r}")
    return digest


class FileBlobStore:
    """Blobs as files under ``root/sha256/<2 hex>/<64 hex>``."""

    def __init__(self, root: Path, max_size: int = MAX_BLOB_SIZE) -> None:
        self.root = Path(root)
        self.max_size = max_size

    def path(self, digest: str) -> Path:
        check_digest(digest)
        return self.root / "sha256" / digest[:2] / digest

    def put(self, data: bytes) -> str:
        if len(data) > self.max_size:
            raise InvalidInput(f"a blob may be at most {self.max_size} bytes, got {len(data)}")
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if target.exists() and self._intact(target, digest):
            return digest
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = target.with_name(f".tmp-{digest[:16]}-{os.getpid()}-{os.urandom(4).hex()}")
            try:
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temp, target)
            finally:
                temp.unlink(missing_ok=True)
            _fsync_dir(target.parent)
        except OSError as exc:
            raise StorageError(f"cannot store blob {digest}: {exc}") from None
        return digest

    def get(self, digest: str) -> bytes:
        path = self.path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no blob {digest}") from None
        except OSError as exc:
            raise StorageError(f"cannot read blob {digest}: {exc}") from None
        found = hashlib.sha256(data).hexdigest()
        if found != digest:
            raise VerificationError(f"blob {digest} was altered: its content hashes to {found}")
        return data

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    @contextlib.contextmanager
    def open(self, digest: str) -> Iterator[IO[bytes]]:
        """A binary file object for streaming a large blob.

        The content is hashed first (reading the file once), so a caller never
        streams bytes that differ from ``digest``; the file may not change
        underneath (blobs are never rewritten with other content).
        """
        path = self.path(digest)
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            raise NotFound(f"no blob {digest}") from None
        except OSError as exc:
            raise StorageError(f"cannot read blob {digest}: {exc}") from None
        with handle:
            hasher = hashlib.sha256()
            for chunk in iter(lambda: handle.read(_CHUNK), b""):
                hasher.update(chunk)
            if hasher.hexdigest() != digest:
                raise VerificationError(
                    f"blob {digest} was altered: its content hashes to {hasher.hexdigest()}"
                )
            handle.seek(0)
            yield handle

    def _intact(self, path: Path, digest: str) -> bool:
        try:
            return hashlib.sha256(path.read_bytes()).hexdigest() == digest
        except OSError:
            return False


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def default_store(instance: Path) -> FileBlobStore:
    """The instance folder's store, ``<instance>/blobs``."""
    return FileBlobStore(Path(instance) / BLOB_DIR)


def evidence_document(store: BlobStore, data: bytes, name: str, media_type: str) -> dict[str, Any]:
    """Store ``data`` and return its evidence record for an entry body:
    ``{"sha256", "name", "media_type", "size"}`` (see ``ledger.domain.common.evidence``)."""
    record: dict[str, Any] = {
        "sha256": "0" * 64,  # placeholder: the description is validated before storing
        "name": name,
        "media_type": media_type,
        "size": len(data),
    }
    common.evidence({"evidence": [record]}, "evidence", "evidence document")
    record["sha256"] = store.put(data)
    return record
