"""Hypothesis properties: every standardiser is idempotent and independent of row order."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from datetime import date

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from cdi_pipeline.lib.standardise import (
    parse_dates,
    standardise_address,
    standardise_country,
    standardise_email,
    standardise_gender,
    standardise_names,
    standardise_phone,
)

# Small by default to keep the suite fast; raise CDI_HYPOTHESIS_EXAMPLES for a deeper search.
SETTINGS = settings(
    max_examples=int(os.environ.get("CDI_HYPOTHESIS_EXAMPLES", "50")),
    deadline=None,
    database=None,
)

_NAME_ALPHABET = list("aeijlnorsvdtkAEIJVDBéëïöüøßł -'.,0\t") + ["\x00", "\u200b", "’", "–"]
_NAMES = [
    "Jan",
    "J.P.",
    "JP",
    "hans",
    "Anne-Marie",
    "van der Berg",
    "Berg, van der",
    "Berg van der",
    "v.d. Berg",
    "VAN DER BERG",
    "Jansen-de Vries",
    "d'Ancona",
    "in 't Veld",
    "Berg, J. van der",
    "VAN DER BERG, JAN",
    "J. van der Berg",
    "Robert'); DROP TABLE customers;--",
    "12345",
    "de",
    "Van",
    "",
    "   ",
]


def _mixed(examples: list[str], alphabet: list[str], max_size: int = 25) -> st.SearchStrategy:
    """Realistic values, noisy values from a focused alphabet and arbitrary Unicode."""
    return st.one_of(
        st.none(),
        st.sampled_from(examples),
        st.text(alphabet=alphabet, max_size=max_size),
        st.text(max_size=max_size),
    )


def _frame(**columns: st.SearchStrategy) -> st.SearchStrategy:
    return st.integers(1, 12).flatmap(
        lambda n: st.fixed_dictionaries(
            {name: st.lists(strategy, min_size=n, max_size=n) for name, strategy in columns.items()}
        ).map(lambda data: pl.DataFrame(data, schema=dict.fromkeys(data, pl.Utf8)))
    )


def _assert_same(actual: pl.DataFrame, expected: pl.DataFrame, source: pl.DataFrame) -> None:
    """Frame equality that reports only the differing rows (with their input) on failure."""
    if actual.equals(expected):
        return
    differs = pl.Series([False] * expected.height)
    for column in expected.columns:
        differs |= ~actual[column].eq_missing(expected[column])
    rows = [
        (source.row(i, named=True), expected.row(i, named=True), actual.row(i, named=True))
        for i in range(expected.height)
        if differs[i]
    ]
    raise AssertionError(f"{len(rows)} rows differ, first (input, expected, actual): {rows[0]}")


def _assert_order_independent(
    df: pl.DataFrame, fn: Callable[[pl.DataFrame], pl.DataFrame], seed: int
) -> None:
    indexed = df.with_row_index("__row")
    expected = fn(indexed)
    order = list(range(df.height))
    random.Random(seed).shuffle(order)
    shuffled = fn(indexed[order]).sort("__row")
    _assert_same(shuffled, expected, indexed)


def _assert_idempotent(df: pl.DataFrame, fn: Callable[[pl.DataFrame], pl.DataFrame]) -> None:
    once = fn(df)
    assert once.height == df.height
    _assert_same(fn(once), once, df)


NAME_FRAMES = _frame(
    first_name=_mixed(_NAMES, _NAME_ALPHABET),
    last_name=_mixed(_NAMES, _NAME_ALPHABET),
    full_name=_mixed(_NAMES, _NAME_ALPHABET, max_size=40),
)
NAME_KEYS = ["first_name_key", "first_name_canonical", "last_name_key", "name_prefix"]


def _refeed(out: pl.DataFrame, *, with_full: bool) -> pl.DataFrame:
    columns = [
        pl.col("first_name"),
        pl.concat_str(["name_prefix", "last_name"], separator=" ", ignore_nulls=True).alias(
            "last_name"
        ),
        pl.col("name_issue"),
    ]
    if with_full:
        columns.append(pl.col("full_name"))
    return out.select(columns)


@SETTINGS
@given(df=NAME_FRAMES)
def test_names_idempotent(df: pl.DataFrame) -> None:
    once = standardise_names(df)
    # The documented contract: first_name plus "prefix surname" as last_name gives the keys.
    twice = standardise_names(_refeed(once, with_full=False))
    columns = [*NAME_KEYS, "name_issue"]
    _assert_same(twice.select(columns), once.select(columns), df)
    # Feeding full_name back as well reproduces every output column.
    twice = standardise_names(_refeed(once, with_full=True))
    columns = [*NAME_KEYS, "first_name", "last_name", "full_name", "initials", "name_issue"]
    _assert_same(twice.select(columns), once.select(columns), df)


@SETTINGS
@given(df=NAME_FRAMES, seed=st.integers(0, 1000))
def test_names_order_independent(df: pl.DataFrame, seed: int) -> None:
    _assert_order_independent(df, standardise_names, seed)


EMAIL_FRAMES = _frame(
    email=_mixed(
        ["Jan@GMIAL.com", " a.b@ziggo.nll ", "x@y.nl", "bad@", "a@@b.nl", "a@b.c"],
        list("abcjn@.-_+ gmailcomhotn"),
    )
)


@SETTINGS
@given(df=EMAIL_FRAMES, seed=st.integers(0, 1000))
def test_email_properties(df: pl.DataFrame, seed: int) -> None:
    _assert_idempotent(df, standardise_email)
    _assert_order_independent(df, standardise_email, seed)


PHONE_FRAMES = _frame(
    phone=_mixed(
        ["06-12345678", "+31 6 1234 5678", "0031612345678", "(020) 123 4567", "12345", "n.v.t."],
        list("0123456789+ -()x"),
        max_size=18,
    ),
    phone_region=st.one_of(st.none(), st.sampled_from(["NL", "BE", "GB", "US", "DE", "xx", ""])),
)


@SETTINGS
@given(df=PHONE_FRAMES, seed=st.integers(0, 1000))
def test_phone_properties(df: pl.DataFrame, seed: int) -> None:
    _assert_idempotent(df, standardise_phone)
    _assert_order_independent(df, standardise_phone, seed)


ADDRESS_FRAMES = _frame(
    street=_mixed(
        ["Kerkstraat 12 A", "KERKSTR.", "221B Baker Street", "Plein 1940-1945 3", "1e Laan 4"],
        list("Kerkstraa 12-/.,bishABé'"),
    ),
    house_number=_mixed(["12", "12a", "12-2", "12 bis", "012", "12.0"], list("0123ab -/.")),
    postcode=_mixed(["1234ab", "0123 AB", "sw1a 1aa", "10001"], list("0123ABab -")),
    city=_mixed(["AMSTERDAM", "'s-hertogenbosch", "den haag"], list("amsterdAM'-s ")),
    country=st.one_of(st.none(), st.sampled_from(["NL", "GB", "US", "Belgie", "??", "de"])),
)


@SETTINGS
@given(df=ADDRESS_FRAMES, seed=st.integers(0, 1000))
def test_address_properties(df: pl.DataFrame, seed: int) -> None:
    _assert_idempotent(df, standardise_address)
    _assert_order_independent(df, standardise_address, seed)


CODE_FRAMES = _frame(
    gender=_mixed(["V", "man", "Dhr.", "onbekend", "X", "?"], list("mvfxo.? ")),
    country=_mixed(["Nederland", "België", "UK", "NLD", "nl", "zz"], list("nlbeduk .")),
)


@SETTINGS
@given(df=CODE_FRAMES, seed=st.integers(0, 1000))
def test_codes_properties(df: pl.DataFrame, seed: int) -> None:
    def both(frame: pl.DataFrame) -> pl.DataFrame:
        return standardise_country(standardise_gender(frame))

    _assert_idempotent(df, both)
    _assert_order_independent(df, both, seed)


DATE_FRAMES = _frame(
    dob=_mixed(
        ["05-03-1980", "31-02-1980", "1980/03/05", "01-01-1800", "5-3-1980"],
        list("0123456789-/ "),
        max_size=12,
    )
)


@SETTINGS
@given(df=DATE_FRAMES, seed=st.integers(0, 1000), fmt=st.sampled_from(["%d-%m-%Y", None]))
def test_dates_properties(df: pl.DataFrame, seed: int, fmt: str | None) -> None:
    def parse(frame: pl.DataFrame) -> pl.DataFrame:
        return parse_dates(frame, "dob", fmt, today=date(2024, 6, 1))

    _assert_idempotent(df, parse)
    _assert_order_independent(df, parse, seed)
