"""Quality layer: the data-quality profile of the cleaned records."""

import dagster as dg

from cdi_pipeline.defs.cleaned.assets import CUSTOMER_RECORDS, QUARANTINE
from cdi_pipeline.defs.shared.metadata import table_metadata
from cdi_pipeline.defs.shared.resources import WAREHOUSE_POOL, WarehouseResource
from cdi_pipeline.lib.profile import PROFILE_DESCRIPTIONS, field_profile, profile_markdown
from cdi_pipeline.lib.storage import TableWrite, read_table, replace_tables


@dg.asset(
    key=["quality", "field_profile"],
    group_name="quality",
    deps=[CUSTOMER_RECORDS, QUARANTINE],
    kinds={"duckdb", "polars"},
    pool=WAREHOUSE_POOL,
    tags={"layer": "quality"},
)
def field_profile_asset(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Completeness, validity and uniqueness per source and field, to see which source is weak."""
    with warehouse.connect() as con:
        records = read_table(con, "cleaned", "customer_records")
        quarantine = read_table(con, "quality", "quarantine")
        profile = field_profile(records, quarantine)
        write = TableWrite(
            "quality",
            "field_profile",
            profile,
            "Completeness, validity and uniqueness per source and field.",
            PROFILE_DESCRIPTIONS,
        )
        replace_tables(con, [write])
    return dg.MaterializeResult(
        metadata={
            **table_metadata(write),
            "profile": dg.MetadataValue.md(profile_markdown(profile)),
        }
    )
