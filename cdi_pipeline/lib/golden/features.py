"""Behavioural features per customer from orders, tickets and sign-ups.

Events reach a customer through the identity record they point at (`customer_source`,
`customer_record_id`) and that record's row in `matching.customer_xref`. Every customer gets a
row: one without events has zero counts and empty dates, and a source set without any
behavioural source gives such rows for everyone rather than an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

FEATURE_COLUMNS = {
    "customer_id": "Customer the features describe.",
    "reference_date": "The 'today' recency is measured against.",
    "order_count": "Orders placed (0 when none).",
    "revenue": "Total order amount (0 when none).",
    "average_basket": "Mean order amount (null without orders).",
    "first_order_at": "Moment of the first order.",
    "last_order_at": "Moment of the latest order.",
    "days_since_last_order": "Days from the latest order to the reference date (recency).",
    "days_since_first_order": "Days from the first order to the reference date (tenure).",
    "ticket_count": "Support tickets raised (0 when none).",
    "last_ticket_at": "Moment of the latest support ticket.",
    "last_contact_at": "Moment of the latest order or ticket.",
    "last_contact_channel": "Channel of the latest order or ticket (web, app, phone, ...).",
    "signup_count": "Newsletter sign-ups (0 when none).",
    "marketing_consent": "Latest marketing opt-in given (null: never asked).",
    "consent_source": "Source of the sign-up that gave the latest consent answer.",
    "consent_record_id": "Record id of that sign-up.",
    "consent_date": "Date of that sign-up.",
}


@dataclass(frozen=True)
class FeatureResult:
    """Features per customer and the events that could not be tied to any customer."""

    features: pl.DataFrame
    events_linked: int
    events_unlinked: pl.DataFrame

    @property
    def customers_with_orders(self) -> int:
        """Customers with at least one order."""
        return self.features.filter(pl.col("order_count") > 0).height

    @property
    def total_revenue(self) -> float:
        """Revenue over all customers."""
        return float(self.features.get_column("revenue").sum())

    @property
    def customers_with_consent(self) -> int:
        """Customers whose latest answer was an opt-in."""
        return self.features.filter(pl.col("marketing_consent").fill_null(False)).height


def customer_events(events: pl.DataFrame, xref: pl.DataFrame) -> pl.DataFrame:
    """Events with the customer id of the record they belong to (inner: linked only)."""
    return events.join(
        xref.select(
            pl.col("source").alias("customer_source"),
            pl.col("source_record_id").alias("customer_record_id"),
            "customer_id",
        ),
        on=["customer_source", "customer_record_id"],
        how="inner",
    )


def build_features(
    customer_ids: pl.DataFrame, events: pl.DataFrame, xref: pl.DataFrame, reference_date: date
) -> FeatureResult:
    """One feature row per customer id in `customer_ids`."""
    linked = customer_events(events, xref)
    unlinked = (
        events.join(linked.select("source", "event_id"), on=["source", "event_id"], how="anti")
        .group_by("source", "kind", "customer_source")
        .agg(pl.len().alias("events"))
        .sort("source")
    )
    ref = pl.lit(reference_date).cast(pl.Datetime("us"))
    orders = (
        linked.filter(pl.col("kind") == "order")
        .group_by("customer_id")
        .agg(
            pl.len().cast(pl.Int64).alias("order_count"),
            pl.col("amount").sum().round(2).alias("revenue"),
            pl.col("occurred_at").min().alias("first_order_at"),
            pl.col("occurred_at").max().alias("last_order_at"),
        )
    )
    tickets = (
        linked.filter(pl.col("kind") == "ticket")
        .group_by("customer_id")
        .agg(
            pl.len().cast(pl.Int64).alias("ticket_count"),
            pl.col("occurred_at").max().alias("last_ticket_at"),
        )
    )
    # Latest contact: orders and tickets; event id and source (ids are unique only within
    # their source) break a same-moment tie reproducibly: the sort is not stable, so a tie
    # left open would follow the order the events were read in.
    latest_first = ["customer_id", "occurred_at", "event_id", "source"]
    latest_descending = [False, True, True, True]
    contact = (
        linked.filter(pl.col("kind").is_in(["order", "ticket"]))
        .sort(latest_first, descending=latest_descending)
        .group_by("customer_id", maintain_order=True)
        .first()
        .select(
            "customer_id",
            pl.col("occurred_at").alias("last_contact_at"),
            pl.col("channel").alias("last_contact_channel"),
        )
    )
    signups = linked.filter(pl.col("kind") == "signup")
    consent = (
        signups.filter(pl.col("consent").is_not_null())
        .sort(latest_first, descending=latest_descending)
        .group_by("customer_id", maintain_order=True)
        .first()
        .select(
            "customer_id",
            pl.col("consent").alias("marketing_consent"),
            pl.col("source").alias("consent_source"),
            pl.col("event_id").alias("consent_record_id"),
            pl.col("occurred_at").dt.date().alias("consent_date"),
        )
    )
    signup_counts = signups.group_by("customer_id").agg(
        pl.len().cast(pl.Int64).alias("signup_count")
    )
    features = (
        customer_ids.select("customer_id")
        .unique()
        .join(orders, on="customer_id", how="left")
        .join(tickets, on="customer_id", how="left")
        .join(contact, on="customer_id", how="left")
        .join(signup_counts, on="customer_id", how="left")
        .join(consent, on="customer_id", how="left")
        .with_columns(
            pl.lit(reference_date).alias("reference_date"),
            pl.col("order_count", "ticket_count", "signup_count").fill_null(0),
            pl.col("revenue").fill_null(0.0),
            (pl.col("revenue") / pl.col("order_count")).round(2).alias("average_basket"),
            (ref - pl.col("last_order_at")).dt.total_days().alias("days_since_last_order"),
            (ref - pl.col("first_order_at")).dt.total_days().alias("days_since_first_order"),
        )
        .select(list(FEATURE_COLUMNS))
        .sort("customer_id")
    )
    return FeatureResult(features=features, events_linked=linked.height, events_unlinked=unlinked)
