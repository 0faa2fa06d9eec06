"""Property tests of the outside-input parsers of the domain: GS1 Digital Link paths and
spreadsheet import.  Arbitrary text is refused with ledger.errors.Error or accepted, never
anything else; every valid lot's scan path parses back to it; generated valid rows survive
a CSV round trip exactly.  (tests/domain/test_gs1.py has the GS1 known answers.)
"""

from __future__ import annotations

import io
import string
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ledger.domain  # noqa: F401  (registers the kinds whose schemas type the cells)
from ledger.domain import gs1
from ledger.errors import Error
from ledger.importer import convert, row_to_body, yuan_to_fen
from ledger.rules import KINDS
from ledger.tabular import rows_from_bytes, write_csv

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: Text as it arrives from outside: any code point (surrogates too), and URI-ish pieces.
outside_text = st.lists(
    st.one_of(
        st.characters(),
        st.sampled_from([*"/%01AFaf.?#:[]", "%2F", "%E6%89%B9", "/01/", "/10/", "/b/"]),
    ),
    max_size=30,
).map("".join)
cs82_lots = st.text(alphabet=sorted(gs1.CHARSET_82), min_size=1, max_size=gs1.MAX_LOT_LENGTH)


def refused_or_returned(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except Error as exc:
        assert str(exc)
        return None


@FAST
@given(outside_text)
def test_gs1_parsers_refuse_with_ledger_errors_only(text: str) -> None:
    for parse in (
        gs1.parse_batch_path,
        gs1.parse_digital_link,
        gs1.decode_segment,
        gs1.normalize_gtin,
        gs1.validate_gtin14,
        gs1.validate_lot,
    ):
        refused_or_returned(parse, text)


@FAST
@given(st.sampled_from(["", "https://id.example.cn/shop"]), st.text(string.digits, max_size=15))
def test_gtins_in_paths_refuse_with_ledger_errors_only(prefix: str, digits: str) -> None:
    refused_or_returned(gs1.parse_digital_link, f"{prefix}/01/{digits}/10/A1")


@settings(max_examples=400, deadline=None)
@given(cs82_lots, st.sampled_from([None, "09506000134352", "00000012345670"]))
def test_every_cs82_lot_round_trips_or_is_refused_for_its_url(lot: str, gtin: str | None) -> None:
    """The whole of character set 82: a lot is valid, and its scan path parses back to it
    (behind any host and prefix for a Digital Link), unless its URL could not reach it."""
    unreachable = lot in (".", "..") or lot.startswith("/")
    try:
        path = gs1.batch_path(gtin, lot)
    except Error as exc:
        assert unreachable, exc
        return
    assert not unreachable
    assert gs1.parse_batch_path(path) == (gtin, lot)
    assert set(path) <= set(string.ascii_letters + string.digits + "-._/%")
    if gtin is not None:
        assert gs1.parse_batch_path(f"https://id.example.cn/x{path}?q=1#f") == (gtin, lot)


_SCHEMAS = [
    {"type": "integer"},
    {"type": "string"},
    {"type": "string", "format": "date"},
    {"type": "boolean"},
    {"type": "array"},
    {"type": "object"},
    {"type": ["string", "null"]},
]
cells = st.one_of(
    st.none(),
    outside_text,
    st.integers(),
    st.floats(allow_nan=True),
    st.booleans(),
    st.dates(),
    st.datetimes(),
)


@FAST
@given(cells, st.sampled_from(_SCHEMAS))
def test_importer_cells_refuse_with_ledger_errors_only(cell: Any, schema: dict[str, Any]) -> None:
    refused_or_returned(convert, cell, schema, "col")
    fen = refused_or_returned(yuan_to_fen, cell, "amount_yuan")
    assert fen is None or (isinstance(fen, int) and not isinstance(fen, bool))


@FAST
@given(
    st.sampled_from(sorted(k for k, v in KINDS.items() if v.schema is not None)),
    st.dictionaries(
        st.sampled_from(["text", "ref", "lot", "gtin", "amount_yuan", "amount_fen", "a.b.c"]),
        cells,
        max_size=5,
    ),
)
def test_rows_refuse_with_ledger_errors_only(kind: str, row: dict[str, Any]) -> None:
    schema = KINDS[kind].schema
    assert schema is not None
    refused_or_returned(row_to_body, row, schema)


#: Text a spreadsheet cell round-trips: no surrounding blanks (reading strips them), no
#: leading formula character (writing defuses it with a quote), no lone surrogates.
cell_text = st.text(
    alphabet=st.characters(blacklist_categories=["Cs", "Cc", "Zl", "Zp"]), min_size=1, max_size=30
).filter(lambda t: t == t.strip() and t[0] not in "=+-@'")
rows = st.lists(
    st.fixed_dictionaries(
        {"lot": cs82_lots.filter(lambda t: t[0] not in "=+-@'"), "text": cell_text}
    ),
    min_size=1,
    max_size=8,
)


@FAST
@given(rows)
def test_csv_round_trip_of_valid_rows(generated: list[dict[str, str]]) -> None:
    out = io.BytesIO()
    write_csv(generated, out)
    read = rows_from_bytes(out.getvalue(), ".csv")
    assert [cells for _line, cells in read] == generated
    assert [line for line, _cells in read] == list(range(2, 2 + len(generated)))
