"""The database tables.  Alembic migrations in ``ledger/migrations`` create them.

Source of truth is ``entries.leaf`` (the exact leaf bytes) and nothing else:
``tree_nodes`` and ``checkpoints`` are what the log has computed and signed
(``suyuan verify`` recomputes and compares them), and ``keys`` is a projection
of the key registry entries kept for fast append-time checks (verify replays
the registry from the leaves and compares).  ``log_state`` holds one row whose
lock serialises every append (docs/FORMAT.md, "Sequencing").
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

#: On SQLite a BIGINT primary key is not the rowid; INTEGER is, and saves an index.
SeqType = BigInteger().with_variant(Integer(), "sqlite")

meta = Table(
    "meta",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

log_state = Table(
    "log_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("size", BigInteger, nullable=False),
    Column("last_hash", LargeBinary(32), nullable=False),
    Column("last_time", String(32), nullable=False),
    # seq of the newest key.* entry (-1: none); tells writers when their key cache is stale
    Column("registry_seq", BigInteger, nullable=False),
)

entries = Table(
    "entries",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=False),
    Column("kind", String(64), nullable=False),
    # SHA-256 of the canonical statement: one statement is appended at most once (no replays)
    Column("stmt_hash", LargeBinary(32), nullable=False, unique=True),
    Column("leaf", LargeBinary, nullable=False),
)

tree_nodes = Table(
    "tree_nodes",
    metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
    sqlite_with_rowid=False,
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("size", SeqType, primary_key=True, autoincrement=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False),
    Column("created", String(32), nullable=False),
)

keys = Table(
    "keys",
    metadata,
    Column("key_id", String(300), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("vkey", Text, nullable=False),
    Column("role", String(32), nullable=False),
    Column("org", String(256), nullable=False),
    Column("registered_seq", BigInteger, nullable=False),
    Column("revoked_seq", BigInteger, nullable=True),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("name", String(128), primary_key=True),
    # SHA-256 of the secret token; the token itself is shown once and never stored
    Column("token_hash", LargeBinary(32), nullable=False, unique=True),
    Column("created", String(32), nullable=False),
    Column("revoked", String(32), nullable=True),
)

refusals = Table(
    "refusals",
    metadata,
    # Beside the ledger, not part of it: signed statements a kind's rule refused
    # (an over-spend, a duplicate payment), kept as evidence of the attempt.
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", String(32), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("code", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("statement", Text, nullable=False),  # RFC 8785 JSON of the signed statement
    Column("key_ids", Text, nullable=False),  # space-separated signing key ids
)

# The site's own tables (migration 0006): not part of the ledger.
users = Table(
    "users",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("display_name", Text, nullable=False),
    Column("password_hash", Text, nullable=False),  # scrypt, see web/passwords.py
    # The ledger key the user signs with: the user's role and organisation are the key's.
    Column("key_name", String(64), nullable=False),
    Column("active", Boolean, nullable=False),
    # Bumped on password change or deactivation: older sessions stop working.
    Column("session_version", Integer, nullable=False),
    Column("created", String(32), nullable=False),
    Column("last_login", String(32), nullable=True),
)

scans = Table(
    "scans",
    metadata,
    Column("code", String(200), primary_key=True),  # the scanned path, e.g. /01/…/10/…
    Column("day", String(10), primary_key=True),  # UTC date
    Column("scans", BigInteger, nullable=False),
    Column("visitors", BigInteger, nullable=False),  # distinct visitors that day
)

scan_visitors = Table(
    "scan_visitors",
    metadata,
    Column("code", String(200), primary_key=True),
    Column("day", String(10), primary_key=True),
    # HMAC-SHA-256 (first 16 bytes) of the client address under that day's key; never the address
    Column("visitor", LargeBinary(16), primary_key=True),
)

# The officials' portal (migration 0007): disbursements waiting for their co-signers.  Not
# part of the ledger: a draft is a signed statement that is not yet an entry; the ledger
# has it only once every signature the rules require is on it (web/drafts.py).
drafts = Table(
    "drafts",
    metadata,
    Column("id", String(32), primary_key=True),  # random, URL-safe
    # pending | appending | appended | refused | declined | withdrawn
    Column("status", String(16), nullable=False, index=True),
    Column("kind", String(64), nullable=False),
    Column("created_by", String(64), nullable=False, index=True),  # users.username
    Column("created", String(32), nullable=False),
    Column("updated", String(32), nullable=False),
    Column("version", Integer, nullable=False),  # bumped by every change (optimistic lock)
    Column("statement", Text, nullable=False),  # RFC 8785 JSON of the signed statement
    Column("required_roles", Text, nullable=False),  # space-separated, repeats mean "that many"
    Column("waiting", Text, nullable=False),  # roles still without a signature
    Column("allocation", String(64), nullable=True),
    Column("note", Text, nullable=True),  # for the co-signers; never on the ledger
    Column("seq", BigInteger, nullable=True),  # the entry, once appended
    Column("reason", Text, nullable=True),  # why refused, declined or withdrawn
    Column("decided_by", String(64), nullable=True),  # who declined or withdrew
)

# Witnessing (migration 0008): the log's side of C2SP tlog-witness, beside the ledger and not
# part of it.  A cosignature is a witness's statement about a checkpoint the log already signed;
# losing these rows loses no entry, and `suyuan verify` does not read them (ledger/witnessing.py).
witnesses = Table(
    "witnesses",
    metadata,
    Column("key_id", String(300), primary_key=True),  # name+hex8 of the cosigner key (type 0x04)
    Column("name", String(256), nullable=False),  # the cosigner's key name, shown on pages
    Column("vkey", Text, nullable=False),  # name+hex8+base64(0x04 || Ed25519 public key)
    Column("url", Text, nullable=False),  # the submission prefix (…/add-checkpoint is POSTed)
    Column("added", String(32), nullable=False),
    Column("active", Boolean, nullable=False),  # False: no longer submitted to (still counted)
)

witness_state = Table(
    "witness_state",
    metadata,
    Column("key_id", String(300), primary_key=True),
    # The size the witness last acknowledged (its `old` for the next add-checkpoint); 0 until
    # it answers.  Learnt from a 200 or from a 409's text/x.tlog.size body.
    Column("size", BigInteger, nullable=False),
    # never | cosigned | conflict | inconsistent | refused | unknown-log | bad-request |
    # bad-cosignature | unreachable | ahead | error
    Column("status", String(32), nullable=False),
    Column("error", Text, nullable=True),  # the last failure, for the operator (None after a 200)
    Column("attempted", String(32), nullable=True),  # time of the last submission
    Column("acknowledged", String(32), nullable=True),  # time of the last 200
)

cosignatures = Table(
    "cosignatures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("size", BigInteger, nullable=False),  # the checkpoint cosigned (one per size)
    Column("key_id", String(300), nullable=False),  # the witness key
    Column("name", String(256), nullable=False),
    Column("line", Text, nullable=False),  # the signature line "— name base64…\n", verified
    Column("timestamp", BigInteger, nullable=False),  # the cosignature's own POSIX time
    Column("received", String(32), nullable=False),
    UniqueConstraint("size", "key_id", name="uq_cosignatures_size_key"),
)
