"""Unicode at every entry point that writes: NFC before canonicalisation, ASCII-only
numbers, and no look-alike or invisible characters in identifiers.

Decisions (issue 7):

* Text is normalised to NFC before it is canonicalised wherever the server (or the CLI)
  builds the statement — CLI ``append``, file import, portal forms — so one visible text has
  one byte form in the leaf.  A statement the *client* signed cannot be re-normalised (the
  signature covers its bytes): the API refuses a body that is not NFC, saying so.
* Numbers are typed with ASCII digits only (import, forms; the API takes JSON integers):
  full-width, other-script and superscript digits, full-width ``，`` and ``．`` are refused
  naming the character and its code point.  The portal form alone also takes a leading
  ``¥``/``￥`` and ASCII thousands separators in their places (``2,000.50``), explicitly.
* Identifiers (lots, GTINs, household codes, ids) are ASCII by pattern: a Cyrillic ``А``, a
  Greek ``Α``, a full-width ``Ａ``, a zero-width joiner, a bidi override or a combining mark
  is refused naming the character and its code point.  (Two lots of one GTIN that fold
  alike, ``lot_fold``, are refused as confusable: tests/domain/test_batches.py.)
* Free text and names (notes, product and organisation names) may hold any NFC text,
  bidi marks included: Uyghur and other right-to-left scripts need them.  They are stored
  verbatim; pages must render them isolated (``<bdi>`` / ``unicode-bidi: isolate``).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from markupsafe import Markup
from sqlalchemy import Engine
from wtforms.validators import ValidationError

from ledger.domain import gs1
from ledger.entry import decode_entry
from ledger.errors import Error, InvalidInput
from ledger.importer import ImportRefused, import_file, yuan_to_fen
from ledger.tokens import create_token
from tests.helpers import Ledger, check_ledger, dump, make_ledger
from tests.test_cli import Cli
from tests.web.support import ModuleSite, make_site, note_json, statement

NFC_TEXT = "扶贫产品 café Ω"  # NFC; its NFD and compatibility spellings follow
NFD_TEXT = unicodedata.normalize("NFD", NFC_TEXT)
COMPAT = "\uf900 \u212b"  # CJK COMPATIBILITY IDEOGRAPH-F900, ANGSTROM SIGN: NFC folds both
COMPAT_NFC = unicodedata.normalize("NFC", COMPAT)
AMOUNTS = ["２０００", "٢٠٠٠", "2²", "2，000", "２０００．５０", "۲۰۰۰"]
CONFUSABLE_LOTS = {
    "АB-1": "U+0410",  # Cyrillic A
    "LОT-1": "U+041E",  # Cyrillic O
    "ЕX-1": "U+0415",  # Cyrillic E
    "ΑB-1": "U+0391",  # Greek Alpha
    "ＡB-1": "U+FF21",  # full-width A
    "A\u200dB-1": "U+200D",  # zero-width joiner
    "A\u202eB-1": "U+202E",  # right-to-left override
    "AB-1\u0301": "U+0301",  # combining acute accent (NFC cannot compose it with '1')
}

assert NFD_TEXT != NFC_TEXT and COMPAT_NFC != COMPAT


def _texts(engine: Engine) -> list[str]:
    """The ``text`` of every note in the log, decoded from the leaves."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT leaf FROM entries WHERE kind = 'note' ORDER BY seq")
        return [decode_entry(bytes(r[0])).body["text"] for r in rows]


# --- (a) NFC before canonicalisation -----------------------------------------------------


