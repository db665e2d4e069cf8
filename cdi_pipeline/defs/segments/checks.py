"""Gates on the segments layer: every customer segmented, exports hold only what may leave."""

import dagster as dg

from cdi_pipeline.defs.keys import ACTIVATION_EXPORTS, CUSTOMER_SEGMENTS
from cdi_pipeline.defs.segments.assets import exports_dir
from cdi_pipeline.defs.shared.resources import WarehouseResource
from cdi_pipeline.lib.registry import Registry
from cdi_pipeline.lib.segments.exports import CURRENT_LINK, export_problems
from cdi_pipeline.lib.storage import read_table

EVERY_CUSTOMER_SEGMENTED = "every_customer_segmented"
ONLY_CONTACTABLE_EXPORTED = "only_contactable_exported"


def build_segment_checks(registry: Registry) -> list[dg.AssetChecksDefinition]:
    """The segments layer's checks."""

    @dg.asset_check(
        asset=CUSTOMER_SEGMENTS,
        name=EVERY_CUSTOMER_SEGMENTED,
        blocking=True,
        description="Every golden customer has exactly one segment row with an RFM segment, "
        "lifecycle stage, value tier and contactability.",
    )
    def every_customer_segmented(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.connect() as con:
            customers, rows, missing, incomplete = con.sql(
                """
                SELECT (SELECT count(*) FROM golden.customers),
                       (SELECT count(*) FROM segments.customer_segments),
                       (SELECT count(*) FROM golden.customers
                        ANTI JOIN segments.customer_segments USING (customer_id)),
                       (SELECT count(*) FROM segments.customer_segments
                        WHERE rfm_segment IS NULL OR lifecycle_stage IS NULL
                           OR value_tier IS NULL OR contactability IS NULL)
                """
            ).fetchall()[0]
        passed = customers == rows and missing == 0 and incomplete == 0
        return dg.AssetCheckResult(
            passed=passed,
            description=f"{rows:,} segment rows for {customers:,} customers",
            metadata={"customers": customers, "segment_rows": rows, "missing": missing,
                      "incomplete": incomplete},
        )

    @dg.asset_check(
        asset=ACTIVATION_EXPORTS,
        name=ONLY_CONTACTABLE_EXPORTED,
        blocking=True,
        description="The export files hold every contactable customer once, nobody else, and "
        "only the configured campaign columns.",
    )
    def only_contactable_exported(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        folder = exports_dir(warehouse) / CURRENT_LINK
        with warehouse.connect() as con:
            table = read_table(con, "golden", "customer_360")
        problems = export_problems(folder.resolve(), table, registry.segments.exports)
        return dg.AssetCheckResult(
            passed=not problems,
            description="clean" if not problems else "; ".join(problems),
            metadata={"folder": dg.MetadataValue.path(str(folder)),
                      "problems": len(problems)},
        )

    return [every_customer_segmented, only_contactable_exported]
