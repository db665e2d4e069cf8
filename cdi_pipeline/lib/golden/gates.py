"""The golden layer's gates on the stored golden records and their lineage (see
`lib.gates`)."""

from __future__ import annotations

import duckdb
import polars as pl

from cdi_pipeline.lib.gates import GateResult
from cdi_pipeline.lib.golden.survivorship import lineage_problems
from cdi_pipeline.lib.storage import quote_identifier

ONE_ROW_PER_CUSTOMER = "one_row_per_customer"
LINEAGE_COMPLETE = "lineage_complete"


def one_row_per_customer(con: duckdb.DuckDBPyConnection, table: str) -> GateResult:
    """golden.<table> holds exactly one row per distinct customer_id of the identity map."""
    expected, rows, distinct, missing, extra = con.sql(
        f"""
        WITH x AS (SELECT DISTINCT customer_id FROM matching.customer_xref),
             t AS (SELECT customer_id FROM golden.{quote_identifier(table)})
        SELECT (SELECT count(*) FROM x), (SELECT count(*) FROM t),
               (SELECT count(DISTINCT customer_id) FROM t),
               (SELECT count(*) FROM x ANTI JOIN t USING (customer_id)),
               (SELECT count(*) FROM t ANTI JOIN x USING (customer_id))
        """
    ).fetchall()[0]
    passed = expected == rows == distinct and missing == extra == 0
    return GateResult(
        ONE_ROW_PER_CUSTOMER, passed,
        f"{rows:,} rows for {expected:,} customer ids"
        + ("" if passed else f"; {missing} ids missing, {extra} unknown, "
           f"{rows - distinct} repeated"),
        figures={"customer_ids": expected, "rows": rows, "missing": missing,
                 "unknown": extra, "repeated": rows - distinct},
    )


def lineage_complete(con: duckdb.DuckDBPyConnection) -> GateResult:
    """Every non-null golden value has exactly one lineage row, and every lineage row
    explains a value."""
    problems = lineage_problems(con)
    return GateResult(
        LINEAGE_COMPLETE, problems.is_empty(),
        "complete" if problems.is_empty() else f"{problems.height} mismatches",
        figures={"mismatches": problems.height},
        tables={"per_field": problems.group_by("field").agg(pl.len().alias("problems"))
                .sort("field"),
                "examples": problems.head(10)},
    )