def test_cli_append_normalises_to_nfc(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    assert cli("init", "--org", "县扶贫办").exit_code == 0
    lines = [{"kind": "note", "body": {"text": t}} for t in (NFD_TEXT, COMPAT)]
    result = cli("append", "--key", "admin", input="\n".join(json.dumps(x) for x in lines))
    assert result.exit_code == 0, result.output
    assert _texts(cli.engine) == [NFC_TEXT, COMPAT_NFC]
    # Same visible text, same bytes: the NFC and NFD spellings make one statement, which
    # the replay protection then sees twice.
    both = [{"kind": "note", "body": {"text": t}} for t in (NFC_TEXT + "!", NFD_TEXT + "!")]
    again = cli("append", "--key", "admin", input="\n".join(json.dumps(x) for x in both))
    assert again.exit_code == 2 and "repeats statement 1" in again.output
    check_ledger(cli.engine)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return make_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")


def test_import_normalises_to_nfc(ledger: Ledger, tmp_path: Path) -> None:
    path = tmp_path / "notes.csv"
    path.write_text(f"text\n{NFD_TEXT}\n{COMPAT}\n", encoding="utf-8")
    import_file(ledger.log, path, "note", [ledger.admin])
    gb = tmp_path / "gb.csv"
    gb.write_bytes(f"text\n{NFD_TEXT}?\n".encode("gb18030"))  # Excel's CSV on Chinese Windows
    import_file(ledger.log, gb, "note", [ledger.admin])
    assert _texts(ledger.engine) == [NFC_TEXT, COMPAT_NFC, NFC_TEXT + "?"]
    check_ledger(ledger.engine)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleSite]:
    with make_site(tmp_path_factory.mktemp("unicode")) as made:
        yield made


def test_api_refuses_a_signed_body_that_is_not_nfc(site: ModuleSite) -> None:
    token = create_token(site.instance.engine, "unicode")
    headers = {"Authorization": f"Bearer {token}"}
    signed = note_json(site.log, NFC_TEXT, site.admin)
    signed["statement"]["body"]["text"] = NFD_TEXT  # what a client that skipped NFC signs
    before = dump(site.instance.engine)
    response = site.client.post("/api/v1/entries", json=signed, headers=headers)
    assert response.status_code == 400, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert "NFC" in error["message"] and isinstance(error["code"], str)
    assert dump(site.instance.engine) == before
    fine = site.client.post(
        "/api/v1/entries", json=note_json(site.log, NFC_TEXT, site.admin), headers=headers
    )
    assert fine.status_code == 201, fine.get_data(as_text=True)
    assert _texts(site.instance.engine)[-1] == NFC_TEXT


def test_forms_normalise_organisation_names() -> None:
    from web.forms_admin import clean_org

    assert clean_org(f"  {NFD_TEXT} ") == NFC_TEXT
    assert clean_org(COMPAT) == COMPAT_NFC


# --- (b) amounts: ASCII digits only, everywhere ---------------------------------------------


@pytest.mark.parametrize("text", AMOUNTS)
def test_import_refuses_non_ascii_amounts_naming_the_character(text: str) -> None:
    odd = next(c for c in text if not c.isascii())
    with pytest.raises(InvalidInput) as caught:
        yuan_to_fen(text, "amount_yuan")
    assert f"U+{ord(odd):04X}" in str(caught.value) and "ASCII digits" in str(caught.value)


def test_import_file_refuses_full_width_amounts(ledger: Ledger, tmp_path: Path) -> None:
    path = tmp_path / "sources.csv"
    path.write_text('id,amount_yuan\nS-1,２０００\nS-2,"2,000"\n', encoding="utf-8")
    before = dump(ledger.engine)
    with pytest.raises(ImportRefused) as caught:
        import_file(ledger.log, path, "fund.source", [ledger.admin])
    lines = {e.line: e.message for e in caught.value.errors}
    assert "U+FF12" in lines[2] and "full-width digit" in lines[2]
    assert "thousands separators" in lines[3]
    assert dump(ledger.engine) == before


@pytest.mark.parametrize("text", AMOUNTS)
def test_form_refuses_non_ascii_amounts_naming_the_character(site: ModuleSite, text: str) -> None:
    from web.forms_funds import parse_yuan

    odd = next(c for c in text if not c.isascii())
    with site.app.test_request_context(), pytest.raises(InvalidInput) as caught:
        parse_yuan(text)
    assert f"U+{ord(odd):04X}" in str(caught.value)


def test_form_amount_normalisations_are_explicit(site: ModuleSite) -> None:
    from web.forms_funds import parse_yuan

    with site.app.test_request_context():
        assert parse_yuan("2,000.50") == 200_050
        assert parse_yuan("￥1,234,567") == 123_456_700
        assert parse_yuan("2000.5") == 200_050
        for bad in ("2,0,0", "20,00", "1,2345"):
            with pytest.raises(InvalidInput):
                parse_yuan(bad)


