"""The cleaned step: a batch of raw tables gives records, events and quarantine that add up,
the same whether it is cleaned at once or source by source and staged in between."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest
import yaml

from cdi_pipeline.lib.cleaned.batch import (
    CleanedEvents,
    ContractViolation,
    RowsLost,
    assemble_batch,
    clean_batch,
    clean_events,
    clean_records,
    events_write,
    quarantine_write,
    record_columns,
    records_write,
)
from cdi_pipeline.lib.registry import Registry, load_registry
from cdi_pipeline.lib.storage import read_table, replace_tables, stage_table


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump({"sources": [
        {"name": "crm", "path": "crm.csv", "format": "csv", "record_id": "id", "trust": 1,
         "fields": {"first_name": "first", "last_name": "last", "email": "email"}},
        {"name": "shop", "path": "shop.csv", "format": "csv", "record_id": "account",
         "trust": 2, "fields": {"email": "email"}, "identifiers": {"loyalty": "card"}},
        {"name": "orders", "path": "orders.csv", "format": "csv", "record_id": "order_id",
         "date_format": "%d-%m-%Y",
         "activity": {"kind": "order", "customer": {"source": "shop", "column": "account"},
                      "occurred_at": "placed", "amount": "total"}},
    ]}), encoding="utf-8")
    return load_registry(path)


def _raw(name: str, columns: dict[str, list]) -> pl.DataFrame:
    """A raw table as the raw layer stores it: the file's columns plus lineage."""
    n = len(next(iter(columns.values())))
    return pl.DataFrame(columns).with_columns(
        pl.lit(f"{name}.csv").alias("_source_file"),
        pl.lit("hash").alias("_file_hash"),
        pl.int_range(1, n + 1, dtype=pl.Int64).alias("_row_number"),
        pl.lit(datetime(2026, 11, 1, 8, 0)).alias("_loaded_at"),
        pl.lit("load-run").alias("_run_id"),
    )


RAW = {
    # C3 has nothing identifying left (held back); C2's email is not an address (nulled).
    "crm": _raw("crm", {"id": ["C2", "C1", "C3"], "first": ["Piet", "Jan", None],
                        "last": ["Jansen", "Berg", None],
                        "email": ["piet(at)example", "jan@example.com", None]}),
    "shop": _raw("shop", {"account": ["W1", "W2"], "email": ["jan@example.com", "zoe@example.com"],
                          "card": ["L-1", None]}),
    # O2 has no readable amount (held back).
    "orders": _raw("orders", {"order_id": ["O1", "O2"], "account": ["W1", "W2"],
                              "placed": ["01-09-2026", "02-09-2026"], "total": ["12,50", "x"]}),
}


def test_a_batch_gives_records_events_and_quarantine_that_add_up(registry: Registry) -> None:
    batch = clean_batch(RAW, registry, run_id="clean-run")
    assert batch.records.columns == record_columns(registry)
    assert "id_loyalty" in batch.records.columns
    assert batch.records.select("source", "source_record_id").rows() == [
        ("crm", "C1"), ("crm", "C2"), ("shop", "W1"), ("shop", "W2")]
    # A source without the identifier has the column, empty.
    assert batch.records.filter(pl.col("source") == "crm")["id_loyalty"].null_count() == 2
    assert batch.record_balance.rows(named=True) == [
        {"source": "crm", "raw": 3, "cleaned": 2, "quarantined": 1, "holds": True},
        {"source": "shop", "raw": 2, "cleaned": 2, "quarantined": 0, "holds": True},
    ]
    assert batch.events["event_id"].to_list() == ["O1"]
    assert batch.events_held_back == 1
    assert (batch.records_cleaned, batch.records_held_back, batch.values_nulled) == (4, 1, 1)
    assert batch.quarantine.select("source", "scope", "rule").rows() == [
        ("crm", "record", "record_unidentifiable"), ("crm", "value", "email_invalid"),
        ("orders", "event", "amount_invalid")]
    assert batch.rows_per_rule()["rows"].sum() == batch.quarantine.height
    per_source = batch.events_per_source().row(0, named=True)
    assert (per_source["source"], per_source["events"], per_source["amount_total"]) == (
        "orders", 1, 12.5)


def test_source_by_source_with_staging_gives_the_same_tables(
    registry: Registry, tmp_path: Path
) -> None:
    """The full refresh stages each identity source's records before reading the next; the
    tables it writes are those of the batch cleaned at once."""
    whole = clean_batch(RAW, registry, run_id="clean-run")
    kept = []

    def records_by_source():
        for name in ("crm", "shop"):
            result = clean_records(RAW[name], registry.source(name), registry, "clean-run")
            kept.append(result.without_records())
            yield result.records

    con = duckdb.connect(str(tmp_path / "cdi.duckdb"))
    try:
        records = records_write(registry, records_by_source())
        staged = {records.qualified: stage_table(con, records)}
        events = [clean_events(RAW["orders"], registry.source("orders"), registry, "clean-run")]
        batch = assemble_batch(kept, events, registry)
        replace_tables(con, [records, events_write(batch), quarantine_write(batch)],
                       staged=staged)
        stored = read_table(con, "cleaned", "customer_records")
        stored_events = read_table(con, "cleaned", "activities")
        stored_quarantine = read_table(con, "cleaned", "quarantine")
    finally:
        con.close()
    assert batch.records.is_empty()
    assert batch.record_balance.equals(whole.record_balance)
    assert batch.records_cleaned == whole.records.height
    assert stored.equals(whole.records)
    assert stored_events.equals(whole.events)
    assert stored_quarantine.equals(whole.quarantine)


def test_a_delivery_of_events_alone_is_a_batch(registry: Registry) -> None:
    batch = clean_batch({"orders": RAW["orders"]}, registry, run_id="clean-run")
    assert batch.records.is_empty() and batch.records.columns == record_columns(registry)
    assert batch.record_balance.is_empty() and batch.records_cleaned == 0
    assert batch.events.height == 1 and batch.quarantine.height == 1


def test_events_that_do_not_add_up_stop_the_batch(registry: Registry) -> None:
    good = clean_events(RAW["orders"], registry.source("orders"), registry, "clean-run")
    lost = CleanedEvents(source=good.source, kind=good.kind, events=good.events.clear(),
                         quarantine=good.quarantine, raw_rows=good.raw_rows,
                         held_back=good.held_back)
    with pytest.raises(RowsLost, match="rows were lost in cleaning"):
        assemble_batch([], [lost], registry)


def test_a_batch_breaking_its_contract_stops(registry: Registry) -> None:
    good = clean_events(RAW["orders"], registry.source("orders"), registry, "clean-run")
    twice = CleanedEvents(source=good.source, kind=good.kind,
                          events=pl.concat([good.events, good.events]),
                          quarantine=good.quarantine, raw_rows=good.raw_rows + 1,
                          held_back=good.held_back)
    with pytest.raises(ContractViolation, match="cleaned.activities breaks its contract"):
        assemble_batch([], [twice], registry)
