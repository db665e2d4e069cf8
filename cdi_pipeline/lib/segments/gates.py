"""The segments layer's gate on the stored segment rows (see `lib.gates`)."""

from __future__ import annotations

import duckdb

from cdi_pipeline.lib.gates import GateResult

EVERY_CUSTOMER_SEGMENTED = "every_customer_segmented"


def every_customer_segmented(con: duckdb.DuckDBPyConnection) -> GateResult:
    """Every golden customer has exactly one segment row, with an RFM segment, lifecycle
    stage, value tier and contactability."""
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
    return GateResult(
        EVERY_CUSTOMER_SEGMENTED, customers == rows and missing == incomplete == 0,
        f"{rows:,} segment rows for {customers:,} customers",
        figures={"customers": customers, "segment_rows": rows, "missing": missing,
                 "incomplete": incomplete},
    )
