"""The domain commands end to end: import with personal data, private records, queries, blobs."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import pytest
from openpyxl import load_workbook

from ledger.private import id_check_digit
from tests.helpers import check_ledger, dump
from tests.test_cli import Cli


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    made = Cli(tmp_path)
    assert made("init", "--org", "港南区扶贫办").exit_code == 0
    result = made("keys", "new", "village", "--role", "village_approver", "--org", "木格镇")
    assert result.exit_code == 0, result.output
    return made


def _id_number(first17: str) -> str:
    return first17 + id_check_digit(first17)


HEADER = [
    "code",
    "location.province",
    "location.city",
    "location.county",
    "location.township",
    "location.village",
    "members",
    "causes",
    "year",
    "personal.name",
    "personal.id_number",
    "personal.phone",
]


def _households_csv(path: Path, rows: list[list[str]]) -> Path:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADER)
    writer.writerows(rows)
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


def _row(code: str, name: str, first17: str, members: str = "4") -> list[str]:
    place = ["广西壮族自治区", "贵港市", "港南区", "木格镇", "云垌村"]
    return [code, *place, members, '["illness"]', "2016", name, _id_number(first17), "13800000000"]


def test_import_keeps_personal_data_off_the_ledger(cli: Cli, tmp_path: Path) -> None:
    path = _households_csv(
        tmp_path / "hh.csv",
        [
            _row("GX-GN-000001", "示例户主一", "45080219700101001"),
            _row("GX-GN-000002", "示例户主二", "45080219800202002"),
        ],
    )
    result = cli("import", str(path), "--kind", "household.identified", "--key", "village")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 2
    with cli.engine.connect() as conn:
        leaves = b"".join(bytes(r[0]) for r in conn.exec_driver_sql("SELECT leaf FROM entries"))
    assert "示例户主一".encode() not in leaves
    assert _id_number("45080219700101001").encode() not in leaves

    opened = cli("household", "open", "GX-GN-000001")
    assert opened.exit_code == 0
    assert json.loads(opened.stdout)["name"] == "示例户主一"
    proved = cli("household", "prove", "GX-GN-000001")
    assert proved.exit_code == 0 and proved.stdout.startswith("OK")
    assert cli("household", "reconcile").exit_code == 0

    assert cli("household", "erase", "GX-GN-000001").exit_code == 2  # needs --yes
    assert cli("household", "erase", "GX-GN-000001", "--yes").exit_code == 0
    gone = cli("household", "open", "GX-GN-000001")
    assert gone.exit_code == 2 and "erased" in gone.stderr
    assert cli("verify").exit_code == 0
    assert cli("household", "prove", "GX-GN-000002").exit_code == 0


def test_a_bad_import_names_every_row_and_writes_nothing(cli: Cli, tmp_path: Path) -> None:
    path = _households_csv(
        tmp_path / "hh.csv",
        [
            _row("GX-GN-000001", "示例户主一", "45080219700101001"),
            _row("GX-GN-000002", "示例户主二", "45080219800202002", members="４"),
            ["GX-GN-000003", *_row("X", "示例户主三", "45080219900303003")[1:9], "示例", "123", ""],
        ],
    )
    before = dump(cli.engine)
    result = cli(
        "import", str(path), "--kind", "household.identified", "--key", "village", "--json-errors"
    )
    assert result.exit_code == 2
    errors = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["line"] for e in errors] == [3, 4]
    assert "full-width" in errors[0]["error"]
    assert "id_number" in errors[1]["error"] and "123" not in errors[1]["error"]
    assert dump(cli.engine) == before


def test_queries_print_json_and_export_tables(cli: Cli, tmp_path: Path) -> None:
    path = _households_csv(
        tmp_path / "hh.csv", [_row("GX-GN-000001", "示例户主一", "45080219700101001")]
    )
    assert (
        cli("import", str(path), "--kind", "household.identified", "--key", "village").exit_code
        == 0
    )
    view = cli("query", "household", "--code", "GX-GN-000001")
    assert view.exit_code == 0, view.output
    assert json.loads(view.stdout)["status"] == "identified"
    counts = cli("query", "household-counts", "--level", "township", "--format", "csv")
    assert counts.exit_code == 0
    assert counts.stdout.startswith("\ufeff")
    assert "木格镇" in counts.stdout
    out = tmp_path / "hh.xlsx"
    assert cli("query", "households", "--format", "xlsx", "--out", str(out)).exit_code == 0
    sheet = load_workbook(out).active
    assert sheet is not None
    assert "GX-GN-000001" in [c.value for c in next(sheet.iter_cols())]

    assert cli("query", "households", "--format", "xlsx").exit_code == 2  # needs --out
    missing = cli("query", "fund-trail")
    assert missing.exit_code == 2 and "exactly one of source, project, household" in missing.stderr
    bad = cli("query", "households", "--limit", "１０")
    assert bad.exit_code == 2 and "ASCII digits" in bad.stderr
    unknown = cli("query", "household", "--code", "GX-GN-404404")
    assert unknown.exit_code == 2
    check_ledger(cli.engine)


def test_blobs_round_trip_through_the_store(cli: Cli, tmp_path: Path) -> None:
    report = tmp_path / "验收报告.pdf"
    report.write_bytes(b"%PDF-1.4 acceptance report")
    put = cli("blob", "put", str(report))
    assert put.exit_code == 0, put.output
    record = json.loads(put.stdout)
    digest = hashlib.sha256(report.read_bytes()).hexdigest()
    assert record == {
        "sha256": digest,
        "name": "验收报告.pdf",
        "media_type": "application/pdf",
        "size": report.stat().st_size,
    }
    out = tmp_path / "copy.pdf"
    assert cli("blob", "get", digest, "--out", str(out)).exit_code == 0
    assert out.read_bytes() == report.read_bytes()
    assert cli("blob", "get", "../../etc/passwd", "--out", str(out)).exit_code == 2


def test_demo_loads_once(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    assert cli("init").exit_code == 0
    first = cli("demo", "--households", "20")
    assert first.exit_code == 0, first.output
    assert "loaded the demo" in first.stdout and "fund.disbursed" in first.stdout
    assert "1 overspend" in first.stdout
    before = dump(cli.engine)
    again = cli("demo", "--households", "20")
    assert again.exit_code == 0 and "already in the log" in again.stdout
    assert dump(cli.engine) == before
    assert cli("demo", "--households", "0").exit_code == 2
    trail = cli("query", "anomalies", "--today", "2021-01-01")
    assert trail.exit_code == 0
    assert json.loads(trail.stdout)["overspend_attempts"]
