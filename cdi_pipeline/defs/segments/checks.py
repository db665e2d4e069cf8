"""Gates on the segments layer: every customer segmented. (The exports' audit runs inside
their asset, before the published set is switched: see `activation_exports`.)"""

import dagster as dg

from cdi_pipeline.defs.keys import CUSTOMER_SEGMENTS
from cdi_pipeline.defs.shared.metadata import check_result
from cdi_pipeline.defs.shared.resources import WarehouseResource
from cdi_pipeline.lib.registry import Registry
from cdi_pipeline.lib.segments import gates


def build_segment_checks(registry: Registry) -> list[dg.AssetChecksDefinition]:
    """The segments layer's checks."""

    @dg.asset_check(
        asset=CUSTOMER_SEGMENTS,
        name=gates.EVERY_CUSTOMER_SEGMENTED,
        blocking=True,
        description="Every golden customer has exactly one segment row with an RFM segment, "
        "lifecycle stage, value tier and contactability.",
    )
    def every_customer_segmented(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.connect() as con:
            return check_result(gates.every_customer_segmented(con))

    return [every_customer_segmented]
