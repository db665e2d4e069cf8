"""Governance: erasure requests carried out, and the suppression list that keeps them done."""

from datetime import UTC, datetime

import dagster as dg
import polars as pl

from cdi_pipeline.defs.shared.resources import WAREHOUSE_POOL, WarehouseResource
from cdi_pipeline.lib.governance.erasure import (
    REWRITE_OWED,
    bookkeeping_writes,
    purge_published_file,
    purge_rows,
    read_requests,
    remove_derived_files,
    requests_file,
    resolve_targets,
    rewrite_database,
    suppression_entries,
)
from cdi_pipeline.lib.privacy import key_fingerprint, pseudonym_key
from cdi_pipeline.lib.published.analytics import ANALYTICS_FILE
from cdi_pipeline.lib.registry import Registry
from cdi_pipeline.lib.storage import (
    frame_to_markdown,
    table_exists,
    transaction,
    write_partitions,
)

SUPPRESSION_LIST = dg.AssetKey(["governance", "suppression_list"])
ERASURE_RECEIPTS = dg.AssetKey(["governance", "erasure_receipts"])


class KeyMismatch(RuntimeError):
    """The suppression list was hashed with another pseudonymisation key."""


def build_governance_assets(registry: Registry) -> list[dg.AssetsDefinition]:
    """The erasure step for one registry (it runs before any source is loaded)."""
    path = requests_file(registry)

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                SUPPRESSION_LIST, group_name="governance", kinds={"duckdb"},
                tags={"layer": "governance"},
                description="Keyed hashes of the record keys, emails and phones of erased "
                "persons; raw loading drops matching rows so a reload cannot bring them back.",
            ),
            dg.AssetSpec(
                ERASURE_RECEIPTS, group_name="governance", kinds={"duckdb"},
                tags={"layer": "governance"},
                description="What each erasure request removed: rows per table and files, "
                "never the data itself.",
            ),
        ],
        pool=WAREHOUSE_POOL,
        name="erasure",
    )
    def erasure(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        requests = read_requests(path)
        key = pseudonym_key(warehouse.root)
        fingerprint = key_fingerprint(key)
        now = datetime.now(UTC).replace(tzinfo=None)
        with warehouse.connect() as con:
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
            pending = requests.filter(~pl.col("request_id").is_in(sorted(done)))
        # Files derived from the data are rebuilt by this run; removed before the purge
        # commits, so a kill in between repeats it (and with no connection open: DuckDB
        # spills into one of these folders).
        files = remove_derived_files(warehouse.root) if pending.height else {}
        receipts, entries, removed_total = [], [], {}
        with warehouse.connect() as con:
            # The purge, its receipts and the suppression list commit together: a run killed
            # after a purge but before its suppression entries would let the next load bring
            # the person back, and one killed before its receipts would not retry.
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
                    receipts.append(pl.DataFrame({
                        "request_id": request["request_id"],
                        "requested_on": request["requested_on"],
                        "identifier_type": request["identifier_type"],
                        "item": list(removed) or ["(nothing found)"],
                        "rows_removed": list(removed.values()) or [0],
                        "customers_erased": per["customers"],
                        "records_erased": per["records"],
                    }))
                    for table, rows in removed.items():
                        removed_total[table] = removed_total.get(table, 0) + rows
                    context.log.info(
                        f"erasure {request['request_id']}: {per['customers']} customer(s), "
                        f"{per['records']} record(s), {sum(removed.values())} rows removed"
                    )
                if resolved:
                    purge_published_file(warehouse.root / ANALYTICS_FILE, resolved)
                    (warehouse.root / REWRITE_OWED).touch()
                writes = bookkeeping_writes(con, receipts, entries, files, now, context.run.run_id)
                if writes:
                    write_partitions(con, writes)
            entries_total = con.sql(
                "SELECT count(*) FROM governance.suppression_list").fetchall()[0][0]
            requests_done = con.sql(
                "SELECT count(DISTINCT request_id) FROM governance.erasure_receipts"
            ).fetchall()[0][0]
        if (warehouse.root / REWRITE_OWED).exists():
            # Deleted rows' bytes stay in DuckDB's free blocks until the file is rewritten.
            rewrite_database(warehouse.database_path, warehouse.root / ".cdi.lock")
            (warehouse.root / REWRITE_OWED).unlink()
        yield dg.MaterializeResult(
            asset_key=SUPPRESSION_LIST,
            metadata={
                "entries": dg.MetadataValue.int(entries_total),
                "key_fingerprint": dg.MetadataValue.text(fingerprint),
            },
        )
        yield dg.MaterializeResult(
            asset_key=ERASURE_RECEIPTS,
            metadata={
                "requests_file": dg.MetadataValue.path(str(path)),
                "requests_in_file": dg.MetadataValue.int(requests.height),
                "carried_out_this_run": dg.MetadataValue.int(pending.height),
                "carried_out_ever": dg.MetadataValue.int(requests_done),
                "rows_removed": dg.MetadataValue.md(
                    frame_to_markdown(pl.DataFrame({"item": list(removed_total),
                                                    "rows": list(removed_total.values())}))
                    if removed_total else "none"
                ),
                "files_removed": dg.MetadataValue.json(files),
            },
        )

    return [erasure]
