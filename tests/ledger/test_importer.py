"""Spreadsheet import: strict cell conversion, every bad row reported, all or nothing."""

from __future__ import annotations

import io
from datetime import date, datetime
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook

from ledger.errors import InvalidInput
from ledger.importer import ImportRefused, convert, import_file, row_to_body, yuan_to_fen
from ledger.tabular import read_rows, write_csv, write_xlsx
from tests.helpers import Ledger, check_ledger, dump


def _csv(tmp_path: Path, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / "book.csv"
    path.write_bytes(text.encode(encoding))
    return path


def test_a_good_csv_is_appended_in_order(sqlite_ledger: Ledger, tmp_path: Path) -> None:
    path = _csv(tmp_path, "text,ref\n第一条 first,\n第二条 second,1\n\n第三条 third,0\n")
    entries = import_file(sqlite_ledger.log, path, "note", [sqlite_ledger.admin])
    assert [e.body for e in entries] == [
        {"text": "第一条 first"},
        {"text": "第二条 second", "ref": 1},
        {"text": "第三条 third", "ref": 0},
    ]
    assert [e.seq for e in entries] == [1, 2, 3]
    check_ledger(sqlite_ledger.engine)


def test_every_bad_row_is_reported_with_its_line_and_nothing_is_written(
    sqlite_ledger: Ledger, tmp_path: Path
) -> None:
    before = dump(sqlite_ledger.engine)
    path = _csv(
        tmp_path,
        "text,ref\n"
        "fine,\n"  # line 2
        "bad ref,abc\n"  # line 3: not an integer
        "full width,１\n"  # line 4: full-width digit
        "future,99\n"  # line 5: a rule refuses it (ref to a later seq)
        "fine too,0\n",  # line 6
    )
    with pytest.raises(ImportRefused) as caught:
        import_file(sqlite_ledger.log, path, "note", [sqlite_ledger.admin])
    errors = caught.value.errors
    assert [e.line for e in errors] == [3, 4, 5]
    assert "ASCII digits" in errors[0].message
    assert "full-width" in errors[1].message
    assert "ref 99" in errors[2].message
    assert "nothing was appended" in str(caught.value)
    assert dump(sqlite_ledger.engine) == before


def test_dry_run_checks_without_appending(sqlite_ledger: Ledger, tmp_path: Path) -> None:
    before = dump(sqlite_ledger.engine)
    path = _csv(tmp_path, "text\nhello\n")
    assert import_file(sqlite_ledger.log, path, "note", [sqlite_ledger.admin], dry_run=True) == []
    assert dump(sqlite_ledger.engine) == before


def test_unknown_columns_and_kinds_are_refused(sqlite_ledger: Ledger, tmp_path: Path) -> None:
    path = _csv(tmp_path, "text,colour\nhello,red\n")
    with pytest.raises(ImportRefused) as caught:
        import_file(sqlite_ledger.log, path, "note", [sqlite_ledger.admin])
    assert "colour" in caught.value.errors[0].message
    with pytest.raises(InvalidInput, match="unknown kind"):
        import_file(sqlite_ledger.log, path, "no.such.kind", [sqlite_ledger.admin])


def test_gb18030_csv_from_chinese_excel_is_read(tmp_path: Path) -> None:
    path = _csv(tmp_path, "text\n讷河市赤松茸\n", encoding="gb18030")
    assert read_rows(path) == [(2, {"text": "讷河市赤松茸"})]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("text,text\nx,y\n", "more than once"),
        (",text\nx,y\n", "header"),
        ("text\nx,extra\n", "more cells"),
        ("text\n\n\n", "no data rows"),
    ],
)
def test_malformed_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        read_rows(_csv(tmp_path, text))


