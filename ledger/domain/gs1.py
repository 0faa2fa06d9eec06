"""GS1 identifiers for produce batches: GTINs, lot numbers (AI 10) and Digital Link paths.

Pure functions, no I/O.  Everything refused raises :class:`ledger.errors.InvalidInput` with
a message that says what was expected and what was found.

* **GTIN** (AI 01, GS1 General Specifications §3.4.2): 8, 12, 13 or 14 digits whose last
  digit is the mod-10 check digit.  Normalised to GTIN-14 by padding with leading zeros, the
  form ledger bodies and Digital Link paths carry.
* **Lot** (AI 10, batch/lot number): 1–20 characters from GS1 AI encodable character set 82
  (``! " % & ' ( ) * + , - . / 0-9 : ; < = > ? A-Z _ a-z``), except the lots ``.`` and
  ``..`` and lots starting with ``/``, whose scan URLs cannot reach their page (browsers
  drop dot segments; the site's path rule cannot start with ``/``).  Lots are
  case-sensitive; :func:`lot_fold` gives the form under which two lots count as confusable.
* **Digital Link** (GS1 Digital Link URI syntax): ``/01/<gtin14>/10/<lot>`` with every lot
  character other than the URI unreserved ones (``A-Z a-z 0-9 - . _``) percent-encoded; and,
  for batches without a GTIN, this ledger's own short path ``/b/<lot>`` (same encoding).
"""

from __future__ import annotations

import re
import string
import unicodedata
from urllib.parse import urlsplit

from ledger.errors import InvalidInput

#: GS1 AI encodable character set 82 (GS1 General Specifications, figure 7.11-1).
CHARSET_82 = frozenset(string.ascii_letters + string.digits + "!\"%&'()*+,-./:;<=>?_")
MAX_LOT_LENGTH = 20
GTIN_LENGTHS = (8, 12, 13, 14)
#: Characters a Digital Link path carries as they are; everything else is percent-encoded.
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._")
_PCT_RE = re.compile(r"%([0-9A-Fa-f]{2})")


def gtin_check_digit(digits: str) -> str:
    """The GS1 mod-10 check digit for ``digits`` (a GTIN without its last digit).

    Weights 3 and 1 alternate from the right, starting with 3 on the rightmost digit.
    """
    if not digits.isascii() or not digits.isdigit():
        raise InvalidInput(f"a GTIN is made of digits 0-9, got {digits!r}")
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return str((10 - total % 10) % 10)


def normalize_gtin(value: object) -> str:
    """A GTIN-8, -12, -13 or -14 as the 14-digit form (leading zeros), check digit verified."""
    if not isinstance(value, str) or not value.isascii() or not value.isdigit():
        raise InvalidInput(f"a GTIN must be a string of 8, 12, 13 or 14 digits, got {value!r}")
    if len(value) not in GTIN_LENGTHS:
        raise InvalidInput(
            f"a GTIN has 8, 12, 13 or 14 digits, got {len(value)} digits in {value!r}"
        )
    gtin14 = value.rjust(14, "0")
    if set(gtin14) == {"0"}:
        raise InvalidInput(f"GTIN {value!r} is all zeros, which GS1 never allocates")
    expected = gtin_check_digit(gtin14[:-1])
    if gtin14[-1] != expected:
        raise InvalidInput(
            f"GTIN {value}: check digit should be {expected}, found {gtin14[-1]} "
            f"(did you mean {value[:-1]}{expected}?)"
        )
    return gtin14


def validate_gtin14(value: object) -> str:
    """A GTIN exactly as ledger bodies carry it: 14 digits with a valid check digit."""
    if isinstance(value, str) and len(value) in (8, 12, 13) and value.isascii() and value.isdigit():
        raise InvalidInput(
            f"gtin must be the 14-digit form; pad {value!r} with leading zeros to "
            f"{value.rjust(14, '0')!r}"
        )
    return normalize_gtin(value)


#: Lots in CS82 whose scan URL cannot reach their page: browsers remove the dot segments
#: ``.`` and ``..`` (also percent-encoded), and no path rule matches a lot starting with ``/``.
UNREACHABLE_LOTS = (".", "..")


def reaches_its_page(lot: str) -> bool:
    """Whether a lot's label URL can bring a phone to the lot's page."""
    return lot not in UNREACHABLE_LOTS and not lot.startswith("/")


def validate_lot(value: object) -> str:
    """A lot number (AI 10): 1–20 characters of GS1 character set 82; returned unchanged."""
    if not isinstance(value, str):
        raise InvalidInput(f"a lot number must be a string, got {type(value).__name__}")
    if not 1 <= len(value) <= MAX_LOT_LENGTH:
        raise InvalidInput(
            f"a lot number (GS1 AI 10) has 1 to {MAX_LOT_LENGTH} characters, "
            f"got {len(value)} in {value!r}"
        )
    for position, char in enumerate(value, start=1):
        if char not in CHARSET_82:
            raise InvalidInput(f"lot {value!r}: {_describe_bad_char(char, position)}")
    if value in UNREACHABLE_LOTS:
        raise InvalidInput(
            f"lot {value!r}: a lot may not be '.' or '..': in a scan URL that is a dot segment, "
            "which browsers remove, so the label would not reach the lot's page"
        )
    if value.startswith("/"):
        raise InvalidInput(
            f"lot {value!r}: a lot may not start with '/': its scan URL would not reach the "
            "lot's page"
        )
    return value


