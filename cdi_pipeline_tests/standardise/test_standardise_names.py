"""Unit tests for standardise_names (Dutch tussenvoegsels, full-name splitting, keys)."""

from __future__ import annotations

import csv
from pathlib import Path

import polars as pl
import pytest

from cdi_pipeline.lib.standardise import standardise_names
from cdi_pipeline.lib.standardise.names import nickname_map

BERG_FORMS = [
    "van der Berg",
    "Berg, van der",
    "Berg van der",
    "v.d. Berg",
    "vd Berg",
    "Van Der Berg",
    "VAN DER BERG",
]


def _names(**columns: list[str | None]) -> pl.DataFrame:
    return standardise_names(pl.DataFrame(columns, schema=dict.fromkeys(columns, pl.Utf8)))


def _row(**columns: str | None) -> dict[str, str | None]:
    return _names(**{k: [v] for k, v in columns.items()}).row(0, named=True)


@pytest.mark.parametrize("last_name", BERG_FORMS)
def test_berg_forms_as_last_name(last_name: str) -> None:
    row = _row(first_name="Jan", last_name=last_name)
    assert row["last_name_key"] == "berg"
    assert row["name_prefix"] == "van der"
    assert row["last_name"] == "Berg"
    assert row["full_name"] == "Jan van der Berg"


@pytest.mark.parametrize("full_name", BERG_FORMS)
def test_berg_forms_as_full_name(full_name: str) -> None:
    row = _row(full_name=full_name)
    assert row["last_name_key"] == "berg"
    assert row["name_prefix"] == "van der"
    assert row["first_name"] is None


@pytest.mark.parametrize(
    ("full_name", "first_name", "initials", "prefix", "last_key"),
    [
        ("Jan van der Berg", "Jan", "j", "van der", "berg"),
        ("J. van der Berg", None, "j", "van der", "berg"),
        ("J.P. van der Berg", None, "jp", "van der", "berg"),
        ("Berg, J. van der", None, "j", "van der", "berg"),
        ("Berg, Jan van der", "Jan", "j", "van der", "berg"),
        ("VAN DER BERG, JAN", "Jan", "j", "van der", "berg"),
        ("jan jansen", "Jan", "j", None, "jansen"),
        ("Jansen", None, None, None, "jansen"),
        ("Anne-Marie Jansen-de Vries", "Anne-Marie", "am", None, "jansendevries"),
        ("Jan Peter de Jong", "Jan Peter", "jp", "de", "jong"),
        ("Hans d'Ancona", "Hans", "h", "d'", "ancona"),
        ("Kees in 't Veld", "Kees", "k", "in 't", "veld"),
        ("J. v.d. Meer", None, "j", "van der", "meer"),
        ("Minh Le", "Minh", "m", None, "le"),
    ],
)
def test_full_name_shapes(
    full_name: str, first_name: str | None, initials: str | None, prefix: str | None, last_key: str
) -> None:
    row = _row(full_name=full_name)
    assert row["first_name"] == first_name
    assert row["initials"] == initials
    assert row["name_prefix"] == prefix
    assert row["last_name_key"] == last_key


def test_full_name_display_is_rebuilt_from_parts() -> None:
    assert _row(full_name="VAN DER BERG, JAN")["full_name"] == "Jan van der Berg"
    assert _row(full_name="Berg, J.P. van der")["full_name"] == "J.P. van der Berg"
    assert _row(full_name="hans d'ancona")["full_name"] == "Hans d'Ancona"
    assert _row(first_name="Jan", last_name="Jansen", full_name="X Y")["full_name"] == (
        "Jan Jansen"
    )


def test_full_name_fills_missing_first_name_only() -> None:
    row = _row(last_name="van der Berg", full_name="J.P. van der Berg")
    assert row["initials"] == "jp"
    assert row["last_name"] == "Berg"
    row = _row(first_name="Piet", full_name="Jan Jansen")
    assert row["first_name"] == "Piet"
    assert row["last_name_key"] == "jansen"