def test_api_refuses_amounts_as_text(site: ModuleSite) -> None:
    from ledger.domain.common import amount_fen

    for text in [*AMOUNTS, "2000"]:
        with pytest.raises(Error, match="integer number of fen"):
            amount_fen({"amount_fen": text}, "amount_fen", "fund.source")


# --- (c) look-alike and invisible characters in identifiers -------------------------------


@pytest.mark.parametrize(("lot", "code"), sorted(CONFUSABLE_LOTS.items()))
def test_lots_with_confusable_or_invisible_characters_are_refused(lot: str, code: str) -> None:
    for value in (lot, unicodedata.normalize("NFC", lot)):  # as typed, and as the CLI sends it
        with pytest.raises(InvalidInput, match=re.escape(code)):
            gs1.validate_lot(value)


@pytest.mark.parametrize(("lot", "code"), sorted(CONFUSABLE_LOTS.items()))
def test_portal_lot_field_names_the_code_point(site: ModuleSite, lot: str, code: str) -> None:
    from web.forms_batch import parse_lot

    with site.app.test_request_context(), pytest.raises(ValidationError) as caught:
        parse_lot(lot)
    message = str(caught.value)
    odd = next(c for c in lot if not c.isascii())
    assert code.removeprefix("U+") in message or (odd in message and "A" in message), message


def test_lots_whose_label_cannot_reach_their_page_are_refused(site: ModuleSite) -> None:
    from web.forms_batch import parse_lot

    for lot in (".", "..", "/x", "/"):
        with pytest.raises(InvalidInput, match="scan URL"):
            gs1.validate_lot(lot)
        english = site.app.test_request_context(headers={"Accept-Language": "en"})
        with english, pytest.raises(ValidationError, match="scan URL"):
            parse_lot(lot)
        with site.app.test_request_context(), pytest.raises(ValidationError, match="扫码网址"):
            parse_lot(lot)  # Chinese first


@pytest.mark.parametrize("code", ["GX-ОО01", "ＧX-0001", "GX-\u200b0001", "GX-\u202e0001"])
def test_household_codes_name_the_non_ascii_character(code: str) -> None:
    from ledger.domain.common import household_code

    odd = next(c for c in code if not c.isascii())
    with pytest.raises(Error, match=f"U\\+{ord(odd):04X}"):
        household_code(code, "household.status")


def test_free_text_keeps_bidi_marks_verbatim(ledger: Ledger) -> None:
    text = "ئۇيغۇرچە \u200f تېكىست abc\u202edef\u202c"
    entry = ledger.note(text)
    assert decode_entry(entry.leaf).body["text"] == unicodedata.normalize("NFC", text)
    check_ledger(ledger.engine)


def test_pages_show_bidi_text_isolated(site: ModuleSite) -> None:
    """An unterminated RIGHT-TO-LEFT OVERRIDE in free text must not reverse the line after
    it: every value the site's templates print is wrapped in FIRST STRONG ISOLATE … POP
    DIRECTIONAL ISOLATE when it holds bidi controls, which ends them (UAX #9); the leaf
    keeps the text exactly as signed, and text without controls is printed unchanged."""
    text = "付款 2000 元\u202e给 GX-GN-000123"
    entry = site.log.append([statement(site.log, "note", {"text": text}, site.admin)])[0]
    assert decode_entry(entry.leaf).body["text"] == text
    template = site.app.jinja_env.from_string("<p>{{ text }} · {{ name }} · {{ markup }}</p>")
    with site.app.test_request_context("/"):
        html = template.render(text=text, name="合作社", markup=Markup("<b>\u202eA</b>"))
    assert html == (f"<p>\u2068{text}\u2069 · 合作社 · \u2068<b>\u202eA</b>\u2069</p>")
    assert "<script>" not in site.app.jinja_env.from_string("{{ x }}").render(x="\u202e<script>")
    check_ledger(site.log.engine)
