"""Gates on the segments layer: every customer segmented. (The exports' audit runs inside
their asset, before the published set is switched: see `activation_exports`.)"""

import dagster as dg

from cdi_pipeline.defs.keys import CUSTOMER_SEGMENTS
from cdi_pipeline.defs.shared.resources import WarehouseResource
from cdi_pipeline.lib.registry import Registry

EVERY_CUSTOMER_SEGMENTED = "every_customer_segmented"


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

    return [every_customer_segmented]
