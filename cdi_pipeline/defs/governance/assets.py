"""Governance: erasure requests carried out, and the suppression list that keeps them done."""

from datetime import UTC, datetime

import dagster as dg

from cdi_pipeline.defs.keys import ERASURE_RECEIPTS, SUPPRESSION_LIST
from cdi_pipeline.defs.shared.resources import WAREHOUSE_POOL, WarehouseResource
from cdi_pipeline.lib.governance.erasure import read_requests, remove_derived_files, requests_file
from cdi_pipeline.lib.governance.erasure_run import (
    carry_out_requests,
    pending_requests,
    rewrite_if_owed,
)
from cdi_pipeline.lib.privacy import key_fingerprint, pseudonym_key
from cdi_pipeline.lib.registry import Registry
from cdi_pipeline.lib.storage import frame_to_markdown


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
            pending = pending_requests(con, requests, fingerprint)
        # Files derived from the data are rebuilt by this run; removed before the purge
        # commits, so a kill in between repeats it (and with no connection open: DuckDB
        # spills into one of these folders).
        files = remove_derived_files(warehouse.root) if pending.height else {}
        with warehouse.connect() as con:
            outcome = carry_out_requests(
                con, pending, registry, key=key, fingerprint=fingerprint, now=now, files=files,
                root=warehouse.root, run_id=context.run.run_id, log=context.log.info,
            )
        rewrite_if_owed(warehouse.root, warehouse.database_path, warehouse.root / ".cdi.lock")
        yield dg.MaterializeResult(
            asset_key=SUPPRESSION_LIST,
            metadata={
                "entries": dg.MetadataValue.int(outcome.suppression_entries),
                "key_fingerprint": dg.MetadataValue.text(fingerprint),
            },
        )
        yield dg.MaterializeResult(
            asset_key=ERASURE_RECEIPTS,
            metadata={
                "requests_file": dg.MetadataValue.path(str(path)),
                "requests_in_file": dg.MetadataValue.int(requests.height),
                "carried_out_this_run": dg.MetadataValue.int(pending.height),
                "carried_out_ever": dg.MetadataValue.int(outcome.requests_carried_out),
                "rows_removed": dg.MetadataValue.md(
                    frame_to_markdown(outcome.rows_removed()) if outcome.removed else "none"
                ),
                "files_removed": dg.MetadataValue.json(files),
            },
        )

    return [erasure]
