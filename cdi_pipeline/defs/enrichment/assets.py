"""Enrichment layer: reference data added to every customer, and the quarterly snapshots."""

from datetime import UTC, datetime

import dagster as dg
import polars as pl

from cdi_pipeline.defs.golden.assets import CUSTOMER_ENRICHMENT, CUSTOMER_SEGMENTS, CUSTOMERS
from cdi_pipeline.defs.matching.assets import XREF, models_dir
from cdi_pipeline.defs.shared.config import ReferenceDateConfig, run_date
from cdi_pipeline.defs.shared.metadata import table_metadata
from cdi_pipeline.defs.shared.resources import (
    WAREHOUSE_POOL,
    ReferenceResource,
    WarehouseResource,
)
from cdi_pipeline.lib.enrichment.enrich import (
    ENRICHMENT_COLUMNS,
    address_key,
    enrich_customers,
    quarter_of,
)
from cdi_pipeline.lib.golden.survivorship import CUSTOMER_COLUMNS
from cdi_pipeline.lib.matching.model_store import load_current_model
from cdi_pipeline.lib.matching.tables import XREF_COLUMNS
from cdi_pipeline.lib.registry import Registry
from cdi_pipeline.lib.segments.segments import SEGMENT_COLUMNS
from cdi_pipeline.lib.storage import (
    PartitionWrite,
    TableWrite,
    frame_to_markdown,
    read_table,
    replace_partitions,
    replace_tables,
    table_exists,
)

XREF_SNAPSHOTS = dg.AssetKey(["golden", "customer_xref_snapshots"])
CUSTOMER_SNAPSHOTS = dg.AssetKey(["golden", "customer_snapshots"])
SEGMENT_SNAPSHOTS = dg.AssetKey(["segments", "customer_segment_snapshots"])

SNAPSHOT_COLUMNS = {
    "quarter": "Quarter the snapshot belongs to, e.g. 2026Q4 (a later run in the same quarter "
    "replaces it).",
    "model_version": "Matching model version the identity map was built with.",
    "snapshot_run_id": "Dagster run that took the snapshot.",
    "snapshot_at": "When the snapshot was taken (UTC).",
}


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
            previous = None
            if table_exists(con, "golden", "customer_snapshots"):
                # The latest quarter before this one: a re-run within a quarter compares
                # against the previous quarter, not against its own earlier snapshot.
                previous = con.sql(
                    "SELECT * FROM golden.customer_snapshots WHERE quarter = "
                    "(SELECT max(quarter) FROM golden.customer_snapshots WHERE quarter < $q)",
                    params={"q": quarter},
                ).pl()
                previous = previous.select(
                    "customer_id", "quarter", address_key().alias("address_key")
                )
        table = enrich_customers(customers, previous, provider, today)
        write = TableWrite("enrichment", "customer_enrichment", table,
                           "Reference data added to every customer.", ENRICHMENT_COLUMNS)
        with warehouse.connect() as con:
            replace_tables(con, [write])
        context.log.info(f"enriched {table.height:,} customers for {quarter} "
                         f"(reference {provider.version()})")
        coverage = table.select(
            pl.col(c).is_not_null().mean().round(4).alias(c)
            for c in ("municipality", "province", "email_domain_type", "age_band")
        ).unpivot(variable_name="column", value_name="filled_share")
        return dg.MaterializeResult(
            metadata={
                **table_metadata(write),
                "quarter": dg.MetadataValue.text(quarter),
                "reference_version": dg.MetadataValue.text(provider.version()),
                "coverage": dg.MetadataValue.md(frame_to_markdown(coverage)),
                "per_region": dg.MetadataValue.md(frame_to_markdown(
                    table.group_by("region").agg(pl.len().alias("customers")).sort("region")
                )),
                "address_changed": dg.MetadataValue.int(
                    int(table.get_column("address_changed").fill_null(False).sum())
                ),
                "compared_with_quarter": dg.MetadataValue.text(
                    str(table.get_column("previous_quarter").drop_nulls().max() or "none")
                ),
            }
        )

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                XREF_SNAPSHOTS, group_name="golden", deps=[XREF], kinds={"duckdb"},
                tags={"layer": "golden"},
                description="The identity map as it was at each quarter, tagged with quarter "
                "and model version.",
            ),
            dg.AssetSpec(
                CUSTOMER_SNAPSHOTS, group_name="golden", deps=[CUSTOMERS], kinds={"duckdb"},
                tags={"layer": "golden"},
                description="Golden records as they were at each quarter (compare quarters, "
                "detect moves).",
            ),
            dg.AssetSpec(
                SEGMENT_SNAPSHOTS, group_name="segments", deps=[CUSTOMER_SEGMENTS],
                kinds={"duckdb"}, tags={"layer": "segments"},
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
        tags = {
            "quarter": quarter,
            "model_version": model.version if model else None,
            "snapshot_run_id": context.run.run_id,
            "snapshot_at": datetime.now(UTC).replace(tzinfo=None),
        }

        def tagged(frame: pl.DataFrame) -> pl.DataFrame:
            # The snapshot's own tags replace same-named columns (the xref's model_version).
            return frame.select(
                *(pl.lit(v).alias(k) for k, v in tags.items()),
                *(c for c in frame.columns if c not in tags),
            ).with_columns(pl.col("model_version").cast(pl.String))

        with warehouse.connect() as con:
            writes = [
                PartitionWrite("golden", "customer_xref_snapshots",
                               tagged(read_table(con, "golden", "customer_xref")), "quarter",
                               "The identity map at each quarter.",
                               {**XREF_COLUMNS, **SNAPSHOT_COLUMNS}),
                PartitionWrite("golden", "customer_snapshots",
                               tagged(read_table(con, "golden", "customers")), "quarter",
                               "Golden records at each quarter.",
                               {**CUSTOMER_COLUMNS, **SNAPSHOT_COLUMNS}),
                PartitionWrite("segments", "customer_segment_snapshots",
                               tagged(read_table(con, "segments", "customer_segments")),
                               "quarter", "Segments at each quarter.",
                               {**SEGMENT_COLUMNS, **SNAPSHOT_COLUMNS}),
            ]
            replace_partitions(con, writes)
            quarters = con.sql(
                "SELECT quarter, count(*) AS customers, any_value(model_version) AS model_version "
                "FROM golden.customer_snapshots GROUP BY quarter ORDER BY quarter"
            ).pl()
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
