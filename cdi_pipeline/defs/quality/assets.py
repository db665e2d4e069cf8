"""Quality layer: the data-quality profile of the cleaned records."""

import dagster as dg

from cdi_pipeline.defs.keys import CUSTOMER_RECORDS, FIELD_PROFILE, QUARANTINE
from cdi_pipeline.defs.shared.metadata import table_metadata
from cdi_pipeline.defs.shared.resources import WAREHOUSE_POOL, WarehouseResource
from cdi_pipeline.lib.quality.profile import PROFILE_DESCRIPTIONS, field_profile, profile_markdown
from cdi_pipeline.lib.storage import TableWrite, frame_to_markdown, replace_tables

INVALID_VALUE_SHARE = "invalid_value_share"

# A field losing this share of its delivered values is worth a look, not a stop.
INVALID_VALUE_WARNING = 0.2


@dg.asset(
    key=FIELD_PROFILE,
    group_name="quality",
    deps=[CUSTOMER_RECORDS, QUARANTINE],
    kinds={"duckdb"},
    pool=WAREHOUSE_POOL,
    tags={"layer": "quality"},
)
def field_profile_asset(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Completeness, validity and uniqueness per source and field, to see which source is weak."""
    with warehouse.connect() as con:
        profile = field_profile(con)
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


@dg.asset_check(
    asset=FIELD_PROFILE,
    name=INVALID_VALUE_SHARE,
    blocking=False,
    description="Warns when a source loses more than "
    f"{INVALID_VALUE_WARNING:.0%} of a field's delivered values to cleaning rules.",
)
def invalid_value_share_check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """Weak source fields, read from the stored profile (no second pass over the records)."""
    with warehouse.connect() as con:
        weak = con.sql(
            "SELECT source, field, filled, invalid, validity FROM quality.field_profile "
            "WHERE validity < ? ORDER BY source, field",
            params=[1 - INVALID_VALUE_WARNING],
        ).pl()
    return dg.AssetCheckResult(
        passed=weak.height == 0,
        severity=dg.AssetCheckSeverity.WARN,
        description="no field above the invalid-value share"
        if weak.height == 0
        else f"{weak.height} source field(s) with many invalid values",
        metadata={
            "weak_fields": dg.MetadataValue.md(
                frame_to_markdown(weak) if weak.height else "(none)"
            ),
            "weak_field_count": dg.MetadataValue.int(weak.height),
            "invalid_values": dg.MetadataValue.int(int(weak.get_column("invalid").sum() or 0)),
        },
    )
