"""Unit tests for standardise_email and standardise_phone."""

from __future__ import annotations

import random

import phonenumbers
import polars as pl
import pytest
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from cdi_pipeline.lib.standardise import phone as phone_module
from cdi_pipeline.lib.standardise import standardise_email, standardise_phone


def _email(value: str | None) -> dict[str, str | None]:
    return standardise_email(pl.DataFrame({"email": [value]}, schema={"email": pl.Utf8})).row(
        0, named=True
    )


@pytest.mark.parametrize(
    ("raw", "fixed"),
    [
        ("jan@gmial.com", "jan@gmail.com"),
        ("jan@gamil.com", "jan@gmail.com"),
        ("jan@gmai.com", "jan@gmail.com"),
        ("jan@gmail.con", "jan@gmail.com"),
        ("jan@gmail.co", "jan@gmail.com"),
        ("jan@hotmial.com", "jan@hotmail.com"),
        ("jan@hotmail.con", "jan@hotmail.com"),
        ("jan@hotmal.com", "jan@hotmail.com"),
        ("jan@outlook.con", "jan@outlook.com"),
        ("jan@outlok.com", "jan@outlook.com"),
        ("jan@ziggo.nll", "jan@ziggo.nl"),
        ("jan@kpnmail.n", "jan@kpnmail.nl"),
    ],
)
def test_email_domain_typo_corrected_and_original_kept(raw: str, fixed: str) -> None:
    row = _email(f"  {raw.upper()} ")
    assert row["email"] == fixed
    assert row["email_original"] == raw.upper()
    assert row["email_domain"] == fixed.split("@")[1]
    assert row["email_issue"] is None


def test_valid_email_is_trimmed_and_lowercased_without_original() -> None:
    row = _email("  Jan.Jansen+news@Example.NL\t")
    assert row == {
        "email": "jan.jansen+news@example.nl",
        "email_original": None,
        "email_domain": "example.nl",
        "email_issue": None,
    }


@pytest.mark.parametrize(
    "raw",
    [
        "no-at-sign",
        "two@@example.nl",
        "a@b@example.nl",
        "@example.nl",
        "jan@",
        "jan@localhost",
        "jan jansen@example.nl",
        "jan@exa mple.nl",
        "jan..jansen@example.nl",
        ".jan@example.nl",
        "jan@-example.nl",
        "jan@example.123",
        "jan@example,nl",
        "x" * 300 + "@example.nl",
        "n.v.t.",
    ],
)
def test_invalid_email_flagged_and_nulled(raw: str) -> None:
    row = _email(raw)
    assert row["email_issue"] == "email_invalid"
    assert row["email"] is None
    assert row["email_domain"] is None
    assert row["email_original"] is None


def test_blank_email_is_null_without_issue() -> None:
    for value in [None, "", "   ", "\x00"]:
        assert all(v is None for v in _email(value).values())


def test_email_rerun_is_identical() -> None:
    df = pl.DataFrame({"email": ["A@GMIAL.COM", "b@x.nl", "bad", None], "id": [1, 2, 3, 4]})
    once = standardise_email(df)
    assert standardise_email(once).equals(once)


# --- phone -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "06-12345678",
        "+31 6 1234 5678",
        "0031612345678",
        "06 12 34 56 78",
        "0612345678",
        "+31 (0)6 12345678",
        "+31612345678",
        " 06.12.34.56.78 ",
    ],
)
def test_dutch_mobile_forms(raw: str) -> None:
    out = standardise_phone(pl.DataFrame({"phone": [raw]}))
    assert out.row(0, named=True) == {
        "phone": "+31612345678",
        "phone_type": "mobile",
        "phone_issue": None,
    }


def test_landline_and_extension() -> None:
    out = standardise_phone(pl.DataFrame({"phone": ["(020) 123 4567", "020-1234567 ext. 12"]}))
    assert out["phone"].to_list() == ["+31201234567", "+31201234567"]
    assert out["phone_type"].to_list() == ["fixed_line", "fixed_line"]


