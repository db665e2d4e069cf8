"""Unit tests for standardise_address."""

from __future__ import annotations

import polars as pl
import pytest

from cdi_pipeline.lib.standardise import standardise_address


def _address(default_country: str = "NL", **columns: list[str | None]) -> pl.DataFrame:
    df = pl.DataFrame(columns, schema=dict.fromkeys(columns, pl.Utf8))
    return standardise_address(df, default_country=default_country)


def _row(**columns: str | None) -> dict[str, str | None]:
    return _address(**{k: [v] for k, v in columns.items()}).row(0, named=True)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1234ab", "1234 AB"),
        ("1234 AB", "1234 AB"),
        (" 1234  ab ", "1234 AB"),
        ("NL-1234AB", "1234 AB"),
    ],
)
def test_nl_postcode_normalised(raw: str, expected: str) -> None:
    row = _row(postcode=raw)
    assert row["postcode"] == expected
    assert row["postcode_issue"] is None
    assert row["country"] == "NL"


@pytest.mark.parametrize("raw", ["0123 AB", "1234", "12345", "1234 A", "1234 ABC", "ABCD 12", "?"])
def test_nl_postcode_invalid(raw: str) -> None:
    row = _row(postcode=raw, country="NL")
    assert row["postcode"] is None
    assert row["postcode_issue"] == "postcode_invalid"


@pytest.mark.parametrize(
    ("country", "raw", "expected"),
    [
        ("GB", "sw1a  1aa", "SW1A 1AA"),
        ("US", "10001", "10001"),
        ("AU", "2000", "2000"),
        ("BE", "1000", "1000"),
        ("DE", " 10115 ", "10115"),
        ("GB", "0123 AB", "0123 AB"),
    ],
)
def test_foreign_postcodes_only_case_and_spaces(country: str, raw: str, expected: str) -> None:
    row = _row(postcode=raw, country=country)
    assert row["postcode"] == expected
    assert row["postcode_issue"] is None
    assert row["country"] == country


def test_country_default_and_names() -> None:
    out = _address(country=[None, "be", "Duitsland", "Atlantis"], default_country="NL")
    # Unrecognised values are kept (not defaulted); standardise_country flags them.
    assert out["country"].to_list() == ["NL", "BE", "DE", "ATLANTIS"]
    assert _address(country=[None], default_country="be")["country"].to_list() == ["BE"]


@pytest.mark.parametrize(
    ("street", "number", "addition"),
    [
        ("Kerkstraat 12 A", "12", "A"),
        ("Kerkstraat 12-2", "12", "2"),
        ("Kerkstraat 12a", "12", "A"),
        ("Kerkstraat 12 bis", "12", "BIS"),
        ("Kerkstraat 12-hs", "12", "HS"),
        ("Kerkstraat 12 h.s.", "12", "HS"),
        ("Kerkstraat 12", "12", None),
        ("Kerkstraat, 12", "12", None),
    ],
)
def test_house_number_split_off_street(street: str, number: str, addition: str | None) -> None:
    row = _row(street=street)
    assert row["street"] == "Kerkstraat"
    assert row["house_number"] == number
    assert row["house_number_addition"] == addition


def test_street_number_not_split_when_house_number_given() -> None:
    row = _row(street="Plein 1813", house_number="4")
    assert row["street"] == "Plein 1813"
    assert row["house_number"] == "4"
    row = _row(street="Kerkstraat 12", house_number="?")
    assert (row["street"], row["house_number"]) == ("Kerkstraat", "12")


def test_numbers_inside_street_names_survive() -> None:
    assert _row(street="Plein 1940-1945 3")["street"] == "Plein 1940-1945"
    assert _row(street="1e Helmersstraat 5")["street"] == "1e Helmersstraat"
    assert _row(street="2e jan steenstraat 7")["street"] == "2e Jan Steenstraat"
    row = _row(street="Kerkstraat 12 Amsterdam")
    assert row["street"] == "Kerkstraat 12 Amsterdam"
    assert row["house_number"] is None


def test_number_first_countries() -> None:
    row = _row(street="221B Baker Street", country="GB")
    assert (row["street"], row["house_number"], row["house_number_addition"]) == (
        "Baker Street",
        "221",
        "B",
    )
    # Dutch ordinal street names are not house numbers.
    assert _row(street="2e Hugo de Grootstraat", country="NL")["house_number"] is None


