"""The customer 360: golden record, behavioural features and segments in one row."""

from __future__ import annotations

import polars as pl

from cdi_pipeline.lib.enrichment.enrich import ENRICHMENT_COLUMNS
from cdi_pipeline.lib.golden.features import FEATURE_COLUMNS
from cdi_pipeline.lib.golden.survivorship import CUSTOMER_COLUMNS
from cdi_pipeline.lib.segments.segments import SEGMENT_COLUMNS


def build_customer_360(
    customers: pl.DataFrame, *parts: pl.DataFrame
) -> pl.DataFrame:
    """One row per golden customer; features, segments and enrichment joined on customer_id
    (a column already present from an earlier part is not repeated)."""
    table = customers
    for part in parts:
        new = [c for c in part.columns if c not in table.columns]
        table = table.join(part.select("customer_id", *new), on="customer_id", how="left")
    return table.sort("customer_id")


def customer_360_descriptions() -> dict[str, str]:
    """Column descriptions of golden.customer_360 (those of the tables it joins)."""
    return {**ENRICHMENT_COLUMNS, **SEGMENT_COLUMNS, **FEATURE_COLUMNS, **CUSTOMER_COLUMNS}
