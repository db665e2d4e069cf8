"""Enrichment steps on a small warehouse file: the previous quarter's addresses, the summary
shown for a run, and quarterly snapshots replaced per quarter."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from cdi_pipeline.lib.enrichment.enrich import (
    address_key,
    enrich_customers,
    previous_addresses,
    summarise_enrichment,
)
from cdi_pipeline.lib.enrichment.reference import FileReferenceData
from cdi_pipeline.lib.enrichment.snapshots import (
    SNAPSHOT_COLUMNS,
    SnapshotTags,
    quarters_kept,
    snapshot_writes,
)
from cdi_pipeline.lib.storage import TableWrite, read_table, replace_partitions, replace_tables
from cdi_pipeline.settings import DEFAULT_REFERENCE_DIR

CUSTOMERS = pl.DataFrame({
    "customer_id": ["A", "B"],
    "postcode_key": ["1017AB", "9999ZZ"],
    "country": ["NL", "NL"],
    "email": ["a@gmail.com", None],
    "phone_type": ["mobile", None],
    "date_of_birth": [date(1990, 10, 1), None],
    "house_number": ["12", "3"],
    "house_number_addition": [None, None],
    "street": ["Kerkstraat", "Dorpsstraat"],
    "city": ["Amsterdam", "Groningen"],
}, schema_overrides={"date_of_birth": pl.Date, "house_number_addition": pl.String})


@pytest.fixture
def con(tmp_path: Path):
    """A warehouse file with the tables the snapshots copy."""
    con = duckdb.connect(str(tmp_path / "cdi.duckdb"))
    replace_tables(con, [
        TableWrite("golden", "customers", CUSTOMERS, "Customers."),
        TableWrite("matching", "customer_xref", pl.DataFrame({
            "source": ["crm", "crm"], "source_record_id": ["C1", "C2"],
            "customer_id": ["A", "B"], "model_version": ["m-1", "m-1"]}), "Identity map."),
        TableWrite("segments", "customer_segments", pl.DataFrame({
            "customer_id": ["A", "B"], "rfm_segment": ["champions", "no_orders"]}), "Segments."),
    ])
    yield con
    con.close()


def _snapshot(con, quarter: str, version: str | None) -> None:
    tags = SnapshotTags(quarter, version, f"run-{quarter}", datetime(2026, 10, 2, 8, 0))
    replace_partitions(con, snapshot_writes(con, tags))


def test_snapshots_are_tagged_and_replaced_per_quarter(con) -> None:
    _snapshot(con, "2026Q3", "m-1")
    _snapshot(con, "2026Q4", None)
    _snapshot(con, "2026Q4", "m-2")  # a later run in the quarter replaces its rows
    xref = read_table(con, "enrichment", "customer_xref_snapshots")
    assert xref.columns[:4] == list(SNAPSHOT_COLUMNS)
    # The snapshot's model version replaces the identity map's own.
    assert sorted(set(zip(xref["quarter"], xref["model_version"], strict=True))) == [
        ("2026Q3", "m-1"), ("2026Q4", "m-2")]
    assert quarters_kept(con).rows() == [("2026Q3", 2, "m-1"), ("2026Q4", 2, "m-2")]
    segments = read_table(con, "enrichment", "customer_segment_snapshots")
    assert segments.height == 4 and "rfm_segment" in segments.columns


def test_previous_addresses_come_from_the_latest_earlier_quarter(con) -> None:
    assert previous_addresses(con, "2026Q4") is None  # no snapshot table yet
    _snapshot(con, "2026Q2", "m-1")
    con.execute("UPDATE golden.customers SET house_number = '5' WHERE customer_id = 'B'")
    _snapshot(con, "2026Q3", "m-1")
    _snapshot(con, "2026Q4", "m-1")
    previous = previous_addresses(con, "2026Q4")
    assert previous.columns == ["customer_id", "quarter", "address_key"]
    assert set(previous["quarter"]) == {"2026Q3"}
    expected = CUSTOMERS.with_columns(
        pl.when(pl.col("customer_id") == "B").then(pl.lit("5"))
        .otherwise(pl.col("house_number")).alias("house_number")
    ).select("customer_id", address_key().alias("address_key"))
    assert previous.select("customer_id", "address_key").sort("customer_id").equals(expected)


def test_the_run_summary_counts_changes_and_coverage() -> None:
    previous = CUSTOMERS.with_columns(
        pl.when(pl.col("customer_id") == "B").then(pl.lit("5"))
        .otherwise(pl.col("house_number")).alias("house_number"),
        pl.lit("2026Q3").alias("quarter"),
    ).select("customer_id", "quarter", address_key().alias("address_key"))
    table = enrich_customers(CUSTOMERS, previous, FileReferenceData(DEFAULT_REFERENCE_DIR),
                             date(2026, 10, 1))
    summary = summarise_enrichment(table)
    assert (summary.address_changed, summary.compared_with_quarter) == (1, "2026Q3")
    assert dict(summary.coverage.rows())["email_domain_type"] == 0.5
    assert summary.per_region["customers"].sum() == 2
    first = summarise_enrichment(enrich_customers(
        CUSTOMERS, None, FileReferenceData(DEFAULT_REFERENCE_DIR), date(2026, 10, 1)))
    assert (first.address_changed, first.compared_with_quarter) == (0, "none")
