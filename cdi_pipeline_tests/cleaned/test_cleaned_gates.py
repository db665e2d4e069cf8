"""The cleaned layer's gates: too many records held back stops everything downstream.

The four-record source set is far too small to train a matching model, so these runs select
the raw, cleaned and quality layers of the full_refresh job only.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import dagster as dg
import duckdb
import pandera.polars as pa
import polars as pl
import pytest

from cdi_pipeline.lib.cleaned import batch as cleaned_batch
from cdi_pipeline.lib.contracts import failure_summary
from cdi_pipeline_tests.conftest import SMALL_SET_LAYERS
from cdi_pipeline_tests.warehouse_state import Site, run_job


def _check(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    evaluations = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    return next(e for e in evaluations if e.check_name == name)


def test_clean_batch_passes_every_gate(small_site: Site) -> None:
    # The session's build of the small set is this run.
    result = small_site.result
    assert result.success
    assert _check(result, "rejected_share").passed
    assert _check(result, "conservation").passed
    assert _check(result, "invalid_value_share").passed


def test_rejected_share_over_limit_blocks_downstream(
    small_registry: Path, warehouse_dir: Path
) -> None:
    crm = small_registry.parent / "sources" / "crm.csv"
    # One record of four with nothing identifying: 25% held back, above the 5% default.
    crm.write_text(crm.read_text() + "C4;;;;;;\n", encoding="utf-8")
    result = run_job(small_registry, warehouse_dir, layers=SMALL_SET_LAYERS)
    assert not result.success
    check = _check(result, "rejected_share")
    assert not check.passed
    assert "crm" in check.description
    profiled = result.asset_materializations_for_node("quality__field_profile")
    assert profiled == []


def test_a_lost_row_in_a_later_source_leaves_the_previous_tables(
    small_site: Site, tmp_path: Path, monkeypatch
) -> None:
    # A copy of the session's successful build of the small set is the previous state.
    assert small_site.result.success
    site = small_site.copy_to(tmp_path / "site")
    small_registry, warehouse_dir = site.registry, site.warehouse
    before = _table(warehouse_dir, "cleaned.customer_records")
    real = cleaned_batch.clean_source

    def losing_a_row(raw, source, **kwargs):
        # A cleaning bug in the last source (shop): one record vanishes without quarantine.
        result = real(raw, source, **kwargs)
        if source.name == "shop":
            result = dataclasses.replace(result, records=result.records.head(-1))
        return result

    monkeypatch.setattr(cleaned_batch, "clean_source", losing_a_row)
    result = run_job(small_registry, warehouse_dir, layers=SMALL_SET_LAYERS)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "rows were lost in cleaning" in failure.event_specific_data.error.to_string()
    # crm and erp had been staged already; none of it reached a table, nothing is left over.
    assert _table(warehouse_dir, "cleaned.customer_records").equals(before)
    con = duckdb.connect(str(warehouse_dir / "cdi.duckdb"), read_only=True)
    try:
        staging = con.sql("SELECT table_name FROM duckdb_tables() "
                          "WHERE table_name LIKE '\\_staging\\_%' ESCAPE '\\'").fetchall()
    finally:
        con.close()
    assert staging == []


def _table(warehouse: Path, name: str) -> pl.DataFrame:
    con = duckdb.connect(str(warehouse / "cdi.duckdb"), read_only=True)
    try:
        return con.sql(f"SELECT * EXCLUDE (cleaned_run_id) FROM {name} "
                       "ORDER BY source, source_record_id").pl()
    finally:
        con.close()


def test_check_examples_show_held_back_values_by_shape_only(
    small_registry: Path, warehouse_dir: Path
) -> None:
    # Dagster keeps check metadata in its event log, beyond any erasure: a held-back record's
    # values appear there by shape, while cleaned.quarantine keeps them (and erasure reaches it).
    crm = small_registry.parent / "sources" / "crm.csv"
    crm.write_text(crm.read_text() + "C4;;;;Jan.Smit@@example;;\n", encoding="utf-8")
    result = run_job(small_registry, warehouse_dir, layers=SMALL_SET_LAYERS)
    examples = _check(result, "rejected_share").metadata["examples"].value
    assert "C4" in examples
    assert "Aaa.Aaaa@@aaaaaaa" in examples
    assert "Smit" not in examples and "example" not in examples
    con = duckdb.connect(str(warehouse_dir / "cdi.duckdb"), read_only=True)
    try:
        stored = con.sql("SELECT offending_value FROM cleaned.quarantine "
                         "WHERE source_record_id = 'C4'").fetchall()
    finally:
        con.close()
    assert any("Jan.Smit@@example" in value for (value,) in stored)


def test_contract_failure_examples_show_values_by_shape_and_names_as_they_are() -> None:
    schema = pa.DataFrameSchema({
        "source_record_id": pa.Column(pl.String, unique=True),
        "email": pa.Column(pl.String, pa.Check.str_matches(r"^[^@]+@[^@]+$")),
        "date_of_birth": pa.Column(pl.Date),
        "phone": pa.Column(pl.String),
    })
    frame = pl.DataFrame({"source_record_id": ["C7", "C7"],
                          "email": ["piet@example.com", "Piet.Smit@@mail"],
                          "date_of_birth": ["1990-01-31", "1980-05-05"]})
    with pytest.raises(pa.errors.SchemaErrors) as err:
        schema.validate(frame, lazy=True)
    counts, sample = failure_summary(err.value)
    assert counts["email: str_matches('^[^@]+@[^@]+$')"] == 1
    assert "Aaaa.Aaaa@@aaaa" in sample and "Smit" not in sample
    # Row keys, dtypes and missing column names are not personal values: shown as they are.
    assert "source_record_id / field_uniqueness: C7" in sample
    assert "String" in sample and "phone" in sample
