"""The segments step: segments and their summary from features and golden contact columns,
with the counts the asset shows; the feature counts beside them."""

from __future__ import annotations

from datetime import date, datetime

import polars as pl

from cdi_pipeline.lib.cleaned.activities import empty_events
from cdi_pipeline.lib.golden.features import build_features
from cdi_pipeline.lib.registry import SegmentsConfig
from cdi_pipeline.lib.segments.segments import build_segments, segment_customers, summarise

REF = date(2026, 10, 1)
XREF = pl.DataFrame({"source": ["shop", "shop", "news"], "source_record_id": ["W1", "W2", "N1"],
                     "customer_id": ["A", "B", "A"]})
EVENTS = pl.concat([empty_events(), pl.DataFrame(
    [("orders", "O1", "order", "shop", "W1", datetime(2026, 9, 1), 10.0, "web", None),
     ("orders", "O2", "order", "shop", "W1", datetime(2025, 9, 1), 30.5, "app", None),
     ("news", "N1", "signup", "news", "N1", datetime(2026, 1, 1), None, None, True)],
    schema=["source", "event_id", "kind", "customer_source", "customer_record_id",
            "occurred_at", "amount", "channel", "consent"], orient="row",
)], how="diagonal_relaxed")
GOLDEN = pl.DataFrame({"customer_id": ["A", "B", "C"],
                       "email": ["a@x.nl", "b@x.nl", None],
                       "phone": [None, None, "+31612345678"],
                       "phone_type": [None, None, "mobile"]})


def test_segments_and_summary_with_the_counts_shown() -> None:
    features = build_features(GOLDEN.select("customer_id"), EVENTS, XREF, REF)
    assert (features.customers_with_orders, features.total_revenue,
            features.customers_with_consent) == (1, 40.5, 1)
    result = segment_customers(features.features, GOLDEN, SegmentsConfig())
    segments = build_segments(features.features, GOLDEN, SegmentsConfig())
    assert result.segments.equals(segments)
    assert result.summary.equals(summarise(segments, features.features, SegmentsConfig()))
    # Only A opted in and has a channel; one buyer gives one RFM cell.
    assert (result.contactable, result.rfm_cells, result.reference_date) == (1, 1, "2026-10-01")


def test_no_customers_gives_empty_counts() -> None:
    features = build_features(GOLDEN.clear().select("customer_id"), EVENTS, XREF, REF)
    result = segment_customers(features.features, GOLDEN.clear(), SegmentsConfig())
    assert (result.contactable, result.rfm_cells, result.reference_date) == (0, 0, "")
