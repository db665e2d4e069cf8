"""Unit tests for parse_dates / parse_datetimes, gender, country and the text helpers."""

from __future__ import annotations

from datetime import date, datetime

import polars as pl
import pytest

from cdi_pipeline.lib.standardise import (
    fold_accents,
    parse_dates,
    parse_datetimes,
    squish,
    standardise_country,
    standardise_gender,
    strip_control_chars,
)
from cdi_pipeline.lib.standardise.dates import format_shape

TODAY = date(2024, 6, 1)


def _dates(values: list[str | None], fmt: str | None, **kwargs: object) -> pl.DataFrame:
    df = pl.DataFrame({"dob": values}, schema={"dob": pl.Utf8})
    return parse_dates(df, "dob", fmt, today=TODAY, **kwargs)


@pytest.mark.parametrize(
    ("raw", "expected", "issue"),
    [
        ("05-03-1980", date(1980, 3, 5), None),
        ("5-3-1980", date(1980, 3, 5), None),
        (" 05-03-1980 ", date(1980, 3, 5), None),
        ("31-02-1980", None, "date_impossible"),
        ("29-02-1981", None, "date_impossible"),
        ("29-02-1980", date(1980, 2, 29), None),
        ("1980/03/05", None, "date_unparsable"),
        ("1980-03-05", None, "date_unparsable"),
        ("05-03-80", None, "date_unparsable"),
        ("5 maart 1980", None, "date_unparsable"),
        ("01-01-1899", None, "date_out_of_range"),
        ("02-06-2024", None, "date_out_of_range"),
        ("01-06-2024", TODAY, None),
        (None, None, None),
        ("   ", None, None),
    ],
)
def test_parse_dates_with_format(raw: str | None, expected: date | None, issue: str | None) -> None:
    out = _dates([raw], "%d-%m-%Y")
    assert out.schema["dob"] == pl.Date
    assert out.row(0) == (expected, issue)


def test_never_swaps_day_and_month() -> None:
    out = _dates(["03-05-1980", "13-05-1980", "05-13-1980"], "%d-%m-%Y")
    assert out["dob"].to_list() == [date(1980, 5, 3), date(1980, 5, 13), None]
    assert out["dob_issue"].to_list() == [None, None, "date_impossible"]


@pytest.mark.parametrize(
    ("raw", "expected", "issue"),
    [
        ("1980-03-05", date(1980, 3, 5), None),
        ("1980-3-5", date(1980, 3, 5), None),
        ("1980-03-05T10:11:12", date(1980, 3, 5), None),
        ("1980-03-05 10:11", date(1980, 3, 5), None),
        ("1980-02-30", None, "date_impossible"),
        ("05/03/1980", None, "date_ambiguous"),
        ("05-03-1980", None, "date_ambiguous"),
        ("25.12.1980", None, "date_ambiguous"),
        ("yesterday", None, "date_unparsable"),
    ],
)
def test_parse_dates_without_format_only_accepts_iso(
    raw: str, expected: date | None, issue: str | None
) -> None:
    assert _dates([raw], None).row(0) == (expected, issue)


def test_parse_dates_with_time_format() -> None:
    out = _dates(["2020-01-02 10:30", "2020-01-02 25:30", "2020-01-02"], "%Y-%m-%d %H:%M")
    assert out["dob"].to_list() == [date(2020, 1, 2), None, None]
    assert out["dob_issue"].to_list() == [None, "date_impossible", "date_unparsable"]


def test_parse_datetimes_keeps_time() -> None:
    df = pl.DataFrame({"seen": ["2020-01-02 10:30", "2020-01-02 25:30", "1850-01-01 00:00"]})
    out = parse_datetimes(df, "seen", "%Y-%m-%d %H:%M", today=TODAY)
    assert out.schema["seen"] == pl.Datetime("us")
    assert out["seen"].to_list() == [datetime(2020, 1, 2, 10, 30), None, None]
    assert out["seen_issue"].to_list() == [None, "date_impossible", "date_out_of_range"]


def test_typed_columns_are_not_reparsed() -> None:
    df = pl.DataFrame({"dob": [date(1980, 3, 5), date(1850, 1, 1), None]})
    out = parse_dates(df, "dob", "%d-%m-%Y", today=TODAY)
    assert out["dob"].to_list() == [date(1980, 3, 5), None, None]
    assert out["dob_issue"].to_list() == [None, "date_out_of_range", None]
    stamps = pl.DataFrame({"dob": [datetime(1980, 3, 5, 23, 59)]})
    assert parse_dates(stamps, "dob", None, today=TODAY)["dob"].to_list() == [date(1980, 3, 5)]


def test_earliest_and_missing_column() -> None:
    out = _dates(["01-01-1950"], "%d-%m-%Y", earliest=date(1960, 1, 1))
    assert out.row(0) == (None, "date_out_of_range")
    missing = parse_dates(pl.DataFrame({"id": [1]}), "dob", "%Y-%m-%d", today=TODAY)
    assert missing.schema["dob"] == pl.Date
    assert missing.row(0) == (1, None, None)


def test_dates_rerun_is_identical() -> None:
    once = _dates(["05-03-1980", "31-02-1980", "x", None, "01-01-1800"], "%d-%m-%Y")
    assert parse_dates(once, "dob", "%d-%m-%Y", today=TODAY).equals(once)