@pytest.mark.parametrize(
    ("raw", "number", "addition"),
    [
        ("12a", "12", "A"),
        ("12-2", "12", "2"),
        ("12 bis", "12", "BIS"),
        ("12-hs", "12", "HS"),
        ("12 A", "12", "A"),
        ("012", "12", None),
        ("12.0", "12", None),
        (" 7 ", "7", None),
        ("abc", None, None),
    ],
)
def test_house_number_field_split(raw: str, number: str | None, addition: str | None) -> None:
    row = _row(house_number=raw)
    assert row["house_number"] == number
    assert row["house_number_addition"] == addition


def test_separate_addition_field_is_normalised() -> None:
    row = _row(house_number="12", house_number_addition=" h.s. ")
    assert (row["house_number"], row["house_number_addition"]) == ("12", "HS")


@pytest.mark.parametrize(
    ("raw", "display", "key"),
    [
        ("KERKSTRAAT", "Kerkstraat", "kerkstraat"),
        ("kerkstr.", "Kerkstr.", "kerkstraat"),
        ("Kerk  straat", "Kerk straat", "kerkstraat"),
        ("laan van meerdervoort", "Laan van Meerdervoort", "laanvanmeerdervoort"),
        ("'s-gravendijkwal", "'s-Gravendijkwal", "sgravendijkwal"),
        ("Burg. de Withstraat", "Burg. de Withstraat", "burgemeesterdewithstraat"),
        ("Beukenln", "Beukenln", "beukenlaan"),
    ],
)
def test_street_display_and_key(raw: str, display: str, key: str) -> None:
    row = _row(street=raw)
    assert row["street"] == display
    assert row["street_key"] == key


def test_street_key_abbreviations_depend_on_country() -> None:
    assert _row(street="Main St", house_number="1", country="US")["street_key"] == "mainstreet"
    assert _row(street="Hauptstr.", house_number="1", country="DE")["street_key"] == (
        "hauptstrasse"
    )
    assert _row(street="Hauptstraße", house_number="1", country="DE")["street_key"] == (
        "hauptstrasse"
    )


@pytest.mark.parametrize(
    ("raw", "display", "key"),
    [
        ("AMSTERDAM", "Amsterdam", "amsterdam"),
        ("'s-hertogenbosch", "'s-Hertogenbosch", "shertogenbosch"),
        ("'s-Hertogenbosch", "'s-Hertogenbosch", "shertogenbosch"),
        ("DEN HAAG", "Den Haag", "denhaag"),
        ("ijmuiden", "IJmuiden", "ijmuiden"),
        ("  Sint-Oedenrode ", "Sint-Oedenrode", "sintoedenrode"),
    ],
)
def test_city_display_and_key(raw: str, display: str, key: str) -> None:
    row = _row(city=raw)
    assert row["city"] == display
    assert row["city_key"] == key


def test_frame_contract_and_missing_columns() -> None:
    df = pl.DataFrame({"id": [2, 1], "street": ["Dorpsweg 1", None]})
    out = standardise_address(df)
    assert out["id"].to_list() == [2, 1]
    assert out.columns[:2] == ["id", "street"]
    assert set(out.columns) >= {
        "street_key",
        "house_number",
        "house_number_addition",
        "postcode",
        "city",
        "city_key",
        "country",
        "postcode_issue",
    }
    assert out["country"].to_list() == ["NL", "NL"]
    assert out["postcode_issue"].to_list() == [None, None]


def test_hostile_input_does_not_crash() -> None:
    junk = ["x" * 10_000, "Kerk\x00straat\t12", "🙂", "'; DROP TABLE x;--", "", None]
    out = _address(street=junk, house_number=junk, postcode=junk, city=junk, country=junk)
    assert out.height == len(junk)
    # The junk house_number has no number, so the one at the end of the street is used.
    assert (out["street"][1], out["house_number"][1]) == ("Kerkstraat", "12")


def test_address_rerun_is_identical() -> None:
    df = pl.DataFrame(
        {
            "street": ["Kerkstraat 12 A", "KERKSTR.", "221B Baker Street", None],
            "house_number": [None, "12-hs", None, "3"],
            "postcode": ["1234ab", "0123 AB", "sw1a 1aa", None],
            "city": ["AMSTERDAM", "'s-hertogenbosch", "LONDON", None],
            "country": [None, "NL", "GB", "Belgie"],
        }
    )
    once = standardise_address(df)
    assert standardise_address(once).equals(once)
