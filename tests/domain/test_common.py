"""The shared field validators: what the schemas say, the checks enforce — no more, no less."""

from __future__ import annotations

import re

import pytest

from ledger.domain import common
from ledger.errors import InvalidEntry


@pytest.mark.parametrize(
    ("check", "good", "bad"),
    [
        (lambda v: common.household_code(v, "t"), "GX-GN-000123", "GX-GN-000123\n"),
        (lambda v: common.ident({"id": v}, "id", "t"), "GN-2017-IND", "GN-2017-IND\n"),
        (lambda v: common.date_field({"d": v}, "d", "t"), "2019-07-01", "2019-07-01\n"),
        (lambda v: common.period_field({"p": v}, "p", "t"), "2019", "٢٠١٩"),
        (lambda v: common.period_field({"p": v}, "p", "t"), "2019-Q3", "2019-Q3\n"),
        (lambda v: common.sha256_hex(v, "t"), "a" * 64, "a" * 64 + "\n"),
        (
            lambda v: common.location(
                {"l": {"province": "广西", "city": "贵港", "county": "港南", "division_code": v}},
                "l",
                "t",
            ),
            "450803",
            "٤٥٠٨٠٣",
        ),
    ],
)
def test_trailing_newlines_and_non_ascii_digits_are_refused(check, good, bad) -> None:  # type: ignore[no-untyped-def]
    check(good)
    with pytest.raises(InvalidEntry):
        check(bad)


@pytest.mark.parametrize(
    "schema",
    [common.IDENT_SCHEMA, common.HOUSEHOLD_SCHEMA, common.DATE_SCHEMA, common.SHA256_SCHEMA],
)
def test_schema_patterns_use_ascii_classes_only(schema: dict[str, str]) -> None:
    """JSON Schema patterns are ECMA 262: \\d there is ASCII, in Python it is not; say [0-9]."""
    assert "\\d" not in schema["pattern"]
    assert re.fullmatch(schema["pattern"], "x\n") is None
