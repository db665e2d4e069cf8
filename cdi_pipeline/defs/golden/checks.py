"""Gates on the golden layer: one record per customer id, complete field lineage."""

import dagster as dg
import polars as pl

from cdi_pipeline.defs.keys import CUSTOMER_360, CUSTOMERS, FIELD_LINEAGE
from cdi_pipeline.defs.shared.resources import WarehouseResource
from cdi_pipeline.lib.golden.survivorship import lineage_problems
from cdi_pipeline.lib.storage import frame_to_markdown

ONE_ROW_PER_CUSTOMER = "one_row_per_customer"
LINEAGE_COMPLETE = "lineage_complete"


def _customer_count_check(asset: dg.AssetKey, table: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset,
        name=ONE_ROW_PER_CUSTOMER,
        blocking=True,
        description=f"golden.{table} holds exactly one row per distinct customer_id of "
        "matching.customer_xref.",
    )
    def _check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.connect() as con:
            expected, rows, distinct, missing, extra = con.sql(
                f"""
                WITH x AS (SELECT DISTINCT customer_id FROM matching.customer_xref),
                     t AS (SELECT customer_id FROM golden.{table})
                SELECT (SELECT count(*) FROM x), (SELECT count(*) FROM t),
                       (SELECT count(DISTINCT customer_id) FROM t),
                       (SELECT count(*) FROM x ANTI JOIN t USING (customer_id)),
                       (SELECT count(*) FROM t ANTI JOIN x USING (customer_id))
                """
            ).fetchall()[0]
        passed = expected == rows == distinct and missing == extra == 0
        return dg.AssetCheckResult(
            passed=passed,
            description=f"{rows:,} rows for {expected:,} customer ids"
            + ("" if passed else f"; {missing} ids missing, {extra} unknown, "
               f"{rows - distinct} repeated"),
            metadata={"customer_ids": expected, "rows": rows, "missing": missing,
                      "unknown": extra, "repeated": rows - distinct},
        )

    return _check


# On the golden records, not on field_lineage that nothing reads: a golden value without its
# provenance must hold back everything built from the golden records.
@dg.asset_check(
    asset=CUSTOMERS,
    name=LINEAGE_COMPLETE,
    blocking=True,
    additional_deps=[FIELD_LINEAGE],
    description="Every non-null golden value has exactly one lineage row in "
    "golden.field_lineage, and every lineage row explains a value.",
)
def lineage_complete(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect() as con:
        problems = lineage_problems(con)
    per_field = problems.group_by("field").agg(pl.len().alias("problems")).sort("field")
    return dg.AssetCheckResult(
        passed=problems.is_empty(),
        description="complete" if problems.is_empty() else f"{problems.height} mismatches",
        metadata={
            "mismatches": problems.height,
            "per_field": dg.MetadataValue.md(frame_to_markdown(per_field) if not
                                             per_field.is_empty() else "none"),
            "examples": dg.MetadataValue.md(frame_to_markdown(problems, 10)
                                            if not problems.is_empty() else "none"),
        },
    )


def build_golden_checks() -> list[dg.AssetChecksDefinition]:
    """The golden layer's checks."""
    return [
        _customer_count_check(CUSTOMERS, "customers"),
        _customer_count_check(CUSTOMER_360, "customer_360"),
        lineage_complete,
    ]
