"""Enrichment from the shipped reference files, and what a bad reference file does."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from cdi_pipeline.lib.enrichment.enrich import address_key, enrich_customers, quarter_of
from cdi_pipeline.lib.enrichment.reference import FileReferenceData, ReferenceDataError
from cdi_pipeline.settings import DEFAULT_REFERENCE_DIR

TODAY = date(2026, 10, 1)


def _customers() -> pl.DataFrame:
    return pl.DataFrame({
        "customer_id": ["A", "B", "C", "D"],
        "postcode_key": ["1017AB", "9999ZZ", None, "4251XY"],
        "country": ["NL", "NL", "BE", "NL"],
        "email": ["a@gmail.com", "b@bakker-advies.nl", "c@mailinator.com", None],
        "phone_type": ["mobile", "fixed_line", None, "mobile"],
        "date_of_birth": [date(1990, 10, 1), date(1990, 10, 2), None, date(1950, 1, 1)],
        "house_number": ["12", "3", None, "8"],
        "house_number_addition": [None, None, None, "A"],
        "street": ["Kerkstraat", "Dorpsstraat", None, "Brink"],
        "city": ["Amsterdam", "Groningen", None, "Werkendam"],
    }, schema_overrides={"date_of_birth": pl.Date})


def test_enrichment_from_the_shipped_reference_data() -> None:
    reference = FileReferenceData(DEFAULT_REFERENCE_DIR)
    rows = {r["customer_id"]: r for r in
            enrich_customers(_customers(), None, reference, TODAY).to_dicts()}
    assert (rows["A"]["municipality"], rows["A"]["province"], rows["A"]["region"]) == (
        "Amsterdam", "Noord-Holland", "West")
    # Inside a known province but outside every municipality range: no guess.
    assert (rows["D"]["municipality"], rows["D"]["province"]) == (None, "Zuid-Holland")
    assert (rows["B"]["province"], rows["B"]["municipality"]) == ("Groningen", None)
    assert rows["C"]["postcode_area"] is None  # not a Dutch postcode
    assert [rows[c]["email_domain_type"] for c in "ABCD"] == [
        "free_mail", "business", "disposable", None]
    # Birthday today counts, tomorrow does not.
    assert (rows["A"]["age"], rows["A"]["age_band"]) == (36, "35_44")
    assert (rows["B"]["age"], rows["B"]["age_band"]) == (35, "35_44")
    assert (rows["D"]["age_band"], rows["C"]["age_band"]) == ("75_plus", None)
    assert rows["A"]["quarter"] == "2026Q4" and rows["A"]["reference_version"] != "unversioned"
    assert rows["A"]["address_changed"] is None  # no earlier snapshot to compare with


def test_address_change_against_the_previous_quarter() -> None:
    customers = _customers()
    previous = customers.with_columns(
        pl.when(pl.col("customer_id") == "B").then(pl.lit("5")).otherwise(
            pl.col("house_number")).alias("house_number"),
        pl.lit("2026Q3").alias("quarter"),
    ).filter(pl.col("customer_id") != "D").select(
        "customer_id", "quarter", address_key().alias("address_key"))
    table = enrich_customers(customers, previous, FileReferenceData(DEFAULT_REFERENCE_DIR),
                             TODAY)
    changed = dict(zip(table["customer_id"], table["address_changed"], strict=True))
    assert changed == {"A": False, "B": True, "C": False, "D": None}
    assert set(table["previous_quarter"].drop_nulls()) == {"2026Q3"}


def test_quarters() -> None:
    assert [quarter_of(date(2026, m, 1)) for m in (1, 3, 4, 7, 12)] == [
        "2026Q1", "2026Q1", "2026Q2", "2026Q3", "2026Q4"]


def test_bad_reference_files_are_rejected_with_the_file_named(tmp_path) -> None:
    for name in ("postcode_provinces.csv", "email_domains.csv"):
        (tmp_path / name).write_text((DEFAULT_REFERENCE_DIR / name).read_text())
    (tmp_path / "postcode_municipalities.csv").write_text(
        "pc4_from,pc4_to,municipality\n1000,1100,A\n1050,1200,B\n")
    with pytest.raises(ReferenceDataError, match="postcode_municipalities.csv: ranges must not"):
        FileReferenceData(tmp_path).postcode_municipalities()
    (tmp_path / "email_domains.csv").write_text("domain,domain_type\nx.nl,spam\n")
    with pytest.raises(ReferenceDataError, match="domain_type must be free_mail or disposable"):
        FileReferenceData(tmp_path).email_domains()
    with pytest.raises(ReferenceDataError, match="does not exist"):
        FileReferenceData(tmp_path / "nowhere").postcode_provinces()
