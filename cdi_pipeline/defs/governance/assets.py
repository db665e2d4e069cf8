"""Governance: erasure requests carried out, and the suppression list that keeps them done."""

from datetime import UTC, datetime

import dagster as dg
import duckdb
import polars as pl

from cdi_pipeline.defs.shared.resources import WAREHOUSE_POOL, WarehouseResource
from cdi_pipeline.lib.governance import (
    RECEIPT_COLUMNS,
    SUPPRESSION_COLUMNS,
    purge_rows,
    read_requests,
    remove_derived_files,
    requests_file,
    resolve_targets,
    rewrite_database,
    suppression_entries,
)
from cdi_pipeline.lib.privacy import key_fingerprint, pseudonym_key
from cdi_pipeline.lib.publish import ANALYTICS_FILE, STORAGE_VERSION
from cdi_pipeline.lib.registry import Registry
from cdi_pipeline.lib.storage import (
    PartitionWrite,
    frame_to_markdown,
    replace_partitions,
    table_exists,
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
            receipts, entries, removed_total, resolved = [], [], {}, []
            for request in pending.iter_rows(named=True):
                # One request at a time (a handful per run): each receipt counts its own rows.
                one = pending.filter(pl.col("request_id") == request["request_id"])
                targets = resolve_targets(con, one)
                removed = purge_rows(con, targets, registry)
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
        files: dict[str, int] = {}
        if receipts:
            files = remove_derived_files(warehouse.root)
            analytics = warehouse.root / ANALYTICS_FILE
            if analytics.exists():
                # The analyst file is rebuilt at the end of the run; until then it must not
                # hold the person either.
                published = duckdb.connect(str(analytics))
                try:
                    for targets in resolved:
                        purge_rows(published, targets, None)
                finally:
                    published.close()
                rewrite_database(analytics, storage_version=STORAGE_VERSION)
        with warehouse.connect() as con:
            writes = []
            if receipts:
                receipt_frame = pl.concat(receipts).with_columns(
                    pl.col("rows_removed", "customers_erased", "records_erased").cast(pl.Int64),
                    pl.col("requested_on").str.to_date(),
                    pl.lit(now).alias("processed_at"),
                    pl.lit(context.run.run_id).alias("run_id"),
                )
                file_rows = pl.DataFrame(
                    {"item": list(files), "rows_removed": list(files.values())},
                    schema={"item": pl.String, "rows_removed": pl.Int64},
                )
                first = receipt_frame.row(0, named=True)
                receipt_frame = pl.concat([
                    receipt_frame,
                    file_rows.with_columns(
                        *(pl.lit(first[c]).alias(c) for c in RECEIPT_COLUMNS
                          if c not in ("item", "rows_removed")),
                    ).select(list(RECEIPT_COLUMNS)),
                ], how="vertical_relaxed").select(list(RECEIPT_COLUMNS))
                writes.append(PartitionWrite("governance", "erasure_receipts", receipt_frame,
                                             "request_id", "What each erasure removed (counts "
                                             "only).", RECEIPT_COLUMNS))
                writes.append(PartitionWrite("governance", "suppression_list",
                                             pl.concat(entries), "request_id",
                                             "Keyed hashes that keep erased persons out.",
                                             SUPPRESSION_COLUMNS))
            else:
                for name, columns in (("erasure_receipts", RECEIPT_COLUMNS),
                                      ("suppression_list", SUPPRESSION_COLUMNS)):
                    if not table_exists(con, "governance", name):
                        empty = _empty(name)
                        writes.append(PartitionWrite("governance", name, empty, "request_id",
                                                     "Erasure bookkeeping.", columns))
            if writes:
                replace_partitions(con, writes)
            entries_total = con.sql(
                "SELECT count(*) FROM governance.suppression_list").fetchall()[0][0]
            requests_done = con.sql(
                "SELECT count(DISTINCT request_id) FROM governance.erasure_receipts"
            ).fetchall()[0][0]
        if receipts:
            # Deleted rows' bytes stay in DuckDB's free blocks until the file is rewritten.
            rewrite_database(warehouse.database_path, warehouse.root / ".cdi.lock")
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


def _empty(name: str) -> pl.DataFrame:
    if name == "erasure_receipts":
        return pl.DataFrame(schema={
            "request_id": pl.String, "requested_on": pl.Date, "identifier_type": pl.String,
            "item": pl.String, "rows_removed": pl.Int64, "customers_erased": pl.Int64,
            "records_erased": pl.Int64, "processed_at": pl.Datetime("us"), "run_id": pl.String,
        })
    return pl.DataFrame(schema={
        "request_id": pl.String, "kind": pl.String, "value_hash": pl.String,
        "key_fingerprint": pl.String, "added_at": pl.Datetime("us"),
    })
