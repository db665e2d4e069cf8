"""Raw layer: one asset per registered source, each file stored as it is in raw.<source>."""

import dagster as dg

from cdi_pipeline.defs.keys import SUPPRESSION_LIST, raw_key
from cdi_pipeline.defs.shared.metadata import table_metadata
from cdi_pipeline.defs.shared.resources import WAREHOUSE_POOL, WarehouseResource
from cdi_pipeline.lib.governance.erasure import read_suppression_list
from cdi_pipeline.lib.privacy import pseudonym_key
from cdi_pipeline.lib.raw.batch import (
    masked_preview,
    prepare_raw_batch,
    raw_column_descriptions,
    raw_description,
)
from cdi_pipeline.lib.raw.sources import load_source
from cdi_pipeline.lib.registry import Registry, Source
from cdi_pipeline.lib.storage import TableWrite, replace_tables


def build_raw_asset(registry: Registry, source: Source) -> dg.AssetsDefinition:
    """The raw asset for one source: read, check and store its file in one transaction."""
    description = raw_description(source)

    @dg.asset(
        key=raw_key(source.name),
        group_name="raw",
        description=description,
        kinds={"duckdb", "polars", source.format},
        pool=WAREHOUSE_POOL,
        tags={"layer": "raw"},
        metadata={"source_path": str(registry.file_of(source))},
        deps=[SUPPRESSION_LIST],
    )
    def _raw_asset(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        load = load_source(registry, source, run_id=context.run.run_id)
        context.log.info(f"read {load.frame.height} rows from {load.path}")
        with warehouse.connect() as con:
            suppression = read_suppression_list(con)
        # Erased persons stay out: their rows are dropped (and counted) before storage.
        batch = prepare_raw_batch(load, source, suppression,
                                  key=lambda: pseudonym_key(warehouse.root))
        if batch.suppressed:
            context.log.info(f"{batch.suppressed} row(s) of erased persons not loaded")
        write = TableWrite(
            schema="raw",
            name=source.name,
            frame=batch.frame,
            description=description,
            column_descriptions=raw_column_descriptions(source, batch.frame),
        )
        with warehouse.connect() as con:
            replace_tables(con, [write])
        return dg.MaterializeResult(
            metadata={
                **table_metadata(write),
                "file": dg.MetadataValue.path(str(load.path)),
                "file_sha256": dg.MetadataValue.text(load.file_hash),
                "file_bytes": dg.MetadataValue.int(load.size_bytes),
                "rows_in_file": dg.MetadataValue.int(batch.rows_in_file),
                "rows_suppressed_by_erasure": dg.MetadataValue.int(batch.suppressed),
                "preview": dg.MetadataValue.md(masked_preview(source, batch.frame)),
            },
            data_version=dg.DataVersion(load.file_hash),
        )

    return _raw_asset


def build_raw_assets(registry: Registry) -> list[dg.AssetsDefinition]:
    """One raw asset per registered source."""
    return [build_raw_asset(registry, source) for source in registry.sources]
