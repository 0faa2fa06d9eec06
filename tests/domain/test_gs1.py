"""GS1 identifiers: GTIN check digits, AI 10 lots, Digital Link paths."""

from __future__ import annotations

import contextlib
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.domain import gs1
from ledger.errors import InvalidInput

CHARSET_82 = string.ascii_letters + string.digits + "!\"%&'()*+,-./:;<=>?_"


def test_charset_82_has_82_characters() -> None:
    assert len(gs1.CHARSET_82) == 82
    assert set(CHARSET_82) == gs1.CHARSET_82


@pytest.mark.parametrize(
    ("given_", "gtin14"),
    [
        ("4006381333931", "04006381333931"),  # GTIN-13
        ("04006381333931", "04006381333931"),  # GTIN-14
        ("036000291452", "00036000291452"),  # GTIN-12 (UPC-A)
        ("96385074", "00000096385074"),  # GTIN-8
        ("10036000291459", "10036000291459"),  # GTIN-14 with indicator digit 1
    ],
)
def test_valid_gtins_normalise_to_14_digits(given_: str, gtin14: str) -> None:
    assert gs1.normalize_gtin(given_) == gtin14


def test_check_digit_by_hand() -> None:
    # 9638507 → from the right, weights 3,1,3,…: 7·3+0+5·3+8+3·3+6+9·3 = 86 → 4
    assert gs1.gtin_check_digit("9638507") == "4"
    assert gs1.gtin_check_digit("400638133393") == "1"