@pytest.mark.parametrize(
    "raw", ["12345", "0000000000", "n.v.t.", "06-1234", "0612345678 / 0201234567", "9" * 10_000]
)
def test_invalid_phone_flagged(raw: str) -> None:
    out = standardise_phone(pl.DataFrame({"phone": [raw]}))
    assert out.row(0, named=True) == {
        "phone": None,
        "phone_type": None,
        "phone_issue": "phone_invalid",
    }


def test_phone_region_column_and_default() -> None:
    df = pl.DataFrame(
        {
            "phone": ["0470 12 34 56", "0470 12 34 56", "020 7946 0958", "+1 212 555 0100"],
            "phone_region": ["BE", None, "gb", None],
        }
    )
    out = standardise_phone(df, default_region="NL")
    assert out["phone"].to_list() == [
        "+32470123456",
        None,
        "+442079460958",
        "+12125550100",
    ]
    assert out["phone_type"].to_list() == ["mobile", None, "fixed_line", "other"]
    assert out["phone_region"].to_list() == df["phone_region"].to_list()


def test_phone_blank_and_control_chars() -> None:
    out = standardise_phone(pl.DataFrame({"phone": [None, " ", "06\x0012345678\u200b"]}))
    assert out["phone"].to_list() == [None, None, "+31612345678"]
    assert out["phone_issue"].to_list() == [None, None, None]


def test_phone_rerun_is_identical() -> None:
    df = pl.DataFrame({"phone": ["06-12345678", "12345", None, "+44 20 7946 0958"]})
    once = standardise_phone(df)
    assert standardise_phone(once).equals(once)


def _generated_numbers(count: int, seed: int) -> pl.DataFrame:
    """Mutated example numbers of every region/type, written in several styles."""
    rng = random.Random(seed)
    types = [
        PhoneNumberType.FIXED_LINE,
        PhoneNumberType.MOBILE,
        PhoneNumberType.TOLL_FREE,
        PhoneNumberType.PREMIUM_RATE,
        PhoneNumberType.VOIP,
    ]
    examples = [
        (region, example)
        for region in sorted(phonenumbers.SUPPORTED_REGIONS)
        for kind in types
        if (example := phonenumbers.example_number_for_type(region, kind)) is not None
    ]
    rows = []
    for _ in range(count):
        region, example = rng.choice(examples)
        nsn = phonenumbers.national_significant_number(example)
        tail = rng.randint(0, min(3, len(nsn)))
        nsn = nsn[: len(nsn) - tail] + "".join(rng.choices("0123456789", k=tail))
        style = rng.random()
        if style < 0.3:
            text = f"+{example.country_code}{nsn}"
        elif style < 0.5:
            text = f"00{example.country_code}{nsn}"
        elif style < 0.6:
            text = f"{example.country_code}{nsn}"
        else:
            number = phonenumbers.PhoneNumber(
                country_code=example.country_code,
                national_number=int(nsn),
                italian_leading_zero=nsn.startswith("0") or None,
            )
            text = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
        rows.append((text, rng.choice([region, "NL", "US"])))
    return pl.DataFrame(rows, schema=["phone", "phone_region"], orient="row")


def test_vectorised_phone_path_agrees_with_phonenumbers() -> None:
    keys = phone_module._keys(_generated_numbers(3000, seed=7), default_region="NL")
    keys = keys.select("__ph_num", "__ph_region").drop_nulls().unique()
    assert keys.height > phone_module.VECTORISE_MIN_KEYS
    ours = phone_module._lookup(keys).sort("__ph_num", "__ph_region")
    reference = phone_module._lookup_slow(keys).sort("__ph_num", "__ph_region")
    assert ours.equals(reference)
    assert reference["__ph_e164"].is_not_null().sum() > 1500  # mostly valid numbers


def test_large_input_takes_vectorised_path_with_same_results() -> None:
    numbers = [f"06{n:08d}" for n in range(10_000_000, 10_000_000 + 3 * 400, 3)]
    styled = [n if i % 2 else f"+31 {n[1:]}" for i, n in enumerate(numbers)] + ["12345", None]
    out = standardise_phone(pl.DataFrame({"phone": styled}))
    expected = [phone_module._parse_one(n, "NL")[0] for n in numbers] + [None, None]
    assert out["phone"].to_list() == expected
    assert out["phone_issue"].to_list()[-2:] == ["phone_invalid", None]
