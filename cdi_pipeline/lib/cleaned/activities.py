"""Behavioural events (orders, tickets, sign-ups) from raw source tables, in one shape.

An event points at the identity record it belongs to: a row of another source (an order's
account id) or the row itself (a support ticket carries the caller's details). Features join
events to customers through `matching.customer_xref` on that reference.

Nothing is lost: an event without an id, a readable date or (for orders) a readable amount
is held back whole in the quarantine with scope 'event'; an unreadable channel or consent
value is nulled and quarantined with scope 'value'.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

from cdi_pipeline.lib.cleaned.records import balance
from cdi_pipeline.lib.contracts import ACTIVITY_COLUMNS, QUARANTINE_COLUMNS, empty_frame
from cdi_pipeline.lib.registry import DEFAULT_EVENT_DATE_EARLIEST, Source
from cdi_pipeline.lib.standardise import parse_datetimes
from cdi_pipeline.lib.standardise.text import id_text

EVENT_RULE_MESSAGES: dict[str, str] = {
    "event_id_missing": "the event has no record id, so it cannot be referenced",
    "event_customer_missing": "the event does not name the customer record it belongs to",
    "event_date_unparsable": "the event date is missing or does not match the declared format",
    "event_date_out_of_range": "the event date lies before gates.event_date_earliest (default "
    "1900-01-01) or in the future",
    "amount_invalid": "the order amount is missing or not a number (expected e.g. 12.50)",
    "consent_unknown": "not a known opt-in value (expected ja/nee, yes/no, true/false, 1/0)",
}

_CONSENT_VALUES = {
    "ja": True,
    "j": True,
    "yes": True,
    "y": True,
    "true": True,
    "1": True,
    "opt-in": True,
    "optin": True,
    "nee": False,
    "n": False,
    "no": False,
    "false": False,
    "0": False,
    "opt-out": False,
    "optout": False,
}


@dataclass(frozen=True)
class ActivityResult:
    """Events of one source and the quarantine rows of events and values held back."""

    events: pl.DataFrame
    quarantine: pl.DataFrame
    raw_rows: int

    @property
    def rejected_events(self) -> int:
        """Events held back whole."""
        return self.quarantine.filter(pl.col("scope") == "event").height


def parse_amount(expr: pl.Expr) -> pl.Expr:
    """A decimal amount from text such as '12.50', '12,50', '€ 1.234,56' (null otherwise)."""
    text = expr.cast(pl.String).str.replace_all(r"[\s€$£]|EUR", "")
    # Both separators: the last one is the decimal mark ('1.234,56' and '1,234.56').
    comma_decimal = text.str.contains(r"^-?[0-9]{1,3}(\.[0-9]{3})*,[0-9]{1,2}$")
    dot_decimal = text.str.contains(r"^-?[0-9]{1,3}(,[0-9]{3})*\.[0-9]{1,2}$")
    plain = text.str.contains(r"^-?[0-9]+([.,][0-9]{1,2})?$")
    normalised = (
        pl.when(plain)
        .then(text.str.replace(",", ".", literal=True))
        .when(comma_decimal)
        .then(text.str.replace_all(".", "", literal=True).str.replace(",", ".", literal=True))
        .when(dot_decimal)
        .then(text.str.replace_all(",", "", literal=True))
    )
    return normalised.cast(pl.Float64, strict=False)


def _consent(expr: pl.Expr) -> pl.Expr:
    return expr.str.to_lowercase().replace_strict(
        _CONSENT_VALUES, default=None, return_dtype=pl.Boolean
    )


def clean_activity(
    raw: pl.DataFrame, source: Source, run_id: str, earliest: date = DEFAULT_EVENT_DATE_EARLIEST
) -> ActivityResult:
    """One raw source table's rows as events, plus quarantine rows for what was held back."""
    activity = source.activity
    if activity is None:
        raise ValueError(f"source {source.name!r} declares no activity")
    reference = activity.customer
    fmt = activity.occurred_at_format or source.date_format
    amount_raw = pl.col(activity.amount) if activity.amount else pl.lit(None, dtype=pl.String)
    base = raw.select(
        id_text(pl.col(source.record_id)).alias("event_id"),
        pl.col("_row_number").alias("source_row_number"),
        pl.lit(reference.source if reference else source.name).alias("customer_source"),
        (
            id_text(pl.col(reference.column)) if reference else id_text(pl.col(source.record_id))
        ).alias("customer_record_id"),
        pl.col(activity.occurred_at).alias("occurred_at"),
        amount_raw.cast(pl.String).alias("amount_text"),
        (
            id_text(pl.col(activity.channel)).str.to_lowercase()
            if activity.channel
            else pl.lit(None, dtype=pl.String)
        ).alias("channel"),
        (
            id_text(pl.col(activity.consent)) if activity.consent else pl.lit(None, dtype=pl.String)
        ).alias("consent_text"),
        pl.col("_source_file").alias("source_file"),
        pl.col("_run_id").alias("load_run_id"),
    )
    if base.schema["occurred_at"] not in (pl.Date, pl.Datetime) and not isinstance(
        base.schema["occurred_at"], pl.Datetime
    ):
        base = base.with_columns(id_text(pl.col("occurred_at")).alias("occurred_at"))
    parsed = parse_datetimes(base, "occurred_at", fmt, earliest=earliest).with_columns(
        (
            parse_amount(pl.col("amount_text"))
            if activity.amount
            else pl.lit(None, dtype=pl.Float64)
        ).alias("amount"),
        _consent(pl.col("consent_text")).alias("consent"),
    )
    judged = parsed.with_columns(
        pl.when(pl.col("event_id").is_null())
        .then(pl.lit("event_id_missing"))
        .when(pl.col("customer_record_id").is_null())
        .then(pl.lit("event_customer_missing"))
        .when(
            pl.col("occurred_at").is_null() & (pl.col("occurred_at_issue") == "date_out_of_range")
        )
        .then(pl.lit("event_date_out_of_range"))
        .when(pl.col("occurred_at").is_null())
        .then(pl.lit("event_date_unparsable"))
        .when(pl.lit(activity.amount is not None) & pl.col("amount").is_null())
        .then(pl.lit("amount_invalid"))
        .alias("_event_rule"),
        pl.when(pl.col("consent_text").is_not_null() & pl.col("consent").is_null())
        .then(pl.lit("consent_unknown"))
        .alias("_consent_rule"),
    )
    kept = judged.filter(pl.col("_event_rule").is_null())
    rejected = judged.filter(pl.col("_event_rule").is_not_null())

    # Only held-back events need their values as delivered: encode those rows, not all.
    delivered = raw.join(
        rejected.select(pl.col("source_row_number").alias("_row_number")),
        on="_row_number",
        how="semi",
    ).select(
        pl.col("_row_number").alias("source_row_number"),
        pl.struct([pl.col(c).cast(pl.String) for c in activity.columns()])
        .struct.json_encode()
        .alias("offending_value"),
    )
    event_rows = rejected.select(
        pl.col("event_id").alias("source_record_id"),
        "source_row_number",
        pl.lit(None, dtype=pl.String).alias("field"),
        pl.col("_event_rule").alias("rule"),
        pl.lit("event").alias("scope"),
    ).join(delivered, on="source_row_number", how="left")
    value_rows = kept.filter(pl.col("_consent_rule").is_not_null()).select(
        pl.col("event_id").alias("source_record_id"),
        "source_row_number",
        pl.lit("consent").alias("field"),
        pl.col("_consent_rule").alias("rule"),
        pl.lit("value").alias("scope"),
        pl.col("consent_text").alias("offending_value"),
    )
    source_file = raw.get_column("_source_file")[0] if raw.height else ""
    quarantine = (
        pl.concat([event_rows, value_rows], how="vertical_relaxed")
        .with_columns(
            pl.lit(source.name).alias("source"),
            pl.col("rule").replace_strict(EVENT_RULE_MESSAGES).alias("message"),
            pl.lit(source_file).alias("source_file"),
            pl.lit(run_id).alias("run_id"),
        )
        .select(list(QUARANTINE_COLUMNS))
        .sort("source_row_number", "field", nulls_last=False)
    )
    events = kept.with_columns(
        pl.lit(source.name).alias("source"),
        pl.lit(activity.kind).alias("kind"),
        pl.lit(run_id).alias("cleaned_run_id"),
        pl.col("occurred_at").cast(pl.Datetime("us")),
    ).select(list(ACTIVITY_COLUMNS))
    return ActivityResult(events=events, quarantine=quarantine, raw_rows=raw.height)


def empty_events() -> pl.DataFrame:
    """An events table with no rows (a source set without behavioural sources)."""
    return empty_frame(ACTIVITY_COLUMNS)


def event_conservation(
    raw_counts: dict[str, int], events: pl.DataFrame, quarantine: pl.DataFrame
) -> pl.DataFrame:
    """Per behavioural source: raw rows, events kept, events held back, whether they add up."""
    return balance(
        raw_counts,
        events,
        quarantine.filter(pl.col("scope") == "event"),
        kept="events",
        held="held_back",
    )
