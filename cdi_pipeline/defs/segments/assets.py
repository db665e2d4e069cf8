"""Segments layer: customer segments, their summary and chart, and activation exports."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl

from cdi_pipeline.defs.keys import (
    ACTIVATION_EXPORTS,
    CUSTOMER_360,
    CUSTOMER_FEATURES,
    CUSTOMER_SEGMENTS,
    CUSTOMERS,
    SEGMENT_SUMMARY,
)
from cdi_pipeline.defs.shared.metadata import table_metadata
from cdi_pipeline.defs.shared.resources import WAREHOUSE_POOL, WarehouseResource
from cdi_pipeline.lib.registry import Registry
from cdi_pipeline.lib.segments.charts import markdown_bars, write_summary_chart
from cdi_pipeline.lib.segments.exports import CURRENT_LINK, ExportRefused, publish_exports
from cdi_pipeline.lib.segments.segments import (
    SEGMENT_COLUMNS,
    SUMMARY_COLUMNS,
    segment_customers,
)
from cdi_pipeline.lib.storage import TableWrite, frame_to_markdown, read_table, replace_tables

ONLY_CONTACTABLE_EXPORTED = "only_contactable_exported"
EXPORT_MANIFEST_COLUMNS = {
    "segment": "Segment the files hold.",
    "customers": "Contactable customers in the files.",
    "csv": "CSV file name inside the export folder.",
    "parquet": "Parquet file name inside the export folder.",
    "folder": "Folder the files were published to (exports/activation points at it).",
    "run_id": "Dagster run that wrote the files.",
}


def exports_dir(warehouse: WarehouseResource) -> Path:
    """Folder of the activation exports (`activation` links to the current set)."""
    return warehouse.root / "exports"


def reports_dir(warehouse: WarehouseResource) -> Path:
    """Folder of the segments layer's HTML charts."""
    return warehouse.root / "reports" / "segments"


def build_segment_assets(registry: Registry) -> list[dg.AssetsDefinition]:
    """Segments, their summary and the activation exports for one registry."""
    cfg = registry.segments

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                CUSTOMER_SEGMENTS,
                group_name="segments",
                deps=[CUSTOMER_FEATURES, CUSTOMERS],
                kinds={"duckdb", "polars"},
                tags={"layer": "segments"},
                description="Per customer: RFM scores and named RFM segment, lifecycle stage, "
                "value tier and contactability (consent plus a valid channel), as defined in "
                "the registry's segments section.",
            ),
            dg.AssetSpec(
                SEGMENT_SUMMARY,
                group_name="segments",
                deps=[CUSTOMER_FEATURES, CUSTOMERS],
                kinds={"duckdb", "polars"},
                tags={"layer": "segments"},
                description="Customers, share, contactable customers, revenue and mean orders "
                "per segment of every dimension, with a chart.",
            ),
        ],
        pool=WAREHOUSE_POOL,
        name="customer_segments",
    )
    def customer_segments(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        with warehouse.connect() as con:
            features = read_table(con, "golden", "customer_features")
            customers = con.sql(
                "SELECT customer_id, email, phone, phone_type FROM golden.customers"
            ).pl()
        result = segment_customers(features, customers, cfg)
        writes = [
            TableWrite("segments", "customer_segments", result.segments,
                       "RFM, lifecycle, value tier and contactability per customer.",
                       SEGMENT_COLUMNS),
            TableWrite("segments", "segment_summary", result.summary,
                       "Size, reach and revenue of every segment.", SUMMARY_COLUMNS),
        ]
        with warehouse.connect() as con:
            replace_tables(con, writes)
        chart_path = reports_dir(warehouse) / "segment_summary.html"
        spec = write_summary_chart(result.summary, chart_path)
        context.log.info(f"{result.segments.height:,} customers segmented; chart at {chart_path}")
        yield dg.MaterializeResult(
            asset_key=CUSTOMER_SEGMENTS,
            metadata={
                **table_metadata(writes[0]),
                "contactable": dg.MetadataValue.int(result.contactable),
                "rfm_cells": dg.MetadataValue.int(result.rfm_cells),
                "reference_date": dg.MetadataValue.text(result.reference_date),
            },
        )
        yield dg.MaterializeResult(
            asset_key=SEGMENT_SUMMARY,
            metadata={
                **table_metadata(writes[1]),
                "summary": dg.MetadataValue.md(markdown_bars(result.summary)),
                "chart": dg.MetadataValue.path(str(chart_path)),
                "chart_vega_lite": dg.MetadataValue.json(spec),
            },
        )

    @dg.asset(
        key=ACTIVATION_EXPORTS,
        group_name="segments",
        deps=[CUSTOMER_360],
        kinds={"csv", "parquet"},
        pool=WAREHOUSE_POOL,
        tags={"layer": "segments"},
        check_specs=[dg.AssetCheckSpec(
            ONLY_CONTACTABLE_EXPORTED, asset=ACTIVATION_EXPORTS,
            description="The staged files hold every contactable customer once, nobody else, "
            "only the configured columns, and no e-mail, phone, IBAN or address outside the "
            "contact columns; they are published only then (a failure keeps the previous set).",
        )],
    )
    def activation_exports(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        """CSV and Parquet per segment for CRM and marketing tools: only customers who opted
        in and have a valid channel, only the campaign columns configured in the registry;
        audited before the published set is switched to them."""
        run_id = context.run.run_id
        with warehouse.connect() as con:
            table = read_table(con, "golden", "customer_360")
        try:
            result = publish_exports(table, cfg.exports, exports_dir(warehouse), run_id)
        except ExportRefused as refused:
            yield _export_audit(refused.problems)
            raise dg.Failure(description=str(refused), allow_retries=False) from None
        manifest = result.manifest.with_columns(
            pl.lit(str(result.folder)).alias("folder"), pl.lit(run_id).alias("run_id")
        )
        write = TableWrite("segments", "activation_exports", manifest,
                           "Activation files of the latest export, one row per segment.",
                           EXPORT_MANIFEST_COLUMNS)
        with warehouse.connect() as con:
            replace_tables(con, [write])
        exported = int(manifest.get_column("customers").sum())
        context.log.info(f"exported {exported:,} contactable customers in {manifest.height} "
                         f"segments to {result.folder}")
        yield dg.MaterializeResult(metadata={
            **table_metadata(write),
            "folder": dg.MetadataValue.path(str(exports_dir(warehouse) / CURRENT_LINK)),
            "split_by": dg.MetadataValue.text(cfg.exports.by),
            "columns": dg.MetadataValue.text(", ".join(cfg.exports.columns)),
            "customers_exported": dg.MetadataValue.int(exported),
            "files": dg.MetadataValue.md(frame_to_markdown(manifest, 40)),
        }, check_results=[_export_audit([])])

    return [customer_segments, activation_exports]


def _export_audit(problems: list[str]) -> dg.AssetCheckResult:
    """The staged export's audit as the UI shows it (by place and kind, never the values)."""
    return dg.AssetCheckResult(
        check_name=ONLY_CONTACTABLE_EXPORTED, passed=not problems,
        description="; ".join(problems) if problems else "clean",
        metadata={"problems": dg.MetadataValue.int(len(problems))},
    )
