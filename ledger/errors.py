"""The one error tree of Suyuan.

Every error raised on purpose by ``ledger``, ``keys``, ``qr`` and ``web`` is an
:class:`Error`.  Public functions MUST NOT let a raw ``ValueError``,
``KeyError``, ``TypeError`` or ``UnicodeError`` escape: parsers wrap them in
:class:`InvalidInput` (or a subclass) with a message that says what was
expected and what was found.

A ``verify_*`` function returns ``None`` or raises :class:`VerificationError`;
it never returns a boolean a caller could forget to check.
"""

from __future__ import annotations


class Error(Exception):
    """Base of every error Suyuan raises on purpose."""


class InvalidInput(Error):
    """Input is malformed: not JSON, wrong type, out of range, too long."""


class InvalidEntry(InvalidInput):
    """A statement or entry breaks the entry format (docs/FORMAT.md)."""


class VerificationError(Error):
    """A signature, hash, proof or chain link does not check out."""


class RuleViolation(Error):
    """Well-formed input that the ledger's rules refuse (unknown key, over-spend, …).

    ``signed_attempt`` is True when the statement's signatures were all verified
    against active registered keys before a kind's rule refused it: such a refusal
    is evidence of an attempt by those keys (the log keeps it in ``refusals``).
    """

    signed_attempt: bool = False

    @property
    def code(self) -> str:
        """The error's stable machine name: the class name in snake case (``overspend``)."""
        name = type(self).__name__
        return "".join(
            f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name)
        )


class Conflict(RuleViolation):
    """The write conflicts with what is already in the ledger (e.g. a replayed statement)."""


class Overspend(RuleViolation):
    """A disbursement or allocation larger than what remains of its allocation or source."""


class DuplicatePayment(RuleViolation):
    """A household paid twice by one programme in one period without a signed exception."""


class NotFound(Error):
    """The requested entry, key, tile or checkpoint does not exist."""


class KeyFileError(Error):
    """A private key file is missing, exists already, or cannot be decrypted."""


class StorageError(Error):
    """The database or file store failed or is inconsistent with the signed state."""


class ConfigError(Error):
    """The configuration (instance folder, environment, database URL) is unusable."""
