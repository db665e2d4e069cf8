"""One erasure run: the requests not carried out yet, purged with their receipts and
suppression entries in one transaction, and the warehouse file rewritten afterwards.

The purge, its receipts and the suppression list commit together: a run killed after a purge
but before its suppression entries would let the next load bring the person back, and one
killed before its receipts would not retry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl

from cdi_pipeline.lib.governance.erasure import (
    REWRITE_OWED,
    bookkeeping_writes,
    purge_published_file,
    purge_rows,
    resolve_targets,
    rewrite_database,
    suppression_entries,
)
from cdi_pipeline.lib.published.analytics import ANALYTICS_FILE
from cdi_pipeline.lib.registry import Registry
from cdi_pipeline.lib.storage import table_exists, transaction, write_partitions


class KeyMismatch(RuntimeError):
    """The suppression list was hashed with another pseudonymisation key."""


def pending_requests(
    con: duckdb.DuckDBPyConnection, requests: pl.DataFrame, fingerprint: str
) -> pl.DataFrame:
    """The requests (`read_requests`) without a receipt in governance.erasure_receipts yet.

    Raises KeyMismatch when governance.suppression_list holds entries hashed with a key
    other than the one of `fingerprint`: with a new key, erased persons could come back.
    """
    done: set[str] = set()
    if table_exists(con, "governance", "erasure_receipts"):
        done = {r[0] for r in con.sql(
            "SELECT DISTINCT request_id FROM governance.erasure_receipts").fetchall()}
    if table_exists(con, "governance", "suppression_list"):
        other_keys = con.execute(
            "SELECT count(*) FROM governance.suppression_list WHERE key_fingerprint <> ?",
            [fingerprint],
        ).fetchall()[0][0]
        if other_keys:
            raise KeyMismatch(
                f"{other_keys} suppression entries were hashed with another "
                "pseudonymisation key; restore the previous CDI_PSEUDONYM_KEY (or the "
                "warehouse's .pseudonym_key), or erased persons could come back"
            )
    return requests.filter(~pl.col("request_id").is_in(sorted(done)))


@dataclass(frozen=True)
class ErasureOutcome:
    """What a run's erasures removed (counts, never values), and the bookkeeping totals."""

    removed: dict[str, int]
    suppression_entries: int
    requests_carried_out: int

    def rows_removed(self) -> pl.DataFrame:
        """Rows removed per table (schema.table) over this run's requests."""
        return pl.DataFrame({"item": list(self.removed), "rows": list(self.removed.values())})


def _receipt(request: dict, removed: dict[str, int], per: dict) -> pl.DataFrame:
    return pl.DataFrame({
        "request_id": request["request_id"],
        "requested_on": request["requested_on"],
        "identifier_type": request["identifier_type"],
        "item": list(removed) or ["(nothing found)"],
        "rows_removed": list(removed.values()) or [0],
        "customers_erased": per["customers"],
        "records_erased": per["records"],
    })


def carry_out_requests(
    con: duckdb.DuckDBPyConnection, pending: pl.DataFrame, registry: Registry, *,
    key: str, fingerprint: str, now: datetime, files: dict[str, int], root: Path,
    run_id: str, log: Callable[[str], None] = lambda message: None,
) -> ErasureOutcome:
    """Carry out the pending requests (`pending_requests`) in one transaction.

    Per request: resolve the person's records, events and customer ids, delete their rows
    from every table, and add keyed hashes of their record keys, emails and phones to the
    suppression list (`key`, `fingerprint`). The analyst file under `root` is purged before
    the commit and a rewrite is marked as owed (`rewrite_if_owed`). Receipts count the rows
    removed and the derived `files` removed before the run. On a first run without requests
    the empty bookkeeping tables are created. `log` gets one line per request.
    """
    receipts, entries, removed_total = [], [], {}
    with transaction(con):
        resolved = []
        for request in pending.iter_rows(named=True):
            # One request at a time (a handful per run): each receipt counts its rows.
            one = pending.filter(pl.col("request_id") == request["request_id"])
            targets = resolve_targets(con, one)
            removed = purge_rows(con, targets, registry, own_transaction=False)
            resolved.append(targets)
            entries.append(suppression_entries(targets, request["request_id"], key,
                                               fingerprint, now))
            per = targets.per_request.row(0, named=True)
            receipts.append(_receipt(request, removed, per))
            for table, rows in removed.items():
                removed_total[table] = removed_total.get(table, 0) + rows
            log(f"erasure {request['request_id']}: {per['customers']} customer(s), "
                f"{per['records']} record(s), {sum(removed.values())} rows removed")
        if resolved:
            purge_published_file(root / ANALYTICS_FILE, resolved)
            (root / REWRITE_OWED).touch()
        writes = bookkeeping_writes(con, receipts, entries, files, now, run_id)
        if writes:
            write_partitions(con, writes)
    entries_total = con.sql("SELECT count(*) FROM governance.suppression_list").fetchall()[0][0]
    requests_done = con.sql(
        "SELECT count(DISTINCT request_id) FROM governance.erasure_receipts"
    ).fetchall()[0][0]
    return ErasureOutcome(removed_total, entries_total, requests_done)


def rewrite_if_owed(root: Path, database: Path, lock_path: Path) -> bool:
    """Rewrite the warehouse file when an erasure left a rewrite owed (see REWRITE_OWED):
    deleted rows' bytes stay in DuckDB's free blocks until the file is rewritten. Returns
    whether it was rewritten."""
    if not (root / REWRITE_OWED).exists():
        return False
    rewrite_database(database, lock_path)
    (root / REWRITE_OWED).unlink()
    return True
