"""The raw step: a loaded file held to the raw contract, erased persons' rows dropped and
counted, every column described, personal values masked in the preview."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from cdi_pipeline.lib.contracts import describe
from cdi_pipeline.lib.governance.erasure import (
    SUPPRESSION_COLUMNS,
    ErasureTargets,
    read_suppression_list,
    suppression_entries,
)
from cdi_pipeline.lib.raw.batch import (
    masked_preview,
    prepare_raw_batch,
    raw_column_descriptions,
)
from cdi_pipeline.lib.raw.sources import RawLoad, SourceFileError, load_source
from cdi_pipeline.lib.registry import load_registry
from cdi_pipeline.lib.storage import TableWrite, replace_tables

KEY = "k" * 32


def _erased(records: list[str], emails: list[str]) -> pl.DataFrame:
    targets = ErasureTargets(
        records=pl.DataFrame({"source": ["crm"] * len(records), "source_record_id": records},
                             schema={"source": pl.String, "source_record_id": pl.String}),
        events=pl.DataFrame(schema={"source": pl.String, "event_id": pl.String}),
        customer_ids=pl.DataFrame(schema={"customer_id": pl.String}),
        emails=pl.Series("value", emails, dtype=pl.String),
        phones=pl.Series("value", [], dtype=pl.String),
        per_request=pl.DataFrame({"request_id": ["ER-1"], "customers": [1], "records": [1]}),
    )
    return suppression_entries(targets, "ER-1", KEY, "fp", datetime(2026, 12, 1))


def _no_key() -> str:
    raise AssertionError("the key is only needed when the suppression list has entries")


def test_rows_of_erased_persons_are_dropped_and_counted(
    small_registry: Path, tmp_path: Path
) -> None:
    registry = load_registry(small_registry)
    crm = registry.source("crm")
    load = load_source(registry, crm, run_id="run-1")
    con = duckdb.connect(str(tmp_path / "cdi.duckdb"))
    try:
        # C2 by its record key, Zoë (C3) by her email as the cleaned layer stores it.
        entries = _erased(["C2"], ["zoe@example.com"])
        replace_tables(con, [TableWrite("governance", "suppression_list", entries,
                                        "Suppression.", describe(SUPPRESSION_COLUMNS))])
        suppression = read_suppression_list(con)
    finally:
        con.close()
    batch = prepare_raw_batch(load, crm, suppression, key=lambda: KEY)
    assert batch.frame.get_column("contactnummer").to_list() == ["C1"]
    assert batch.suppressed == 2
    assert batch.rows_in_file == 3
    # The kept rows are the file's rows, lineage included, not a reworked copy.
    assert batch.frame.equals(load.frame.head(1))


def test_without_a_suppression_list_every_row_stays(small_registry: Path, tmp_path: Path) -> None:
    registry = load_registry(small_registry)
    crm = registry.source("crm")
    con = duckdb.connect(str(tmp_path / "cdi.duckdb"))
    try:
        suppression = read_suppression_list(con)
    finally:
        con.close()
    assert suppression is None
    load = load_source(registry, crm, run_id="run-1")
    batch = prepare_raw_batch(load, crm, suppression, key=_no_key)
    assert batch.frame.height == 3 and batch.suppressed == 0
    # An empty list (every request carried out found nothing) needs no key either.
    empty = _erased([], []).clear()
    assert prepare_raw_batch(load, crm, empty, key=_no_key).suppressed == 0


def test_rows_breaking_the_raw_contract_stop_the_batch(small_registry: Path) -> None:
    registry = load_registry(small_registry)
    crm = registry.source("crm")
    load = load_source(registry, crm, run_id="run-1")
    broken = RawLoad(frame=load.frame.drop("email"), path=load.path,
                     file_hash=load.file_hash, size_bytes=load.size_bytes)
    with pytest.raises(SourceFileError, match="breaks the raw contract"):
        prepare_raw_batch(broken, crm, None, key=_no_key)


def test_every_column_is_described_and_personal_values_masked(small_registry: Path) -> None:
    registry = load_registry(small_registry)
    crm = registry.source("crm")
    frame = load_source(registry, crm, run_id="run-1").frame.with_columns(
        pl.lit("x").alias("remark"))
    described = raw_column_descriptions(crm, frame)
    assert list(described) == frame.columns
    assert described["contactnummer"] == "Record id in crm (registry key record_id)."
    assert described["email"] == "Source column mapped to canonical field email."
    assert described["remark"] == "Unmapped source column, kept as delivered."
    assert "_row_number" in described and "_loaded_at" in described
    preview = masked_preview(crm, frame)
    assert "jan@example.com" not in preview and "j***" in preview
    assert "_file_hash" not in preview
