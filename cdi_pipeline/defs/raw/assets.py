"""Raw layer: one asset per registered source, each file stored as it is in raw.<source>."""

import dagster as dg
import pandera.polars as pa
import polars as pl

from cdi_pipeline.defs.governance.assets import SUPPRESSION_LIST
from cdi_pipeline.defs.shared.metadata import table_metadata
from cdi_pipeline.defs.shared.resources import WAREHOUSE_POOL, WarehouseResource
from cdi_pipeline.lib.contracts import ROW_KEYS, failure_summary, raw_schema
from cdi_pipeline.lib.governance.erasure import suppressed_rows
from cdi_pipeline.lib.privacy import PERSONAL_FIELDS, pseudonym_key
from cdi_pipeline.lib.raw.sources import LINEAGE_COLUMNS, SourceFileError, load_source
from cdi_pipeline.lib.registry import Registry, Source
from cdi_pipeline.lib.storage import (
    TableWrite,
    frame_to_markdown,
    read_table,
    replace_tables,
    table_exists,
)


def _masked_preview(source: Source, frame: pl.DataFrame, rows: int = 5) -> str:
    """The first rows, personal fields masked: Dagster's event log is not the place for them."""
    personal = {col for field, col in source.fields.items() if field in PERSONAL_FIELDS}
    head = frame.head(rows).drop(list(LINEAGE_COLUMNS))
    masked = head.with_columns(
        (pl.col(c).cast(pl.String).str.slice(0, 1) + pl.lit("***")).alias(c)
        for c in head.columns
        if c in personal
    )
    return frame_to_markdown(masked)


def _column_descriptions(source: Source, frame: pl.DataFrame) -> dict[str, str]:
    described = {source.record_id: f"Record id in {source.name} (registry key record_id)."}
    for field, col in source.fields.items():
        described.setdefault(col, f"Source column mapped to canonical field {field}.")
    for name, col in source.identifiers.items():
        described.setdefault(col, f"Source identifier {name}.")
    for col in source.attributes:
        described.setdefault(col, "Attribute carried to the golden record.")
    if source.activity is not None:
        for col in source.activity.columns():
            described.setdefault(col, f"Behavioural column ({source.activity.kind}).")
    described.update(LINEAGE_COLUMNS)
    return {
        c: described.get(c, "Unmapped source column, kept as delivered.") for c in frame.columns
    }


def build_raw_asset(registry: Registry, source: Source) -> dg.AssetsDefinition:
    """The raw asset for one source: read, check and store its file in one transaction."""
    description = (
        f"{source.description or 'Source ' + source.name} "
        f"Raw copy of {source.path} ({source.format}), every column as delivered plus lineage."
    )

    @dg.asset(
        name=source.name,
        key_prefix="raw",
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
        try:
            raw_schema(source).validate(load.frame, lazy=True)
        except pa.errors.SchemaErrors as exc:
            counts, sample = failure_summary(exc, visible=ROW_KEYS | {source.record_id})
            raise SourceFileError(
                f"source {source.name!r}: file {load.path} breaks the raw contract, nothing was "
                f"written: {counts}\n{sample}"
            ) from None
        frame = load.frame
        with warehouse.connect() as con:
            suppression = (
                read_table(con, "governance", "suppression_list")
                if table_exists(con, "governance", "suppression_list")
                else None
            )
        suppressed = 0
        if suppression is not None and suppression.height:
            # Erased persons stay out: their rows are dropped (and counted) before storage.
            hit = suppressed_rows(
                frame, source.name, source.record_id, source.fields.get("email"),
                source.fields.get("phone"), source.country or "NL", suppression,
                pseudonym_key(warehouse.root),
            )
            suppressed = int(hit.sum())
            frame = frame.filter(~hit)
            if suppressed:
                context.log.info(f"{suppressed} row(s) of erased persons not loaded")
        write = TableWrite(
            schema="raw",
            name=source.name,
            frame=frame,
            description=description,
            column_descriptions=_column_descriptions(source, frame),
        )
        with warehouse.connect() as con:
            replace_tables(con, [write])
        return dg.MaterializeResult(
            metadata={
                **table_metadata(write),
                "file": dg.MetadataValue.path(str(load.path)),
                "file_sha256": dg.MetadataValue.text(load.file_hash),
                "file_bytes": dg.MetadataValue.int(load.size_bytes),
                "rows_in_file": dg.MetadataValue.int(load.frame.height),
                "rows_suppressed_by_erasure": dg.MetadataValue.int(suppressed),
                "preview": dg.MetadataValue.md(_masked_preview(source, frame)),
            },
            data_version=dg.DataVersion(load.file_hash),
        )

    return _raw_asset


def build_raw_assets(registry: Registry) -> list[dg.AssetsDefinition]:
    """One raw asset per registered source."""
    return [build_raw_asset(registry, source) for source in registry.sources]