def _describe_bad_char(char: str, position: int) -> str:
    where = f"character {position}, {char!r} (U+{ord(char):04X})"
    ascii_form = unicodedata.normalize("NFKC", char)
    if ascii_form != char and len(ascii_form) == 1 and ascii_form in CHARSET_82:
        return f"{where} is a full-width or compatibility form; use the ASCII {ascii_form!r}"
    if char == " ":
        return f"{where}: spaces are not allowed in GS1 AI 10"
    name = unicodedata.name(char, "")  # 'А' looks like 'A': say it is CYRILLIC ... A
    return (
        f"{where} is not in the GS1 AI 10 character set 82 (ASCII letters, digits and "
        "! \" % & ' ( ) * + , - . / : ; < = > ? _)" + (f"; it is {name}" if name else "")
    )


def lot_fold(lot: str) -> str:
    """The form under which two lots are confusable: NFKC (full-width → ASCII), then case-folded.

    ``"A1"``, ``"a1"`` and ``"Ａ１"`` all fold to ``"a1"``.
    """
    return unicodedata.normalize("NFKC", lot).casefold()


def encode_segment(lot: str) -> str:
    """Percent-encode a lot for a URI path segment (upper-case hex; unreserved kept)."""
    return "".join(
        c if c in _UNRESERVED else "".join(f"%{b:02X}" for b in c.encode("utf-8")) for c in lot
    )


def decode_segment(segment: str) -> str:
    """Strict inverse of :func:`encode_segment`: every ``%`` MUST start a two-hex escape."""
    if "/" in segment:
        raise InvalidInput(f"path segment {segment!r} contains '/'")
    stray = _PCT_RE.sub("", segment)
    if "%" in stray:
        raise InvalidInput(
            f"path segment {segment!r}: '%' must be followed by two hex digits (percent-encoding)"
        )
    raw = bytearray()
    last = 0
    for match in _PCT_RE.finditer(segment):
        raw += segment[last : match.start()].encode("utf-8")
        raw.append(int(match.group(1), 16))
        last = match.end()
    raw += segment[last:].encode("utf-8")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"path segment {segment!r} does not decode to UTF-8 text") from None


def digital_link_path(gtin: str, lot: str) -> str:
    """``/01/<gtin14>/10/<percent-encoded lot>`` for a valid GTIN and lot."""
    return f"/01/{normalize_gtin(gtin)}/10/{encode_segment(validate_lot(lot))}"


def short_path(lot: str) -> str:
    """``/b/<percent-encoded lot>``: the scan path of a batch registered without a GTIN."""
    return f"/b/{encode_segment(validate_lot(lot))}"


def batch_path(gtin: str | None, lot: str) -> str:
    """The scan path of a batch: its Digital Link when it has a GTIN, else :func:`short_path`."""
    return short_path(lot) if gtin is None or gtin == "" else digital_link_path(gtin, lot)


def _path_of(uri: str) -> str:
    try:
        return urlsplit(uri).path
    except ValueError as exc:
        raise InvalidInput(f"not a URI or path: {uri!r} ({exc})") from None


def parse_digital_link(uri: str) -> tuple[str, str]:
    """``(gtin14, lot)`` from a Digital Link URI or path ending ``/01/<gtin>/10/<lot>``.

    A scheme, host, path prefix (GS1 Digital Link allows one before the primary key),
    query and fragment are ignored.  The GTIN may have 8, 12, 13 or 14 digits and is
    returned as GTIN-14; the lot is percent-decoded and validated.
    """
    if not isinstance(uri, str):
        raise InvalidInput(f"a Digital Link must be a string, got {type(uri).__name__}")
    segments = _path_of(uri).split("/")
    if len(segments) < 5 or segments[-4] != "01" or segments[-2] != "10":
        raise InvalidInput(f"expected a GS1 Digital Link path /01/<gtin>/10/<lot>, got {uri!r}")
    gtin = normalize_gtin(segments[-3])
    return gtin, validate_lot(decode_segment(segments[-1]))


def parse_batch_path(uri: str) -> tuple[str | None, str]:
    """``(gtin14 or None, lot)`` from a Digital Link (:func:`parse_digital_link`) or ``/b/<lot>``."""
    if not isinstance(uri, str):
        raise InvalidInput(f"a batch path must be a string, got {type(uri).__name__}")
    segments = _path_of(uri).split("/")
    if len(segments) == 3 and segments[0] == "" and segments[1] == "b":
        return None, validate_lot(decode_segment(segments[2]))
    return parse_digital_link(uri)
