"""What enrichment adds to each golden customer: region, email domain type, line type, age
band, and whether the address changed since the previous quarter's snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import duckdb
import polars as pl

from cdi_pipeline.lib.enrichment.reference import ReferenceData
from cdi_pipeline.lib.storage import table_exists

ENRICHMENT_COLUMNS = {
    "customer_id": "Customer the enrichment describes.",
    "quarter": "Quarter of the reference date, e.g. 2026Q4.",
    "postcode_area": "Four-digit postcode area (NL), the coarse location analysts may use.",
    "municipality": "Municipality of the postcode area (null when outside the reference).",
    "province": "Province of the postcode area.",
    "region": "Part of the country: Noord, Oost, West or Zuid.",
    "email_domain_type": "free_mail, business or disposable (null without email).",
    "phone_line_type": "Line type of the phone from its number plan (phonenumbers metadata): "
    "mobile, fixed_line or other.",
    "age": "Age in whole years at the reference date.",
    "age_band": "Age band: under_18, 18_24, 25_34, 35_44, 45_54, 55_64, 65_74, 75_plus.",
    "address_changed": "Address differs from the previous quarter's snapshot (null when there "
    "is no earlier snapshot of this customer).",
    "previous_quarter": "Quarter compared against for address_changed.",
    "reference_version": "Version of the reference data used.",
    "reference_date": "The 'today' of the enrichment run.",
}

_AGE_BANDS = [(18, "under_18"), (25, "18_24"), (35, "25_34"), (45, "35_44"), (55, "45_54"),
              (65, "55_64"), (75, "65_74")]


def quarter_of(day: date) -> str:
    """'2026Q4' for any day in October to December 2026."""
    return f"{day.year}Q{(day.month - 1) // 3 + 1}"


def address_key() -> pl.Expr:
    """What counts as 'the same address' between quarters: postcode, number and addition,
    or the street and city where there is no postcode."""
    return pl.concat_str(
        [pl.col(c).fill_null("") for c in ("postcode_key", "house_number",
                                           "house_number_addition", "street", "city")],
        separator="|",
    )


def _age(dob: pl.Expr, today: date) -> pl.Expr:
    years = pl.lit(today.year) - dob.dt.year()
    before_birthday = (dob.dt.month() > today.month) | (
        (dob.dt.month() == today.month) & (dob.dt.day() > today.day)
    )
    return (years - before_birthday.cast(pl.Int32)).cast(pl.Int32)


def enrich_customers(
    customers: pl.DataFrame,
    previous: pl.DataFrame | None,
    reference: ReferenceData,
    today: date,
) -> pl.DataFrame:
    """One enrichment row per golden customer.

    `previous` holds (customer_id, quarter, address_key) of the latest earlier quarter's
    snapshot, or None when no quarter was snapshotted before.
    """
    provinces = reference.postcode_provinces()
    municipalities = reference.postcode_municipalities()
    domains = reference.email_domains()
    frame = customers.select(
        "customer_id", "postcode_key", "country", "email", "phone_type", "date_of_birth",
        address_key().alias("_address"),
    ).with_columns(
        pl.when((pl.col("country").fill_null("NL") == "NL")
                & pl.col("postcode_key").str.contains(r"^[1-9][0-9]{3}[A-Z]{2}$"))
        .then(pl.col("postcode_key").str.slice(0, 4))
        .alias("postcode_area"),
    ).with_columns(
        pl.col("postcode_area").cast(pl.Int32).alias("_pc4"),
        pl.col("postcode_area").str.slice(0, 2).cast(pl.Int32).alias("pc2"),
        pl.col("email").str.extract(r"@(.+)$").str.to_lowercase().alias("domain"),
    )
    # Range lookup: the last range starting at or before the area, kept when it also ends
    # at or after it.
    located = (
        frame.sort("_pc4")
        .join_asof(municipalities, left_on="_pc4", right_on="pc4_from", strategy="backward")
        .with_columns(
            pl.when(pl.col("_pc4") <= pl.col("pc4_to")).then(pl.col("municipality"))
            .alias("municipality")
        )
        .join(provinces, on="pc2", how="left")
        .join(domains, on="domain", how="left")
    )
    age = _age(pl.col("date_of_birth"), today)
    band = pl.when(age.is_null()).then(None)
    for upper, name in _AGE_BANDS:
        band = band.when(age < upper).then(pl.lit(name))
    band = band.otherwise(pl.lit("75_plus"))
    out = located.with_columns(
        pl.lit(quarter_of(today)).alias("quarter"),
        pl.when(pl.col("domain").is_null()).then(None)
        .otherwise(pl.col("domain_type").fill_null("business")).alias("email_domain_type"),
        pl.col("phone_type").alias("phone_line_type"),
        age.alias("age"),
        band.alias("age_band"),
        pl.lit(reference.version()).alias("reference_version"),
        pl.lit(today).alias("reference_date"),
    )
    if previous is not None and not previous.is_empty():
        out = out.join(
            previous.select("customer_id", pl.col("quarter").alias("previous_quarter"),
                            pl.col("address_key").alias("_previous_address")),
            on="customer_id", how="left",
        ).with_columns(
            pl.when(pl.col("_previous_address").is_not_null())
            .then(pl.col("_address") != pl.col("_previous_address"))
            .alias("address_changed")
        )
    else:
        out = out.with_columns(
            pl.lit(None, dtype=pl.Boolean).alias("address_changed"),
            pl.lit(None, dtype=pl.String).alias("previous_quarter"),
        )
    return out.select(list(ENRICHMENT_COLUMNS)).sort("customer_id")


def previous_addresses(con: duckdb.DuckDBPyConnection, quarter: str) -> pl.DataFrame | None:
    """(customer_id, quarter, address_key) of the latest enrichment.customer_snapshots quarter
    before `quarter`, the `previous` of `enrich_customers`; None without any snapshot table.

    A re-run within a quarter so compares against the previous quarter, not against its own
    earlier snapshot.
    """
    if not table_exists(con, "enrichment", "customer_snapshots"):
        return None
    return con.sql(
        "SELECT * FROM enrichment.customer_snapshots WHERE quarter = "
        "(SELECT max(quarter) FROM enrichment.customer_snapshots WHERE quarter < $q)",
        params={"q": quarter},
    ).pl().select("customer_id", "quarter", address_key().alias("address_key"))


@dataclass(frozen=True)
class EnrichmentSummary:
    """What an enrichment run found, for people to check at a glance."""

    coverage: pl.DataFrame
    per_region: pl.DataFrame
    address_changed: int
    compared_with_quarter: str


def summarise_enrichment(table: pl.DataFrame) -> EnrichmentSummary:
    """Filled share of the reference columns, customers per region, addresses changed since
    the previous quarter and which quarter that was ('none' without one)."""
    coverage = table.select(
        pl.col(c).is_not_null().mean().round(4).alias(c)
        for c in ("municipality", "province", "email_domain_type", "age_band")
    ).unpivot(variable_name="column", value_name="filled_share")
    return EnrichmentSummary(
        coverage=coverage,
        per_region=table.group_by("region").agg(pl.len().alias("customers")).sort("region"),
        address_changed=int(table.get_column("address_changed").fill_null(False).sum()),
        compared_with_quarter=str(
            table.get_column("previous_quarter").drop_nulls().max() or "none"),
    )
