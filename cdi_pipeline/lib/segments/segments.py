"""Customer segments from features and golden contact data: RFM, lifecycle, value, contact.

Definitions come from the registry's `segments:` section. Scores are quantile bins over the
customers who ordered, so they adapt to the business: R from recency (recent is high), F from
order count, M from revenue. Tied values share a score (rank by minimum), so one order is
always F = 1 however many customers have one order.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from cdi_pipeline.lib.registry import SegmentsConfig

SEGMENT_COLUMNS = {
    "customer_id": "Customer the segments describe.",
    "recency_score": "R score, 1 (longest ago) to rfm_bins (most recent); null without orders.",
    "frequency_score": "F score, 1 (fewest orders) to rfm_bins; null without orders.",
    "monetary_score": "M score, 1 (lowest revenue) to rfm_bins; null without orders.",
    "rfm_cell": "R, F and M scores as one code, e.g. '545'.",
    "rfm_segment": "Named RFM segment (champions, loyal, at_risk, ...); no_orders without "
    "orders.",
    "lifecycle_stage": "prospect (never ordered), new, active, lapsing or lapsed.",
    "value_tier": "Revenue tier among buyers (platinum, gold, ...); none without orders.",
    "marketing_consent": "Latest marketing opt-in (null: never asked).",
    "has_email": "The golden record has a valid email address.",
    "has_mobile": "The golden record has a mobile phone number.",
    "contact_channels": "Channels a campaign may use: email, sms, both ('email,sms') or none.",
    "contactability": "contactable, no_consent (opted out), consent_unknown (never asked) or "
    "no_channel (consent but no valid email or mobile).",
    "contactable": "Consent given and at least one valid channel.",
    "reference_date": "The 'today' the segments were computed for.",
}

SUMMARY_COLUMNS = {
    "dimension": "Segment dimension: rfm_segment, lifecycle_stage, value_tier or "
    "contactability.",
    "segment": "Segment within the dimension.",
    "description": "What the segment means.",
    "customers": "Customers in the segment.",
    "share": "Share of all customers in the segment.",
    "contactable": "Customers in the segment a campaign may contact.",
    "revenue": "Total revenue of the segment's customers.",
    "average_orders": "Mean order count of the segment's customers.",
    "average_recency_days": "Mean days since the last order (buyers only).",
}

SEGMENT_DIMENSIONS = ("rfm_segment", "lifecycle_stage", "value_tier", "contactability")

_FIXED_DESCRIPTIONS = {
    ("rfm_segment", "no_orders"): "Never ordered.",
    ("lifecycle_stage", "prospect"): "Known customer who never ordered.",
    ("lifecycle_stage", "new"): "First order recently.",
    ("lifecycle_stage", "active"): "Ordered within the active window.",
    ("lifecycle_stage", "lapsing"): "Last order beyond the active window.",
    ("lifecycle_stage", "lapsed"): "Last order beyond the lapsing window.",
    ("value_tier", "none"): "No revenue.",
    ("contactability", "contactable"): "Opted in and reachable by email or sms.",
    ("contactability", "no_consent"): "Opted out of marketing.",
    ("contactability", "consent_unknown"): "Never asked for consent.",
    ("contactability", "no_channel"): "Opted in but no valid email or mobile number.",
}


def _score(value: pl.Expr, bins: int, buyers: pl.Expr) -> pl.Expr:
    """Quantile bin 1..bins of `value` among buyers; ties share the lower bin."""
    rank = value.rank("min").over(buyers)
    count = buyers.sum()
    return pl.when(buyers).then(((rank - 1) * bins / count).floor().cast(pl.Int32) + 1)


def build_segments(
    features: pl.DataFrame, customers: pl.DataFrame, config: SegmentsConfig
) -> pl.DataFrame:
    """One segment row per customer of `features`."""
    bins = config.rfm_bins
    buyers = pl.col("order_count") > 0
    frame = features.join(
        customers.select("customer_id", "email", "phone", "phone_type"),
        on="customer_id",
        how="left",
    ).with_columns(
        # Recent is good: rank the negated recency so the most recent get the top bin.
        _score(-pl.col("days_since_last_order"), bins, buyers).alias("recency_score"),
        _score(pl.col("order_count"), bins, buyers).alias("frequency_score"),
        _score(pl.col("revenue"), bins, buyers).alias("monetary_score"),
    )
    segment = pl.when(~buyers).then(pl.lit("no_orders"))
    for seg in config.rfm_segments:
        inside = (
            pl.col("recency_score").is_between(seg.recency.min, seg.recency.max)
            & pl.col("frequency_score").is_between(seg.frequency.min, seg.frequency.max)
            & pl.col("monetary_score").is_between(seg.monetary.min, seg.monetary.max)
        )
        segment = segment.when(inside).then(pl.lit(seg.name))
    life = config.lifecycle
    lifecycle = (
        pl.when(~buyers)
        .then(pl.lit("prospect"))
        .when(pl.col("days_since_first_order") <= life.new_days)
        .then(pl.lit("new"))
        .when(pl.col("days_since_last_order") <= life.active_days)
        .then(pl.lit("active"))
        .when(pl.col("days_since_last_order") <= life.lapsing_days)
        .then(pl.lit("lapsing"))
        .otherwise(pl.lit("lapsed"))
    )
    # Value tier by revenue rank among buyers: rank 1 is the top spender.
    revenue_rank = pl.col("revenue").rank("min", descending=True).over(buyers)
    top_share = revenue_rank / buyers.sum()
    tier = pl.when(~buyers).then(pl.lit("none"))
    for t in config.value_tiers:
        tier = tier.when(top_share <= t.top_share).then(pl.lit(t.name))
    has_email = pl.col("email").is_not_null()
    has_mobile = pl.col("phone").is_not_null() & (pl.col("phone_type") == "mobile")
    channels = pl.concat_str(
        [pl.when(has_email).then(pl.lit("email")), pl.when(has_mobile).then(pl.lit("sms"))],
        separator=",",
        ignore_nulls=True,
    )
    contactability = (
        pl.when(pl.col("marketing_consent").is_null())
        .then(pl.lit("consent_unknown"))
        .when(~pl.col("marketing_consent"))
        .then(pl.lit("no_consent"))
        .when(~(has_email | has_mobile))
        .then(pl.lit("no_channel"))
        .otherwise(pl.lit("contactable"))
    )
    return (
        frame.with_columns(
            segment.otherwise(pl.lit(config.rfm_segments[-1].name)).alias("rfm_segment"),
            pl.when(buyers)
            .then(
                pl.concat_str(
                    pl.col("recency_score"), pl.col("frequency_score"), pl.col("monetary_score")
                )
            )
            .alias("rfm_cell"),
            lifecycle.alias("lifecycle_stage"),
            tier.alias("value_tier"),
            has_email.alias("has_email"),
            has_mobile.alias("has_mobile"),
            pl.when(channels == "").then(pl.lit("none")).otherwise(channels)
            .alias("contact_channels"),
            contactability.alias("contactability"),
        )
        .with_columns((pl.col("contactability") == "contactable").alias("contactable"))
        .select(list(SEGMENT_COLUMNS))
        .sort("customer_id")
    )


def segment_descriptions(config: SegmentsConfig) -> dict[tuple[str, str], str]:
    """(dimension, segment) -> what it means, for the summary."""
    out = dict(_FIXED_DESCRIPTIONS)
    for seg in config.rfm_segments:
        out[("rfm_segment", seg.name)] = seg.description
    previous = 0.0
    for t in config.value_tiers:
        out[("value_tier", t.name)] = (
            f"Buyers ranked {previous:.0%}-{t.top_share:.0%} by revenue."
        )
        previous = t.top_share
    return out


def summarise(
    segments: pl.DataFrame, features: pl.DataFrame, config: SegmentsConfig
) -> pl.DataFrame:
    """Customers, share, contactable, revenue and mean orders per segment of each dimension."""
    joined = segments.join(
        features.select("customer_id", "revenue", "order_count", "days_since_last_order"),
        on="customer_id",
    )
    total = max(segments.height, 1)
    parts = [
        joined.group_by(pl.col(dim).alias("segment"))
        .agg(
            pl.len().cast(pl.Int64).alias("customers"),
            pl.col("contactable").sum().cast(pl.Int64).alias("contactable"),
            pl.col("revenue").sum().round(2).alias("revenue"),
            pl.col("order_count").mean().round(2).alias("average_orders"),
            pl.col("days_since_last_order").mean().round(1).alias("average_recency_days"),
        )
        .with_columns(pl.lit(dim).alias("dimension"))
        for dim in SEGMENT_DIMENSIONS
    ]
    descriptions = segment_descriptions(config)
    described = pl.DataFrame(
        {
            "dimension": [k[0] for k in descriptions],
            "segment": [k[1] for k in descriptions],
            "description": list(descriptions.values()),
        }
    )
    return (
        pl.concat(parts, how="vertical_relaxed")
        .join(described, on=["dimension", "segment"], how="left")
        .with_columns((pl.col("customers") / total).round(4).alias("share"))
        .select(list(SUMMARY_COLUMNS))
        # The segment name settles equal counts: group_by hands groups over in no fixed
        # order, and the chart and metadata list rows as they come.
        .sort("dimension", "customers", "segment", descending=[False, True, False])
    )


@dataclass(frozen=True)
class SegmentsResult:
    """Segments per customer and the summary of every segment."""

    segments: pl.DataFrame
    summary: pl.DataFrame

    @property
    def contactable(self) -> int:
        """Customers a campaign may contact."""
        return int(self.segments.get_column("contactable").sum())

    @property
    def rfm_cells(self) -> int:
        """Distinct R-F-M score combinations among buyers."""
        return self.segments.get_column("rfm_cell").drop_nulls().n_unique()

    @property
    def reference_date(self) -> str:
        """The 'today' the segments were computed for, ISO (empty without customers)."""
        return str(self.segments.get_column("reference_date").max() or "")


def segment_customers(
    features: pl.DataFrame, customers: pl.DataFrame, config: SegmentsConfig
) -> SegmentsResult:
    """Segments of the customers and their summary.

    Takes golden.customer_features and the golden contact columns (customer_id, email, phone,
    phone_type) of the same customers. Scores are quantiles over all buyers given, so a caller
    that needs a subset's segments passes everyone and keeps the subset's rows.
    """
    segments = build_segments(features, customers, config)
    return SegmentsResult(segments, summarise(segments, features, config))
