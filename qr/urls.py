"""The URLs printed in QR codes, and how a scanned one is checked against the ledger.

Three kinds of label URL, all ``https://<host>`` plus a path and one query attribute:

* a produce lot: the GS1 Digital Link ``/01/<GTIN-14>/10/<lot>`` when the batch has a GTIN,
  else this ledger's ``/b/<lot>`` (paths built by :mod:`ledger.domain.gs1`);
* a project's public notice board: ``/p/<project id>``;
* any other entry, e.g. a disbursement notice: ``/n/<seq>`` (the entry read as a public
  notice; ``/e/<seq>``, the technical page of the entry, is accepted when parsing).

Every URL carries ``?h=<8 lower-case hex>``: the first 32 bits of the leaf hash (RFC 9162,
SHA-256 of 0x00 ‖ leaf) of the entry that *registered* the thing — the batch's
``registered_seq``, the project's ``registered_seq``, or the entry itself.  GS1 Digital Link
lets a URI carry query attributes that are not GS1 Application Identifiers (they are passed
through to the resolver and ignored by GS1 parsers), so the label stays a valid Digital Link.
The prefix binds a printed label to one ledger entry: a label printed from a different ledger
(a test instance, a rebuilt database that reused a lot code or a seq) is refused by
:func:`check_label`.  It is NOT a secret — anyone can read the ledger and compute it — so it
does not stop a forger copying a genuine label; it stops honest mix-ups and stale labels.

Parsing is host-independent: a label stays checkable when the site moves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import Connection, select

from ledger.domain import gs1
from ledger.domain.batch_queries import find_batch
from ledger.domain.projects import projects
from ledger.errors import InvalidInput, NotFound, VerificationError
from ledger.merkle import leaf_hash
from ledger.schema import entries

#: The query attribute that carries the leaf-hash prefix.
HASH_PARAM = "h"
#: Hex digits of the leaf hash printed (32 bits).
HASH_HEX = 8
_HOST_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(?::[0-9]{1,5})?")
_HASH_RE = re.compile(rf"[0-9a-f]{{{HASH_HEX}}}")
_PROJECT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")

LabelKind = Literal["batch", "project", "entry"]


@dataclass(frozen=True)
class ScannedLabel:
    """A label URL taken apart: what it names and the hash prefix it carries.

    ``kind`` is ``batch`` (``gtin`` — GTIN-14 or None — and ``lot`` set), ``project``
    (``project`` set) or ``entry`` (``seq`` set).
    """

    kind: LabelKind
    hash_prefix: str
    gtin: str | None = None
    lot: str | None = None
    project: str | None = None
    seq: int | None = None


def check_host(host: str) -> str:
    """``host`` (a DNS name or address, optional ``:port``) as given; raises InvalidInput."""
    if not isinstance(host, str) or not _HOST_RE.fullmatch(host):
        raise InvalidInput(
            f"a label host is a DNS name with an optional :port (e.g. trace.example.cn), "
            f"got {host!r}"
        )
    return host


def host_from_origin(origin: str) -> str:
    """The host part of a log origin line (``trace.example.cn/log`` → ``trace.example.cn``)."""
    return check_host(origin.split("/", 1)[0])


def hash_prefix(leaf_hash_bytes: bytes) -> str:
    """The printed prefix of a leaf hash: its first :data:`HASH_HEX` hex digits."""
    if len(leaf_hash_bytes) != 32:
        raise InvalidInput(f"a leaf hash has 32 bytes, got {len(leaf_hash_bytes)}")
    return leaf_hash_bytes.hex()[:HASH_HEX]


def _url(host: str, path: str, leaf_hash_bytes: bytes) -> str:
    return f"https://{check_host(host)}{path}?{HASH_PARAM}={hash_prefix(leaf_hash_bytes)}"


def batch_url(host: str, gtin: str | None, lot: str, leaf_hash_bytes: bytes) -> str:
    """The label URL of a lot: Digital Link with a (validated, padded) GTIN, else ``/b/<lot>``."""
    return _url(host, gs1.batch_path(gtin, lot), leaf_hash_bytes)


def project_url(host: str, project_id: str, leaf_hash_bytes: bytes) -> str:
    """The label URL of a project's notice board, ``/p/<id>``."""
    if not isinstance(project_id, str) or not _PROJECT_RE.fullmatch(project_id):
        raise InvalidInput(
            f"a project id is 1–64 ASCII letters, digits and . _ : - (no '/' in a URL), "
            f"got {project_id!r}"
        )
    return _url(host, f"/p/{gs1.encode_segment(project_id)}", leaf_hash_bytes)


