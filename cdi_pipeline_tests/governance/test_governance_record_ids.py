"""Erasure finds raw rows by the id the cleaned layer stores: a raw id delivered with stray
spaces or control characters (" C1 ") is the same record as the cleaned "C1"."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl

from cdi_pipeline.lib.governance.erasure import (
    ErasureTargets,
    purge_rows,
    suppressed_rows,
    suppression_entries,
)
from cdi_pipeline.lib.registry import load_registry

REGISTRY = Path(__file__).resolve().parents[2] / "data" / "sources.yaml"
KEY = "k" * 32


def _targets() -> ErasureTargets:
    # What resolve_targets finds for an erased person: cleaned ids, as id_text writes them.
    return ErasureTargets(
        records=pl.DataFrame({"source": ["crm_contacts", "webshop_accounts"],
                              "source_record_id": ["C1", "W1"]}),
        events=pl.DataFrame(schema={"source": pl.String, "event_id": pl.String}),
        customer_ids=pl.DataFrame(schema={"customer_id": pl.String}),
        emails=pl.Series("value", [], dtype=pl.String),
        phones=pl.Series("value", [], dtype=pl.String),
        per_request=pl.DataFrame({"request_id": ["ER-1"], "customers": [1], "records": [2]}),
    )


def test_purge_removes_raw_rows_whose_ids_carry_stray_whitespace(tmp_path: Path) -> None:
    registry = load_registry(REGISTRY)
    con = duckdb.connect(str(tmp_path / "cdi.duckdb"))
    try:
        con.execute("CREATE SCHEMA raw")
        con.execute("CREATE TABLE raw.crm_contacts AS SELECT * FROM (VALUES "
                    "(' C1 ', 'erased'), ('C2', 'kept'), ('C1x', 'kept')) t(contactnummer, note)")
        # Orders point at web shop accounts; the erased account's order goes too.
        con.execute("CREATE TABLE raw.webshop_orders AS SELECT * FROM (VALUES "
                    "('O1', 'W1\t'), ('O2', 'W2')) t(order_id, account_id)")
        removed = purge_rows(con, _targets(), registry)
        left = con.sql("SELECT contactnummer FROM raw.crm_contacts ORDER BY 1").fetchall()
        orders = con.sql("SELECT order_id FROM raw.webshop_orders").fetchall()
    finally:
        con.close()
    assert removed == {"raw.crm_contacts": 1, "raw.webshop_orders": 1}
    assert left == [("C1x",), ("C2",)]
    assert orders == [("O2",)]


def test_suppression_recognises_a_reloaded_record_by_its_cleaned_id() -> None:
    entries = suppression_entries(_targets(), "ER-1", KEY, "fp", datetime(2026, 12, 1))
    delivered = pl.DataFrame({"contactnummer": ["  C1", "C2", "C1\u200b"],
                              "email": [None, None, None], "telefoon": [None, None, None]})
    mask = suppressed_rows(delivered, "crm_contacts", "contactnummer", "email", "telefoon",
                           "NL", entries, KEY)
    # A zero-width space is a format character: the cleaned layer drops it, so it is C1 too.
    assert mask.to_list() == [True, False, True]
