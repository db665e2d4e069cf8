"""The customer 360: golden record, behavioural features and segments in one row."""

from __future__ import annotations

import polars as pl

from cdi_pipeline.lib.golden.features import FEATURE_COLUMNS
from cdi_pipeline.lib.golden.survivorship import CUSTOMER_COLUMNS
from cdi_pipeline.lib.segments.segments import SEGMENT_COLUMNS


def build_customer_360(
    customers: pl.DataFrame, features: pl.DataFrame, segments: pl.DataFrame
) -> pl.DataFrame:
    """One row per golden customer; features and segments joined on customer_id."""
    feature_cols = [c for c in features.columns if c not in customers.columns]
    segment_cols = [
        c for c in segments.columns if c not in customers.columns and c not in feature_cols
    ]
    return (
        customers.join(features.select("customer_id", *feature_cols), on="customer_id",
                       how="left")
        .join(segments.select("customer_id", *segment_cols), on="customer_id", how="left")
        .sort("customer_id")
    )


def customer_360_descriptions() -> dict[str, str]:
    """Column descriptions of golden.customer_360 (those of the tables it joins)."""
    return {**SEGMENT_COLUMNS, **FEATURE_COLUMNS, **CUSTOMER_COLUMNS}
