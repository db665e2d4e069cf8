"""End to end: `dagster job execute` of full_refresh on a generated source set (the session's
e2e_run)."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import polars as pl
import pytest

from cdi_pipeline.datagen import generate
from cdi_pipeline.lib.cleaned.records import clean_source
from cdi_pipeline.lib.raw.sources import load_source
from cdi_pipeline.lib.registry import load_registry
from cdi_pipeline_tests.warehouse_state import RefreshRun

# These tests read the session's one end-to-end run (e2e_run): one pytest worker builds it.
pytestmark = pytest.mark.xdist_group("e2e_run")

INJECTED_RULES = {
    "email_invalid",
    "phone_invalid",
    "date_impossible",
    "date_unparsable",
    "date_out_of_range",
    "record_id_missing",
    "record_unidentifiable",
}


@pytest.fixture(scope="module")
def refreshed(e2e_run) -> tuple[Path, Path, RefreshRun]:
    """The session's `dagster job execute` of full_refresh on the end-to-end shape (400
    generated persons, one erasure request)."""
    ws = e2e_run.workspace
    return ws.warehouse.parent, ws.database, e2e_run.run


def test_full_refresh_succeeds(refreshed) -> None:
    _, db, run = refreshed
    assert run.returncode == 0, run.log[-4000:]
    assert "RUN_SUCCESS" in run.log
    assert db.exists()


def test_conservation_and_quarantine_reasons(refreshed) -> None:
    root, db, _ = refreshed
    registry = load_registry(root / "input" / "sources.yaml")
    con = duckdb.connect(str(db), read_only=True)
    try:
        for source in registry.identity_sources:
            raw = con.sql(f"SELECT count(*) FROM raw.{source.name}").fetchall()[0][0]
            cleaned = con.sql(
                "SELECT count(*) FROM cleaned.customer_records WHERE source = ?",
                params=[source.name],
            ).fetchall()[0][0]
            held = con.sql(
                "SELECT count(*) FROM cleaned.quarantine WHERE source = ? AND scope = 'record'",
                params=[source.name],
            ).fetchall()[0][0]
            assert raw == cleaned + held, source.name
            assert cleaned > 0
        rules = {r for (r,) in con.sql("SELECT DISTINCT rule FROM cleaned.quarantine").fetchall()}
        assert rules >= INJECTED_RULES, INJECTED_RULES - rules
        # every quarantined value says what was wrong and what it was
        blanks = con.sql(
            "SELECT count(*) FROM cleaned.quarantine WHERE message IS NULL OR "
            "(offending_value IS NULL AND rule <> 'record_id_missing')"
        ).fetchall()[0][0]
        assert blanks == 0
        undescribed = con.sql(
            "SELECT schema_name || '.' || table_name || '.' || column_name FROM duckdb_columns() "
            "WHERE database_name = 'cdi' AND (comment IS NULL OR comment = '')"
        ).fetchall()
        assert [c for (c,) in undescribed if not c.startswith("raw.")] == []
        profile = con.sql("SELECT * FROM quality.field_profile").pl()
    finally:
        con.close()
    email = profile.filter((pl.col("source") == "crm_contacts") & (pl.col("field") == "email"))
    assert email.height == 1 and 0 < email["validity"][0] < 1


def test_cleaning_is_independent_of_row_order(tmp_path: Path) -> None:
    generate(persons=150, seed=5, out_dir=tmp_path, progress=False)
    registry = load_registry(tmp_path / "sources.yaml")
    for source in registry.identity_sources:
        raw = load_source(registry, source, run_id="r").frame
        a = clean_source(raw, source, run_id="r")
        b = clean_source(raw.sample(fraction=1.0, shuffle=True, seed=1), source, run_id="r")
        keys = ["source_record_id", "source_row_number"]
        assert a.records.sort(keys).equals(b.records.sort(keys)), source.name
        assert a.quarantine.sort([*keys, "field", "rule"], nulls_last=True).equals(
            b.quarantine.sort([*keys, "field", "rule"], nulls_last=True)
        )


def test_behavioural_events_are_conserved(refreshed) -> None:
    root, db, _ = refreshed
    registry = load_registry(root / "input" / "sources.yaml")
    con = duckdb.connect(str(db), read_only=True)
    try:
        for source in [s for s in registry.sources if s.activity is not None]:
            raw, events, held = con.sql(
                f"SELECT (SELECT count(*) FROM raw.{source.name}), "
                "(SELECT count(*) FROM cleaned.activities WHERE source = $s), "
                "(SELECT count(*) FROM cleaned.quarantine WHERE source = $s AND scope = 'event')",
                params={"s": source.name},
            ).fetchall()[0]
            assert raw == events + held and events > 0, source.name
    finally:
        con.close()


def test_golden_segments_and_exports_agree(refreshed) -> None:
    root, db, run = refreshed
    log = run.log
    for check in ("one_row_per_customer", "lineage_complete", "every_customer_segmented",
                  "only_contactable_exported"):
        assert f"Asset check '{check}'" in log and f"'{check}' on" in log
        assert not re.search(rf"Asset check '{check}' on '[^']+' did not pass", log), check
    con = duckdb.connect(str(db), read_only=True)
    try:
        counts = con.sql(
            "SELECT (SELECT count(DISTINCT customer_id) FROM matching.customer_xref), "
            "(SELECT count(*) FROM golden.customers), "
            "(SELECT count(*) FROM golden.customer_360), "
            "(SELECT count(*) FROM segments.customer_segments), "
            "(SELECT count(*) FROM golden.customer_360 WHERE contactable), "
            "(SELECT sum(customers) FROM segments.activation_exports), "
            "(SELECT count(*) FROM golden.customer_features WHERE order_count > 0)"
        ).fetchall()[0]
        orders_linked = con.sql(
            "SELECT sum(order_count) FROM golden.customer_features"
        ).fetchall()[0][0]
        orders = con.sql(
            "SELECT count(*) FROM cleaned.activities a JOIN matching.customer_xref x "
            "ON x.source = a.customer_source AND x.source_record_id = a.customer_record_id "
            "WHERE a.kind = 'order'"
        ).fetchall()[0][0]
        folder = con.sql("SELECT DISTINCT folder FROM segments.activation_exports").fetchall()
    finally:
        con.close()
    ids, golden, c360, segments, contactable, exported, buyers = counts
    assert ids == golden == c360 == segments
    assert contactable == exported > 0
    assert buyers > 0 and orders_linked == orders
    assert len(folder) == 1
    assert (root / "warehouse" / "exports" / "activation").resolve() == Path(folder[0][0])
    assert (root / "warehouse" / "reports" / "segments" / "segment_summary.html").exists()