def test_format_shape() -> None:
    assert format_shape("%d-%m-%Y") == r"^[0-9]{1,2}\-[0-9]{1,2}\-[0-9]{4}$"
    assert format_shape("%Y%m%d") == r"^[0-9]{4}[0-9]{1,2}[0-9]{1,2}$"


def test_hostile_dates_do_not_crash() -> None:
    out = _dates(["x" * 10_000, "05-03-1980\x00", "\u200b05-03-1980"], "%d-%m-%Y")
    assert out["dob"].to_list() == [None, date(1980, 3, 5), date(1980, 3, 5)]


# --- gender ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        *[(v, "F") for v in ["V", "vrouw", "Female", "f", "W", "woman", "Mevrouw", "mevr.", "MW"]],
        *[(v, "M") for v in ["M", "man", "male", "Dhr.", "heer", "de heer", " m "]],
        *[(v, "X") for v in ["O", "X", "other", "divers", "anders", "non-binary"]],
    ],
)
def test_gender_vocabulary(raw: str, expected: str) -> None:
    out = standardise_gender(pl.DataFrame({"gender": [raw]}))
    assert out.row(0) == (expected, None)


@pytest.mark.parametrize("raw", ["unknown", "onbekend", "?", "Unknown", "n.v.t.", None, "  "])
def test_gender_explicit_unknown_is_null_without_issue(raw: str | None) -> None:
    out = standardise_gender(pl.DataFrame({"gender": [raw]}, schema={"gender": pl.Utf8}))
    assert out.row(0) == (None, None)


@pytest.mark.parametrize("raw", ["banana", "1", "2", "mx", "x" * 10_000])
def test_gender_unrecognised_code(raw: str) -> None:
    out = standardise_gender(pl.DataFrame({"gender": [raw]}))
    assert out.row(0) == (None, "gender_unknown_code")


# --- country ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        *[
            (v, "NL")
            for v in ["Nederland", "Netherlands", "The Netherlands", "Holland", "NLD", "nl"]
        ],
        *[(v, "BE") for v in ["België", "Belgie", "Belgium", "BEL", "belgië"]],
        *[(v, "DE") for v in ["Duitsland", "Deutschland", "Germany", "DEU"]],
        *[
            (v, "GB")
            for v in ["UK", "United Kingdom", "Verenigd Koninkrijk", "GBR", "Great Britain"]
        ],
        *[(v, "US") for v in ["USA", "United States", "Verenigde Staten", "U.S.A."]],
        ("Frankrijk", "FR"),
        ("France", "FR"),
        ("Spanje", "ES"),
        ("Spain", "ES"),
        ("Italië", "IT"),
        ("Italy", "IT"),
        ("Australië", "AU"),
        ("Australia", "AU"),
        ("Polen", "PL"),
        ("Poland", "PL"),
        ("Turkije", "TR"),
        ("Turkey", "TR"),
        ("Marokko", "MA"),
        ("Morocco", "MA"),
        ("Suriname", "SR"),
        ("Luxembourg", "LU"),
        ("Luxemburg", "LU"),
        ("cw", "CW"),
        (" jp ", "JP"),
    ],
)
def test_country_vocabulary(raw: str, expected: str) -> None:
    out = standardise_country(pl.DataFrame({"country": [raw]}))
    assert out.row(0) == (expected, None)


@pytest.mark.parametrize("raw", ["ZZ", "Atlantis", "N", "x" * 10_000, "12"])
def test_country_unknown(raw: str) -> None:
    out = standardise_country(pl.DataFrame({"country": [raw]}))
    assert out.row(0) == (None, "country_unknown")


def test_codes_blank_and_rerun() -> None:
    df = pl.DataFrame({"gender": ["V", "bla", None], "country": ["Holland", "bla", " "]})
    once = standardise_country(standardise_gender(df))
    assert once["gender_issue"].to_list() == [None, "gender_unknown_code", None]
    assert once["country_issue"].to_list() == [None, "country_unknown", None]
    assert standardise_country(standardise_gender(once)).equals(once)
    assert standardise_gender(pl.DataFrame({"id": [1]})).row(0) == (1, None, None)


# --- text helpers ----------------------------------------------------------------------------


def test_fold_accents() -> None:
    values = ["José", "Ærø", "Straße", "Łódź", "Đorđe", "œuvre", "ﬁne", "Ïñţëŕñåţîöñàļ", None]
    out = pl.select(fold_accents(pl.lit(pl.Series(values)))).to_series().to_list()
    assert out == [
        "Jose",
        "AEro",
        "Strasse",
        "Lodz",
        "Dorde",
        "oeuvre",
        "fine",
        "International",
        None,
    ]


def test_squish_and_control_chars() -> None:
    series = pl.Series(["  a \t b\n", "   ", "", None, "x\x00y\u200bz", "a\u00a0b"])
    squished = pl.select(squish(pl.lit(series))).to_series().to_list()
    assert squished == ["a b", None, None, None, "x\x00y\u200bz", "a b"]
    stripped = pl.select(strip_control_chars(pl.lit(series))).to_series().to_list()
    assert stripped[4] == "xyz"
    assert stripped[0] == "  a   b "
