"""One erasure run on a small warehouse file: pending requests found, the person's rows purged
with receipts and suppression entries, a request never carried out twice, the file rewritten
when a purge left bytes behind, and a changed key refused."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from cdi_pipeline.lib.governance.erasure import REWRITE_OWED, read_requests
from cdi_pipeline.lib.governance.erasure_run import (
    KeyMismatch,
    carry_out_requests,
    pending_requests,
    rewrite_if_owed,
)
from cdi_pipeline.lib.privacy import key_fingerprint
from cdi_pipeline.lib.registry import load_registry
from cdi_pipeline.lib.storage import TableWrite, read_table, replace_tables

REGISTRY = Path(__file__).resolve().parents[2] / "data" / "sources.yaml"
KEY = "k" * 32
NOW = datetime(2026, 12, 1, 9, 0)


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    """A warehouse folder whose file holds two customers; CUS-1 has two records."""
    root = tmp_path / "warehouse"
    root.mkdir()
    con = duckdb.connect(str(root / "cdi.duckdb"))
    try:
        replace_tables(con, [
            TableWrite("cleaned", "customer_records", pl.DataFrame({
                "source": ["crm_contacts", "crm_contacts", "webshop_accounts"],
                "source_record_id": ["C1", "C2", "W1"],
                "email": ["jan@example.com", "piet@example.com", "jan@example.com"],
                "phone": [None, None, "+31612345678"],
            }), "Records."),
            TableWrite("matching", "customer_xref", pl.DataFrame({
                "source": ["crm_contacts", "crm_contacts", "webshop_accounts"],
                "source_record_id": ["C1", "C2", "W1"],
                "customer_id": ["CUS-1", "CUS-2", "CUS-1"],
            }), "Identity map."),
            TableWrite("golden", "customers", pl.DataFrame({
                "customer_id": ["CUS-1", "CUS-2"],
            }), "Customers."),
        ])
    finally:
        con.close()
    return root


def _requests(tmp_path: Path) -> pl.DataFrame:
    path = tmp_path / "erasure_requests.csv"
    path.write_text("request_id,identifier_type,value,requested_on\n"
                    "ER-1,email,JAN@example.com,2026-11-30\n", encoding="utf-8")
    return read_requests(path)


def _run(con: duckdb.DuckDBPyConnection, pending: pl.DataFrame, root: Path, lines=None):
    return carry_out_requests(
        con, pending, load_registry(REGISTRY), key=KEY, fingerprint=key_fingerprint(KEY),
        now=NOW, files={"file:models": 2}, root=root, run_id="run-1",
        log=(lines if lines is not None else []).append,
    )


def test_a_request_is_carried_out_once_and_the_file_rewritten(
    warehouse: Path, tmp_path: Path
) -> None:
    requests = _requests(tmp_path)
    lines: list[str] = []
    con = duckdb.connect(str(warehouse / "cdi.duckdb"))
    try:
        pending = pending_requests(con, requests, key_fingerprint(KEY))
        assert pending["request_id"].to_list() == ["ER-1"]
        outcome = _run(con, pending, warehouse, lines)
        receipts = read_table(con, "governance", "erasure_receipts")
        suppression = read_table(con, "governance", "suppression_list")
        customers = read_table(con, "golden", "customers")
        # Carried out: the next run finds nothing pending.
        assert pending_requests(con, requests, key_fingerprint(KEY)).is_empty()
    finally:
        con.close()
    assert outcome.removed == {"cleaned.customer_records": 2, "matching.customer_xref": 2,
                               "golden.customers": 1}
    assert outcome.rows_removed()["rows"].sum() == 5
    assert (outcome.suppression_entries, outcome.requests_carried_out) == (4, 1)
    assert lines == ["erasure ER-1: 1 customer(s), 2 record(s), 5 rows removed"]
    assert customers["customer_id"].to_list() == ["CUS-2"]
    # Counts per table and the derived files, never values; hashes only on the list.
    assert dict(zip(receipts["item"], receipts["rows_removed"], strict=True)) == {
        "cleaned.customer_records": 2, "matching.customer_xref": 2, "golden.customers": 1,
        "file:models": 2}
    assert set(receipts["run_id"]) == {"run-1"}
    assert sorted(suppression["kind"]) == ["email", "phone", "record", "record"]
    assert not suppression["value_hash"].is_in(["jan@example.com", "+31612345678"]).any()
    assert (warehouse / REWRITE_OWED).exists()
    assert rewrite_if_owed(warehouse, warehouse / "cdi.duckdb", warehouse / ".cdi.lock")
    assert not (warehouse / REWRITE_OWED).exists()
    assert not rewrite_if_owed(warehouse, warehouse / "cdi.duckdb", warehouse / ".cdi.lock")
    con = duckdb.connect(str(warehouse / "cdi.duckdb"), read_only=True)
    try:
        assert read_table(con, "golden", "customers")["customer_id"].to_list() == ["CUS-2"]
    finally:
        con.close()


def test_without_requests_the_bookkeeping_tables_are_created_empty(
    warehouse: Path, tmp_path: Path
) -> None:
    con = duckdb.connect(str(warehouse / "cdi.duckdb"))
    try:
        pending = pending_requests(con, _requests(tmp_path).clear(), key_fingerprint(KEY))
        outcome = _run(con, pending, warehouse)
        receipts = read_table(con, "governance", "erasure_receipts")
    finally:
        con.close()
    assert (outcome.removed, outcome.suppression_entries, outcome.requests_carried_out) == (
        {}, 0, 0)
    assert receipts.is_empty() and "request_id" in receipts.columns
    assert not (warehouse / REWRITE_OWED).exists()


def test_a_list_hashed_with_another_key_is_refused(warehouse: Path, tmp_path: Path) -> None:
    requests = _requests(tmp_path)
    con = duckdb.connect(str(warehouse / "cdi.duckdb"))
    try:
        _run(con, pending_requests(con, requests, key_fingerprint(KEY)), warehouse)
        with pytest.raises(KeyMismatch, match="another pseudonymisation key"):
            pending_requests(con, requests, key_fingerprint("another key of 32 characters!!"))
    finally:
        con.close()