def test_wrong_check_digit_names_the_expected_digit() -> None:
    with pytest.raises(InvalidInput, match="check digit should be 1, found 2"):
        gs1.normalize_gtin("4006381333932")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("400638133393", "check digit should be"),  # 12 digits, not a valid GTIN-12
        ("40063813339", "8, 12, 13 or 14 digits, got 11"),
        ("400638133393100", "got 15 digits"),
        ("40063813339３1", "string of 8, 12, 13 or 14 digits"),  # full-width 3
        ("4006-381333931", "string of 8, 12, 13 or 14 digits"),
        ("00000000000000", "all zeros"),
        (4006381333931, "string"),
        ("", "string of 8, 12, 13 or 14 digits"),
    ],
)
def test_bad_gtins_refused(value: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        gs1.normalize_gtin(value)


def test_bodies_want_the_14_digit_form() -> None:
    assert gs1.validate_gtin14("04006381333931") == "04006381333931"
    with pytest.raises(
        InvalidInput, match="pad '4006381333931' with leading zeros to '04006381333931'"
    ):
        gs1.validate_gtin14("4006381333931")


def test_every_charset_82_character_is_a_lot() -> None:
    for start in range(0, len(CHARSET_82), 20):
        chunk = CHARSET_82[start : start + 20]
        assert gs1.validate_lot(chunk) == chunk


@pytest.mark.parametrize(
    ("lot", "message"),
    [
        ("", "1 to 20 characters, got 0"),
        ("A" * 21, "1 to 20 characters, got 21"),
        ("LOT 1", "character 4, ' ' .*spaces are not allowed"),
        ("批次1", "character 1, '批' \\(U\\+6279\\) is not in the GS1 AI 10 character set 82"),
        ("ＴＹ2019", "character 1, 'Ｔ' \\(U\\+FF34\\) is a full-width .*use the ASCII 'T'"),
        ("A#1", "character 2, '#'"),
        ("A~1", "character 2, '~'"),
        ("A\t1", "character 2"),
        (None, "must be a string"),
    ],
)
def test_bad_lots_refused_naming_the_character(lot: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        gs1.validate_lot(lot)


def test_lot_fold_catches_case_and_width() -> None:
    assert gs1.lot_fold("Ty-2019A") == gs1.lot_fold("tY-2019a") == gs1.lot_fold("Ｔｙ-２０１９Ａ")
    assert gs1.lot_fold("A1") != gs1.lot_fold("A2")


def test_digital_link_path_encodes_the_lot() -> None:
    assert gs1.digital_link_path("4006381333931", "ABC/1") == "/01/04006381333931/10/ABC%2F1"
    assert gs1.digital_link_path("04006381333931", "a-b.c_D") == "/01/04006381333931/10/a-b.c_D"
    assert gs1.digital_link_path("04006381333931", "%&?") == "/01/04006381333931/10/%25%26%3F"
    assert gs1.batch_path(None, "TY 1".replace(" ", "+")) == "/b/TY%2B1"
    assert gs1.batch_path("", "A/B") == "/b/A%2FB"
    with pytest.raises(InvalidInput, match="check digit"):
        gs1.digital_link_path("4006381333932", "A")
    with pytest.raises(InvalidInput, match="character 1"):
        gs1.digital_link_path("4006381333931", "批")


@pytest.mark.parametrize(
    "uri",
    [
        "/01/04006381333931/10/ABC%2F1",
        "/01/4006381333931/10/ABC%2f1",
        "https://id.example.cn/01/04006381333931/10/ABC%2F1?linkType=gs1:pip#top",
        "https://id.example.cn/suyuan/01/04006381333931/10/ABC%2F1",
    ],
)
def test_parse_digital_link(uri: str) -> None:
    assert gs1.parse_digital_link(uri) == ("04006381333931", "ABC/1")
    assert gs1.parse_batch_path(uri) == ("04006381333931", "ABC/1")


def test_parse_short_path() -> None:
    assert gs1.parse_batch_path("/b/TY%2B1") == (None, "TY+1")
    assert gs1.parse_batch_path("/b/A!1") == (None, "A!1")


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("/01/04006381333931", "expected a GS1 Digital Link path"),
        ("/01/04006381333931/21/ABC", "expected a GS1 Digital Link path"),
        ("/01/04006381333932/10/ABC", "check digit should be 1"),
        ("/01/04006381333931/10/AB%2", "'%' must be followed by two hex digits"),
        ("/01/04006381333931/10/AB%ZZ", "'%' must be followed by two hex digits"),
        ("/01/04006381333931/10/%E6%89%B9", "not in the GS1 AI 10 character set"),
        ("/01/04006381333931/10/%FF", "does not decode to UTF-8"),
        ("/01/04006381333931/10/", "1 to 20 characters"),
        ("/b/", "1 to 20 characters"),
        ("http://[::1/01/04006381333931/10/A", "not a URI"),
    ],
)
def test_parse_refuses(uri: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        gs1.parse_batch_path(uri)


#: Lots a label can carry: ".", ".." and a leading "/" are refused (a browser would not
#: bring them to the lot's page).
lots = st.text(alphabet=st.sampled_from(CHARSET_82), min_size=1, max_size=20).filter(
    lambda lot: lot not in (".", "..") and not lot.startswith("/")
)


@st.composite
def gtins(draw: st.DrawFn) -> str:
    length = draw(st.sampled_from(gs1.GTIN_LENGTHS))
    body = draw(st.text(alphabet="0123456789", min_size=length - 1, max_size=length - 1))
    body = body[:-1] + "1" if set(body) == {"0"} else body  # GS1 allocates no all-zero GTIN
    return body + gs1.gtin_check_digit(body)


@given(gtins(), lots)
def test_digital_link_round_trip(gtin: str, lot: str) -> None:
    path = gs1.digital_link_path(gtin, lot)
    assert gs1.parse_digital_link(path) == (gtin.rjust(14, "0"), lot)
    assert gs1.parse_digital_link("https://id.example.cn" + path + "?x=1") == (
        gtin.rjust(14, "0"),
        lot,
    )
    # only unreserved characters and escapes reach the path
    assert set(path) <= set(string.ascii_letters + string.digits + "-._/%")


@given(lots)
def test_short_path_round_trip(lot: str) -> None:
    assert gs1.parse_batch_path(gs1.batch_path(None, lot)) == (None, lot)


@given(st.text(max_size=60))
def test_parsers_raise_only_invalid_input(text: str) -> None:
    for parse in (gs1.parse_batch_path, gs1.validate_lot, gs1.normalize_gtin):
        with contextlib.suppress(InvalidInput):
            parse(text)


@given(st.text(alphabet="0123456789", min_size=13, max_size=13), st.integers(0, 9))
def test_exactly_one_check_digit_is_valid(body: str, digit: int) -> None:
    candidate = body + str(digit)
    if set(candidate) == {"0"}:
        return
    valid = str(digit) == gs1.gtin_check_digit(body)
    try:
        gs1.normalize_gtin(candidate)
        assert valid
    except InvalidInput:
        assert not valid
