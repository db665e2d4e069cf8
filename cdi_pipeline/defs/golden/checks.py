"""Gates on the golden layer: one record per customer id, complete field lineage."""

import dagster as dg

from cdi_pipeline.defs.keys import CUSTOMER_360, CUSTOMERS, FIELD_LINEAGE
from cdi_pipeline.defs.shared.metadata import check_result
from cdi_pipeline.defs.shared.resources import WarehouseResource
from cdi_pipeline.lib.golden import gates


def _customer_count_check(asset: dg.AssetKey, table: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset,
        name=gates.ONE_ROW_PER_CUSTOMER,
        blocking=True,
        description=f"golden.{table} holds exactly one row per distinct customer_id of "
        "matching.customer_xref.",
    )
    def _check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.connect() as con:
            return check_result(gates.one_row_per_customer(con, table))

    return _check


# On the golden records, not on field_lineage that nothing reads: a golden value without its
# provenance must hold back everything built from the golden records.
@dg.asset_check(
    asset=CUSTOMERS,
    name=gates.LINEAGE_COMPLETE,
    blocking=True,
    additional_deps=[FIELD_LINEAGE],
    description="Every non-null golden value has exactly one lineage row in "
    "golden.field_lineage, and every lineage row explains a value.",
)
def lineage_complete(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect() as con:
        return check_result(gates.lineage_complete(con))


def build_golden_checks() -> list[dg.AssetChecksDefinition]:
    """The golden layer's checks."""
    return [
        _customer_count_check(CUSTOMERS, "customers"),
        _customer_count_check(CUSTOMER_360, "customer_360"),
        lineage_complete,
    ]
