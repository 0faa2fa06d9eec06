"""The content-addressed blob store for evidence documents."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ledger.blobs import BlobStore, FileBlobStore, default_store, evidence_document
from ledger.domain import common
from ledger.errors import InvalidInput, NotFound, VerificationError

DATA = "验收报告 acceptance report".encode() * 100
DIGEST = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> FileBlobStore:
    return FileBlobStore(tmp_path / "blobs")


def test_put_get_has(store: FileBlobStore) -> None:
    assert not store.has(DIGEST)
    assert store.put(DATA) == DIGEST
    assert store.has(DIGEST)
    assert store.get(DIGEST) == DATA
    path = store.root / "sha256" / DIGEST[:2] / DIGEST
    assert path.read_bytes() == DATA
    assert store.put(DATA) == DIGEST  # idempotent
    assert sorted(p.name for p in path.parent.iterdir()) == [DIGEST]  # no temporaries left
    assert store.put(b"") == hashlib.sha256(b"").hexdigest()


def test_the_protocol_is_what_callers_see(store: FileBlobStore) -> None:
    generic: BlobStore = store
    assert generic.get(generic.put(b"x")) == b"x"


def test_size_limit(tmp_path: Path) -> None:
    small = FileBlobStore(tmp_path, max_size=10)
    assert small.put(b"0123456789")
    with pytest.raises(InvalidInput, match="at most 10 bytes, got 11"):
        small.put(b"0123456789a")
    assert FileBlobStore(tmp_path).max_size == 50 * 1024 * 1024


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", DIGEST.upper(), DIGEST[:63], DIGEST + "/..", "", 42]
)
def test_names_must_be_hashes(store: FileBlobStore, name: object) -> None:
    for method in (store.get, store.has):
        with pytest.raises(InvalidInput, match="64 lower-case hex"):
            method(name)  # type: ignore[operator]


def test_missing_blob(store: FileBlobStore) -> None:
    with pytest.raises(NotFound, match=DIGEST):
        store.get(DIGEST)
    with pytest.raises(NotFound, match=DIGEST), store.open(DIGEST):
        pass


def test_an_altered_file_is_detected_and_repaired_by_put(store: FileBlobStore) -> None:
    store.put(DATA)
    store.path(DIGEST).write_bytes(DATA + b"!")
    with pytest.raises(VerificationError, match=f"blob {DIGEST} was altered"):
        store.get(DIGEST)
    with pytest.raises(VerificationError, match="altered"), store.open(DIGEST):
        pass
    store.put(DATA)  # putting the true content again restores it
    assert store.get(DIGEST) == DATA


def test_streaming(store: FileBlobStore) -> None:
    store.put(DATA)
    with store.open(DIGEST) as handle:
        assert handle.read() == DATA


def test_evidence_document_is_a_valid_evidence_record(store: FileBlobStore) -> None:
    record = evidence_document(store, DATA, "竣工验收报告.pdf", "application/pdf")
    assert record == {
        "sha256": DIGEST,
        "name": "竣工验收报告.pdf",
        "media_type": "application/pdf",
        "size": len(DATA),
    }
    assert common.evidence({"evidence": [record]}, "evidence", "test") == [record]
    assert store.get(record["sha256"]) == DATA


def test_evidence_document_refuses_bad_descriptions_before_storing(store: FileBlobStore) -> None:
    with pytest.raises(InvalidInput, match="media_type"):
        evidence_document(store, DATA, "x.pdf", "PDF")
    with pytest.raises(InvalidInput, match="name"):
        evidence_document(store, DATA, "", "application/pdf")
    assert not store.has(DIGEST)


def test_default_store_is_in_the_instance_folder(tmp_path: Path) -> None:
    assert default_store(tmp_path).root == tmp_path / "blobs"
