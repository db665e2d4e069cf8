"""Survivorship: each rule picks what it should, ties are broken reproducibly, lineage is whole."""

from __future__ import annotations

from datetime import date, datetime

import duckdb
import polars as pl
import pytest

from cdi_pipeline.lib.cleaned.activities import empty_events
from cdi_pipeline.lib.golden.survivorship import (
    GOLDEN_INPUT_COLUMNS,
    build_golden,
    lineage_problems,
)
from cdi_pipeline.lib.registry import GoldenConfig, RegistryError, load_registry

LOADED = datetime(2026, 11, 1, 8, 0)
_SCHEMA = {c: pl.String for c in GOLDEN_INPUT_COLUMNS} | {
    "trust": pl.Int32,
    "loaded_at": pl.Datetime("us"),
    "date_of_birth": pl.Date,
}


def _records(*rows: dict) -> pl.DataFrame:
    filled = [{c: row.get(c) for c in GOLDEN_INPUT_COLUMNS}
              | {"loaded_at": row.get("loaded_at", LOADED)} for row in rows]
    return pl.DataFrame(filled, schema=_SCHEMA)


def _xref(records: pl.DataFrame, customer: str = "CUS000000001") -> pl.DataFrame:
    return records.select(
        "source",
        "source_record_id",
        pl.lit(customer).alias("customer_id"),
        pl.lit(0.99).alias("match_confidence"),
    )


def _golden(records: pl.DataFrame, config: GoldenConfig, events: pl.DataFrame | None = None):
    return build_golden(records, _xref(records), events if events is not None else
                        empty_events(), config)


def _problems(customers: pl.DataFrame, lineage: pl.DataFrame) -> pl.DataFrame:
    con = duckdb.connect()
    try:
        con.register("customers", customers.to_arrow())
        con.register("lineage", lineage.to_arrow())
        return lineage_problems(con, "customers", "lineage")
    finally:
        con.close()


def _lineage(result, field: str) -> dict:
    rows = result.lineage.filter(pl.col("field") == field).to_dicts()
    assert len(rows) == 1, rows
    return rows[0]


def test_trust_rank_picks_the_most_trusted_source() -> None:
    records = _records(
        {"source": "shop", "source_record_id": "W1", "trust": 3, "email": "jan@shop.nl"},
        {"source": "crm", "source_record_id": "C1", "trust": 1, "email": "jan@crm.nl"},
    )
    result = _golden(records, GoldenConfig(survivorship={"email": ["trust"]}))
    assert result.customers["email"].to_list() == ["jan@crm.nl"]
    row = _lineage(result, "email")
    assert (row["source"], row["source_record_id"], row["rule"]) == ("crm", "C1", "trust")
    assert (row["runner_up_value"], row["runner_up_source"]) == ("jan@shop.nl", "shop")
    assert (row["candidates"], row["agreeing"], row["match_confidence"]) == (2, 1, 0.99)


def test_most_recent_uses_the_records_own_event_date() -> None:
    records = _records(
        {"source": "crm", "source_record_id": "C1", "trust": 1, "phone": "+31611111111",
         "phone_type": "mobile"},
        {"source": "desk", "source_record_id": "T1", "trust": 4, "phone": "+31622222222",
         "phone_type": "mobile"},
        {"source": "desk", "source_record_id": "T2", "trust": 4, "phone": "+31633333333",
         "phone_type": "mobile"},
    )
    # Ticket T2 was raised after the CRM export was loaded; T1 before it.
    events = pl.concat(
        [
            empty_events(),
            pl.DataFrame(
                {
                    "source": ["desk", "desk"], "event_id": ["T1", "T2"],
                    "kind": ["ticket"] * 2, "customer_source": ["desk", "desk"],
                    "customer_record_id": ["T1", "T2"],
                    "occurred_at": [datetime(2024, 1, 1), datetime(2026, 11, 20)],
                }
            ),
        ],
        how="diagonal_relaxed",
    )
    result = _golden(records, GoldenConfig(survivorship={"phone": ["most_recent", "trust"]}),
                     events)
    assert result.customers["phone"].to_list() == ["+31633333333"]
    assert result.customers["phone_display"].to_list() == ["+31 6 3333 3333"]
    row = _lineage(result, "phone")
    assert (row["source_record_id"], row["rule"]) == ("T2", "most_recent")
    # Exports loaded the same day tie on recency, so the next rule (trust) decides between
    # them, not the order in which the files happened to load.
    same_day = _records(
        {"source": "shop", "source_record_id": "W1", "trust": 3, "phone": "+31644444444",
         "loaded_at": datetime(2026, 11, 1, 8, 5)},
        {"source": "crm", "source_record_id": "C1", "trust": 1, "phone": "+31655555555"},
    )
    result = _golden(same_day, GoldenConfig(survivorship={"phone": ["most_recent", "trust"]}))
    assert _lineage(result, "phone")["rule"] == "trust"
    assert result.customers["phone"].to_list() == ["+31655555555"]