def test_other_file_types_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "book.ods"
    path.write_bytes(b"x")
    with pytest.raises(InvalidInput, match=r"\.csv or \.xlsx"):
        read_rows(path)
    with pytest.raises(InvalidInput, match="cannot read"):
        read_rows(tmp_path / "missing.csv")
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"PK not really")
    with pytest.raises(InvalidInput, match="not a readable"):
        read_rows(broken)


def test_xlsx_cells_are_typed_strictly(sqlite_ledger: Ledger, tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "notes"
    sheet.append(["text", "ref"])
    sheet.append(["整数 integer", 0])
    sheet.append(["小数 fraction", 0.5])
    sheet.append([20190701, None])  # a number typed into a text column
    path = tmp_path / "book.xlsx"
    book.save(path)
    with pytest.raises(ImportRefused) as caught:
        import_file(sqlite_ledger.log, path, "note", [sqlite_ledger.admin], sheet="notes")
    assert [e.line for e in caught.value.errors] == [3]
    assert "whole fen" in caught.value.errors[0].message
    with pytest.raises(InvalidInput, match="no sheet"):
        read_rows(path, sheet="other")


def test_yuan_columns_convert_exactly_to_fen() -> None:
    assert yuan_to_fen("1500", "a") == 150000
    assert yuan_to_fen("1500.5", "a") == 150050
    assert yuan_to_fen("0.01", "a") == 1
    assert yuan_to_fen(1500.5, "a") == 150050
    assert yuan_to_fen(0.1, "a") == 10  # repr(0.1) == "0.1": no binary-float arithmetic
    assert yuan_to_fen(19468000, "a") == 1946800000
    for bad in ("1500.555", "1,500", "１５００", "", "abc", True):
        with pytest.raises(InvalidInput):
            yuan_to_fen(bad, "a")


def test_row_to_body_builds_nested_fields_and_yuan() -> None:
    schema = {
        "type": "object",
        "properties": {
            "amount_fen": {"type": "integer"},
            "origin": {
                "type": "object",
                "properties": {"province": {"type": "string"}, "county": {"type": "string"}},
            },
            "tags": {"type": "array"},
            "day": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"},
        },
    }
    body = row_to_body(
        {
            "amount_yuan": "2000",
            "origin.province": "黑龙江省",
            "origin.county": "讷河市",
            "tags": '["a", "b"]',
            "day": datetime(2019, 7, 1),
        },
        schema,
    )
    assert body == {
        "amount_fen": 200000,
        "origin": {"province": "黑龙江省", "county": "讷河市"},
        "tags": ["a", "b"],
        "day": "2019-07-01",
    }
    with pytest.raises(InvalidInput, match="not valid JSON"):
        row_to_body({"tags": "[1.5]"}, schema)  # floats are refused in JSON cells too
    with pytest.raises(InvalidInput, match="already set"):
        row_to_body({"amount_yuan": "1", "amount_fen": "100"}, schema)
    assert convert(date(2020, 1, 2), {"type": "string"}, "d") == "2020-01-02"
    assert convert("是", {"type": "boolean"}, "b") is True


def test_reports_write_csv_with_bom_and_xlsx(tmp_path: Path) -> None:
    rows = [
        {"id": "GN-2017", "sum": {"fen": 1946800000, "count": 9734}, "seqs": [3, 4]},
        {"id": "=HYPERLINK(1)", "sum": {"fen": 0, "count": 0}, "seqs": []},
    ]
    out = io.BytesIO()
    write_csv(rows, out)
    text = out.getvalue().decode("utf-8")
    assert text.startswith("\ufeffid,sum.fen,sum.count,seqs")
    assert "'=HYPERLINK(1)" in text  # no formula injection
    out = io.BytesIO()
    write_xlsx(rows, out, title="trail")
    sheet = load_workbook(io.BytesIO(out.getvalue())).active
    assert sheet is not None
    values = list(sheet.iter_rows(values_only=True))
    assert values[0] == ("id", "sum.fen", "sum.count", "seqs")
    assert values[1] == ("GN-2017", 1946800000, 9734, "[3, 4]")
