"""One mapping from the ledger's error tree to HTTP statuses and stable error codes."""

from __future__ import annotations

from ledger.errors import (
    ConfigError,
    Conflict,
    Error,
    InvalidEntry,
    InvalidInput,
    KeyFileError,
    NotFound,
    RuleViolation,
    StorageError,
    VerificationError,
)

# Most specific first.
_STATUS: list[tuple[type[Error], int, str]] = [
    (InvalidEntry, 400, "invalid_entry"),
    (InvalidInput, 400, "invalid_input"),
    (Conflict, 409, "conflict"),
    (RuleViolation, 422, "rule_violation"),
    (VerificationError, 422, "verification_failed"),
    (NotFound, 404, "not_found"),
    (KeyFileError, 503, "log_key_unavailable"),
    (ConfigError, 503, "not_configured"),
    (StorageError, 503, "storage_error"),
]


def classify(exc: Error) -> tuple[int, str]:
    for kind, status, code in _STATUS:
        if isinstance(exc, kind):
            return status, code
    return 500, "error"