@pytest.mark.parametrize(
    ("raw", "display", "key"),
    [
        ("  jan ", "Jan", "jan"),
        ("ANNE-MARIE", "Anne-Marie", "annemarie"),
        ("josé", "José", "jose"),
        ("JOSE\u0301", "José", "jose"),
        ("Jan   Peter", "Jan Peter", "janpeter"),
        ("McKenzie", "McKenzie", "mckenzie"),
        ("Søren", "Søren", "soren"),
        ("ijsbrand", "IJsbrand", "ijsbrand"),
    ],
)
def test_first_name_display_and_key(raw: str, display: str, key: str) -> None:
    row = _row(first_name=raw)
    assert row["first_name"] == display
    assert row["first_name_key"] == key


@pytest.mark.parametrize(
    ("raw", "display"),
    [("Jansen-de Vries", "Jansen-de Vries"), ("JANSEN-DE VRIES", "Jansen-de Vries")],
)
def test_hyphenated_surname_keeps_inner_prefix(raw: str, display: str) -> None:
    row = _row(last_name=raw)
    assert row["last_name"] == display
    assert row["name_prefix"] is None
    assert row["last_name_key"] == "jansendevries"


@pytest.mark.parametrize(
    ("raw", "prefix", "surname"),
    [
        ("van den Broek", "van den", "Broek"),
        ("van de Ven", "van de", "Ven"),
        ("ter Horst", "ter", "Horst"),
        ("ten Cate", "ten", "Cate"),
        ("'t Hart", "'t", "Hart"),
        ("van 't Hek", "van 't", "Hek"),
        ("den Uyl", "den", "Uyl"),
        ("de la Rue", "de la", "Rue"),
        ("V. Dijk", "van", "Dijk"),
        ("d'Ancona", "d'", "Ancona"),
    ],
)
def test_prefix_vocabulary(raw: str, prefix: str, surname: str) -> None:
    row = _row(last_name=raw)
    assert row["name_prefix"] == prefix
    assert row["last_name"] == surname


def test_nicknames_share_canonical() -> None:
    out = _names(first_name=["Hans", "Johannes", "Jan", "Kees", "Cornelis", "Zwaantje"])
    assert out["first_name_canonical"].to_list() == [
        "johannes",
        "johannes",
        "johannes",
        "cornelis",
        "cornelis",
        "zwaantje",
    ]


def test_nickname_table_is_clean() -> None:
    path = Path(__file__).parents[2] / "cdi_pipeline/lib/standardise/data/nicknames.csv"
    with path.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= 80
    variants = [row["variant"] for row in rows]
    assert len(variants) == len(set(variants))
    for row in rows:
        assert row["variant"].isascii() and row["variant"].isalpha()
        assert row["variant"] == row["variant"].lower()
        assert row["canonical"].isascii() and row["canonical"].isalpha()
    # No chains: mapping a canonical name again must not change it.
    mapping = nickname_map()
    assert all(canonical not in mapping for canonical in mapping.values())


@pytest.mark.parametrize(
    ("first_name", "initials", "full_name"),
    [
        ("J.", "j", "J. Jansen"),
        ("J.P.", "jp", "J.P. Jansen"),
        ("JP", "jp", "J.P. Jansen"),
        ("j. p.", "jp", "J.P. Jansen"),
    ],
)
def test_initials_only_first_name(first_name: str, initials: str, full_name: str) -> None:
    row = _row(first_name=first_name, last_name="Jansen")
    assert row["first_name"] is None
    assert row["first_name_key"] is None
    assert row["initials"] == initials
    assert row["full_name"] == full_name


def test_initials_from_given_names() -> None:
    assert _row(first_name="Jan Peter")["initials"] == "jp"
    assert _row(first_name="Anne-Marie")["initials"] == "am"
    assert _row(first_name="Émile")["initials"] == "e"
    assert _row(first_name="Jan")["first_name"] == "Jan"  # JAN-like names are not initials


@pytest.mark.parametrize(
    ("value", "issue"),
    [("12345", "name_no_letters"), ("'; --", "name_no_letters"), ("a" * 101, "name_too_long")],
)
def test_name_issues_null_the_part(value: str, issue: str) -> None:
    row = _row(first_name=value, last_name="Jansen")
    assert row["name_issue"] == issue
    assert row["first_name"] is None
    assert row["last_name"] == "Jansen"
    row = _row(first_name="Jan", last_name=value)
    assert row["name_issue"] == issue
    assert row["last_name"] is None and row["last_name_key"] is None