def entry_url(host: str, seq: int, leaf_hash_bytes: bytes) -> str:
    """The label URL of one entry (e.g. a disbursement notice), ``/n/<seq>``."""
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise InvalidInput(f"an entry seq is a non-negative integer, got {seq!r}")
    return _url(host, f"/n/{seq}", leaf_hash_bytes)


def parse_label_url(url: str) -> ScannedLabel:
    """Take a scanned label URL apart, ignoring scheme and host.  Raises InvalidInput."""
    if not isinstance(url, str):
        raise InvalidInput(f"a label URL must be a string, got {type(url).__name__}")
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:
        raise InvalidInput(f"not a URL: {url!r} ({exc})") from None
    values = parse_qs(parts.query, keep_blank_values=True).get(HASH_PARAM, [])
    if len(values) != 1 or not _HASH_RE.fullmatch(values[0]):
        raise InvalidInput(
            f"a label URL carries exactly one ?{HASH_PARAM}=<{HASH_HEX} lower-case hex digits>, "
            f"found {values!r} in {url!r}"
        )
    prefix = values[0]
    segments = parts.path.split("/")
    if len(segments) == 3 and segments[1] == "p":
        project = gs1.decode_segment(segments[2])
        if not _PROJECT_RE.fullmatch(project):
            raise InvalidInput(f"{url!r}: {project!r} is not a project id")
        return ScannedLabel("project", prefix, project=project)
    if len(segments) == 3 and segments[1] in ("e", "n"):
        if not segments[2].isascii() or not segments[2].isdigit() or len(segments[2]) > 18:
            raise InvalidInput(
                f"{url!r}: /{segments[1]}/ must be followed by an entry seq (digits)"
            )
        return ScannedLabel("entry", prefix, seq=int(segments[2]))
    try:
        gtin, lot = gs1.parse_batch_path(parts.path)
    except InvalidInput as exc:
        raise InvalidInput(
            f"expected a label URL /01/<gtin>/10/<lot>, /b/<lot>, /p/<project> or /n/<seq>, "
            f"got {url!r} ({exc})"
        ) from None
    return ScannedLabel("batch", prefix, gtin=gtin, lot=lot)


def entry_leaf_hash(conn: Connection, seq: int) -> bytes:
    """The RFC 9162 leaf hash of entry ``seq`` as stored; raises NotFound."""
    leaf = conn.execute(select(entries.c.leaf).where(entries.c.seq == seq)).scalar()
    if leaf is None:
        raise NotFound(f"no entry {seq} in the log")
    return leaf_hash(bytes(leaf))


def label_seq(conn: Connection, label: ScannedLabel) -> int:
    """The seq of the entry a parsed label names (its registering entry); raises NotFound."""
    if label.kind == "entry":
        assert label.seq is not None
        return label.seq
    if label.kind == "project":
        seq = conn.execute(
            select(projects.c.registered_seq).where(projects.c.id == label.project)
        ).scalar()
        if seq is None:
            raise NotFound(f"no project with id {label.project!r}")
        return int(seq)
    assert label.lot is not None
    batch = find_batch(conn, label.gtin, lot=label.lot)
    if batch is None:
        raise NotFound(f"no batch gtin={label.gtin} lot={label.lot!r} in the ledger")
    return int(batch["registered_seq"])


def check_label(conn: Connection, url: str) -> int:
    """The seq of the entry a scanned label was printed for.

    Raises InvalidInput for a malformed URL, NotFound when the ledger does not know what it
    names, and :class:`VerificationError` when its hash prefix is not that entry's.
    """
    label = parse_label_url(url)
    seq = label_seq(conn, label)
    expected = hash_prefix(entry_leaf_hash(conn, seq))
    if label.hash_prefix != expected:
        raise VerificationError(
            f"label {url!r} names entry {seq}, whose leaf hash starts {expected}, "
            f"but the label carries {HASH_PARAM}={label.hash_prefix}: it was not printed "
            f"for this ledger entry"
        )
    return seq