def test_most_complete_prefers_the_full_given_name_and_the_fuller_address() -> None:
    records = _records(
        {"source": "crm", "source_record_id": "C1", "trust": 1, "first_name": "J",
         "first_name_key": "j", "postcode": "1234 AB", "country": "NL"},
        {"source": "shop", "source_record_id": "W1", "trust": 3, "first_name": "Johannes",
         "first_name_key": "johannes", "street": "Kerkstraat", "street_key": "kerkstraat",
         "house_number": "12", "house_number_addition": "A", "postcode": "1234 AB",
         "city": "Utrecht", "city_key": "utrecht", "country": "NL"},
    )
    config = GoldenConfig(
        survivorship={"first_name": ["most_complete", "trust"],
                      "address": ["most_complete", "trust"]}
    )
    result = _golden(records, config)
    golden = result.customers.row(0, named=True)
    assert golden["first_name"] == "Johannes"
    assert _lineage(result, "first_name")["rule"] == "most_complete"
    # The whole address comes from one record: never the CRM postcode with the shop street.
    assert (golden["street"], golden["house_number"], golden["house_number_addition"],
            golden["postcode"], golden["postcode_key"], golden["city"]) == (
        "Kerkstraat", "12", "A", "1234 AB", "1234AB", "Utrecht")
    address_sources = result.lineage.filter(pl.col("field_group") == "address")
    assert set(address_sources["source_record_id"]) == {"W1"}


def test_most_frequent_counts_agreeing_records() -> None:
    records = _records(
        {"source": "crm", "source_record_id": "C1", "trust": 1, "last_name": "Janssen",
         "last_name_key": "janssen"},
        {"source": "shop", "source_record_id": "W1", "trust": 3, "last_name": "Jansen",
         "last_name_key": "jansen"},
        {"source": "desk", "source_record_id": "T1", "trust": 4, "last_name": "Jansen",
         "last_name_key": "jansen", "name_prefix": None},
    )
    result = _golden(records, GoldenConfig(survivorship={"last_name": ["most_frequent",
                                                                       "trust"]}))
    assert result.customers["last_name"].to_list() == ["Jansen"]
    row = _lineage(result, "last_name")
    # Two records agree; of those the more trusted one supplies the value.
    assert (row["rule"], row["agreeing"], row["source_record_id"]) == ("most_frequent", 2, "W1")
    assert row["runner_up_value"] == "Janssen"


def test_full_tie_is_broken_by_source_then_record_id() -> None:
    records = _records(
        {"source": "shop", "source_record_id": "W2", "trust": 3, "gender": "F"},
        {"source": "shop", "source_record_id": "W1", "trust": 3, "gender": "M"},
    )
    config = GoldenConfig(survivorship={"gender": ["trust", "most_frequent", "most_recent"]})
    first = _golden(records, config)
    again = _golden(records.reverse(), config)
    assert first.customers["gender"].to_list() == again.customers["gender"].to_list() == ["M"]
    row = _lineage(first, "gender")
    assert (row["rule"], row["source_record_id"], row["runner_up_value"]) == (
        "tie_break", "W1", "F")


def test_unanimous_values_and_nulls() -> None:
    records = _records(
        {"source": "crm", "source_record_id": "C1", "trust": 1, "date_of_birth": date(1980, 3, 5),
         "email": "a@b.nl"},
        {"source": "shop", "source_record_id": "W1", "trust": 3,
         "date_of_birth": date(1980, 3, 5)},
    )
    result = _golden(records, GoldenConfig())
    golden = result.customers.row(0, named=True)
    assert golden["date_of_birth"] == date(1980, 3, 5)
    assert golden["phone"] is None and golden["records"] == 2 and golden["sources"] == 2
    assert _lineage(result, "date_of_birth")["rule"] == "unanimous"
    assert _lineage(result, "email")["rule"] == "unanimous"
    # No value, no lineage row; every value exactly one.
    assert result.lineage.filter(pl.col("field") == "phone").is_empty()
    assert _problems(result.customers, result.lineage).is_empty()


def test_lineage_problems_finds_gaps_and_duplicates() -> None:
    records = _records(
        {"source": "crm", "source_record_id": "C1", "trust": 1, "email": "a@b.nl",
         "gender": "F"},
    )
    result = _golden(records, GoldenConfig())
    lineage = result.lineage
    missing = _problems(result.customers, lineage.filter(pl.col("field") != "email"))
    assert missing.select("field", "lineage_rows").to_dicts() == [
        {"field": "email", "lineage_rows": 0}
    ]
    doubled = _problems(result.customers,
                        pl.concat([lineage, lineage.filter(pl.col("field") == "gender")]))
    assert doubled["field"].to_list() == ["gender"]


def test_survivorship_config_is_validated(tmp_path) -> None:
    (tmp_path / "a.csv").write_text("id,email\n1,a@b.nl\n", encoding="utf-8")
    base = ("sources:\n  - {name: a, path: a.csv, format: csv, record_id: id, "
            "fields: {email: email}}\n")
    for bad, message in [
        ("golden: {survivorship: {email: [newest]}}\n", r"survivorship\.email\.0.*most_recent"),
        ("golden: {survivorship: {shoe_size: [trust]}}\n", "shoe_size"),
        ("golden: {survivorship: {email: [trust, trust]}}\n", "listed twice"),
    ]:
        path = tmp_path / "sources.yaml"
        path.write_text(base + bad, encoding="utf-8")
        with pytest.raises(RegistryError, match=message):
            load_registry(path)