@pytest.mark.parametrize(
    "value",
    ["Robert'); DROP TABLE customers;--", "'; DROP TABLE klanten;--", "1' OR '1'='1"],
)
def test_sql_like_text_is_quarantined_not_matched(value: str) -> None:
    # Injected text would otherwise become the same "name" on many records and chain them.
    row = _row(first_name=value, last_name="Tables")
    assert row["name_issue"] == "name_looks_like_code"
    assert row["first_name"] is None and row["first_name_key"] is None
    assert row["last_name"] == "Tables"


def test_names_with_apostrophes_and_hyphens_are_not_code() -> None:
    row = _row(first_name="Anne-Marie", last_name="D'Hondt")
    assert row["name_issue"] is None
    assert row["last_name_key"] is not None


@pytest.mark.parametrize("value", ["dhr. Broek", "Mevr. Zoë Maas", "de heer Jansen"])
def test_salutations_are_not_given_names(value: str) -> None:
    row = _row(full_name=value)
    assert row["first_name_key"] not in {"dhr", "mevr", "de", "heer"}
    assert row["last_name_key"] in {"broek", "maas", "jansen"}


def test_hostile_input_does_not_crash() -> None:
    values = [
        "x" * 10_000,
        "Jan\x00\x07\tJansen",
        "\u200bJan\u200d",
        "-",
        ",",
        "',.",
        "van der",
        "v.d.",
        "J.P.",
        "🙂",
        "",
        "   ",
        None,
    ]
    out = _names(first_name=values, last_name=values, full_name=values)
    assert out.height == len(values)
    assert out["name_issue"][0] == "name_too_long"
    assert out["first_name"][1] == "Jan Jansen"


def test_frame_contract() -> None:
    df = pl.DataFrame({"id": [3, 1, 2], "first_name": ["bob", None, "b"], "extra": [1.0, 2.0, 3.0]})
    out = standardise_names(df)
    assert out.height == 3
    assert out["id"].to_list() == [3, 1, 2]
    assert out["extra"].to_list() == [1.0, 2.0, 3.0]
    assert out.columns[:3] == ["id", "first_name", "extra"]
    for column in [
        "last_name",
        "name_prefix",
        "full_name",
        "initials",
        "first_name_key",
        "first_name_canonical",
        "last_name_key",
        "name_issue",
    ]:
        assert out.schema[column] == pl.Utf8
    assert out["full_name"].to_list() == ["Bob", None, "B."]


def test_blank_values_are_null_without_issue() -> None:
    row = _row(first_name="   ", last_name="", full_name=None)
    assert all(value is None for value in row.values())


def test_rerun_on_own_output_keeps_everything() -> None:
    df = pl.DataFrame(
        {
            "first_name": ["J.P.", "hans", None, "12345", "Kees"],
            "last_name": ["Berg, van der", "D'ANCONA", "Jansen", "Bakker", None],
            "full_name": [None, None, "Berg, J. van der", None, None],
        }
    )
    once = standardise_names(df)
    refeed = once.with_columns(
        pl.concat_str(["name_prefix", "last_name"], separator=" ", ignore_nulls=True).alias(
            "last_name"
        )
    )
    twice = standardise_names(refeed)
    for column in ["first_name_key", "first_name_canonical", "last_name_key", "name_prefix"]:
        assert twice[column].to_list() == once[column].to_list(), column
    assert twice["name_issue"].to_list() == once["name_issue"].to_list()
    assert twice["full_name"].to_list() == once["full_name"].to_list()


@pytest.mark.parametrize("value", ["dhr. El Amrani", "Yassine El Amrani", "Al Haddad"])
def test_arabic_articles_belong_to_the_surname(value: str) -> None:
    # Read as a given name, "El" would make every El Amrani in the support desk one person.
    row = _row(full_name=value)
    assert row["first_name_key"] not in {"el", "al"}
    assert row["last_name_key"] in {"amrani", "haddad"}
    assert row["name_prefix"] in {"el", "al"}
