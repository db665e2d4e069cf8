"""Enrichment layer: reference data added to every customer, and the quarterly snapshots."""

from datetime import UTC, datetime

import dagster as dg

from cdi_pipeline.defs.keys import (
    CUSTOMER_ENRICHMENT,
    CUSTOMER_SEGMENTS,
    CUSTOMER_SNAPSHOTS,
    CUSTOMERS,
    SEGMENT_SNAPSHOTS,
    XREF,
    XREF_SNAPSHOTS,
)
from cdi_pipeline.defs.matching.assets import models_dir
from cdi_pipeline.defs.shared.config import ReferenceDateConfig, run_date
from cdi_pipeline.defs.shared.metadata import table_metadata
from cdi_pipeline.defs.shared.resources import (
    WAREHOUSE_POOL,
    ReferenceResource,
    WarehouseResource,
)
from cdi_pipeline.lib.enrichment.enrich import (
    ENRICHMENT_COLUMNS,
    enrich_customers,
    previous_addresses,
    quarter_of,
    summarise_enrichment,
)
from cdi_pipeline.lib.enrichment.snapshots import SnapshotTags, quarters_kept, snapshot_writes
from cdi_pipeline.lib.matching.model_store import load_current_model
from cdi_pipeline.lib.registry import Registry
from cdi_pipeline.lib.storage import (
    TableWrite,
    frame_to_markdown,
    read_table,
    replace_partitions,
    replace_tables,
)


def build_enrichment_assets(registry: Registry) -> list[dg.AssetsDefinition]:
    """Customer enrichment and the quarterly snapshots for one registry."""

    @dg.asset(
        key=CUSTOMER_ENRICHMENT,
        group_name="enrichment",
        deps=[CUSTOMERS],
        kinds={"duckdb", "polars"},
        pool=WAREHOUSE_POOL,
        tags={"layer": "enrichment"},
    )
    def customer_enrichment(
        context: dg.AssetExecutionContext,
        config: ReferenceDateConfig,
        warehouse: WarehouseResource,
        reference: ReferenceResource,
    ) -> dg.MaterializeResult:
        """Region, province and municipality of the postcode, email domain type, phone line
        type, age band, and whether the address changed since last quarter's snapshot."""
        today = run_date(config, registry)
        quarter = quarter_of(today)
        provider = reference.provider()
        with warehouse.connect() as con:
            customers = read_table(con, "golden", "customers")
            previous = previous_addresses(con, quarter)
        table = enrich_customers(customers, previous, provider, today)
        write = TableWrite("enrichment", "customer_enrichment", table,
                           "Reference data added to every customer.", ENRICHMENT_COLUMNS)
        with warehouse.connect() as con:
            replace_tables(con, [write])
        context.log.info(f"enriched {table.height:,} customers for {quarter} "
                         f"(reference {provider.version()})")
        summary = summarise_enrichment(table)
        return dg.MaterializeResult(
            metadata={
                **table_metadata(write),
                "quarter": dg.MetadataValue.text(quarter),
                "reference_version": dg.MetadataValue.text(provider.version()),
                "coverage": dg.MetadataValue.md(frame_to_markdown(summary.coverage)),
                "per_region": dg.MetadataValue.md(frame_to_markdown(summary.per_region)),
                "address_changed": dg.MetadataValue.int(summary.address_changed),
                "compared_with_quarter": dg.MetadataValue.text(summary.compared_with_quarter),
            }
        )

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                XREF_SNAPSHOTS, group_name="enrichment", deps=[XREF], kinds={"duckdb"},
                tags={"layer": "enrichment"},
                description="The identity map as it was at each quarter, tagged with quarter "
                "and model version.",
            ),
            dg.AssetSpec(
                CUSTOMER_SNAPSHOTS, group_name="enrichment", deps=[CUSTOMERS], kinds={"duckdb"},
                tags={"layer": "enrichment"},
                description="Golden records as they were at each quarter (compare quarters, "
                "detect moves).",
            ),
            dg.AssetSpec(
                SEGMENT_SNAPSHOTS, group_name="enrichment", deps=[CUSTOMER_SEGMENTS],
                kinds={"duckdb"}, tags={"layer": "enrichment"},
                description="Segments as they were at each quarter, to reproduce a past "
                "campaign selection.",
            ),
        ],
        pool=WAREHOUSE_POOL,
        name="quarterly_snapshots",
    )
    def quarterly_snapshots(
        context: dg.AssetExecutionContext, config: ReferenceDateConfig,
        warehouse: WarehouseResource,
    ):
        quarter = quarter_of(run_date(config, registry))
        model = load_current_model(models_dir(warehouse))
        tags = SnapshotTags(quarter, model.version if model else None, context.run.run_id,
                            datetime.now(UTC).replace(tzinfo=None))
        with warehouse.connect() as con:
            writes = snapshot_writes(con, tags)
            replace_partitions(con, writes)
            quarters = quarters_kept(con)
        for write, key in zip(writes, (XREF_SNAPSHOTS, CUSTOMER_SNAPSHOTS, SEGMENT_SNAPSHOTS),
                              strict=True):
            yield dg.MaterializeResult(
                asset_key=key,
                metadata={
                    "quarter": dg.MetadataValue.text(quarter),
                    "rows_this_quarter": dg.MetadataValue.int(write.frame.height),
                    "quarters_kept": dg.MetadataValue.md(frame_to_markdown(quarters, 40)),
                    "dagster/table_name": dg.MetadataValue.text(f"cdi.{write.qualified}"),
                },
            )

    return [customer_enrichment, quarterly_snapshots]
