"""Behavioural events, features, segments and activation exports on small hand-made data."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest

from cdi_pipeline.lib.cleaned.activities import clean_activity, empty_events, parse_amount
from cdi_pipeline.lib.golden.customer_360 import build_customer_360
from cdi_pipeline.lib.golden.features import build_features
from cdi_pipeline.lib.registry import ExportConfig, SegmentsConfig, Source
from cdi_pipeline.lib.segments.exports import (
    CURRENT_LINK,
    ExportRefused,
    export_problems,
    publish_exports,
)
from cdi_pipeline.lib.segments.segments import build_segments, summarise

REF = date(2026, 10, 1)


def _raw(frame: dict) -> pl.DataFrame:
    n = len(next(iter(frame.values())))
    return pl.DataFrame(frame).with_columns(
        pl.int_range(1, n + 1, dtype=pl.Int64).alias("_row_number"),
        pl.lit("orders.csv").alias("_source_file"),
        pl.lit("load").alias("_run_id"),
    )


def _orders_source() -> Source:
    return Source.model_validate({
        "name": "orders", "path": "orders.csv", "format": "csv", "record_id": "order_id",
        "date_format": "%d-%m-%Y",
        "activity": {"kind": "order", "customer": {"source": "shop", "column": "account"},
                     "occurred_at": "placed", "amount": "total", "channel": "channel"},
    })


def test_events_are_parsed_and_unusable_ones_held_back_with_reasons() -> None:
    raw = _raw({
        "order_id": ["O1", "O2", None, "O4", "O5", "O6"],
        "account": ["W1", "W1", "W2", None, "W2", "W2"],
        "placed": ["01-09-2026", "15-03-2025", "01-01-2026", "01-01-2026", "31-02-2026",
                   "02-02-2026"],
        "total": ["12,50", "€ 1.234,56", "5", "5", "5", "twelve"],
        "channel": ["Web", " APP ", "web", "web", "web", "web"],
    })
    result = clean_activity(raw, _orders_source(), run_id="r")
    assert result.events["event_id"].to_list() == ["O1", "O2"]
    assert result.events["amount"].to_list() == [12.5, 1234.56]
    assert result.events["channel"].to_list() == ["web", "app"]
    assert result.events["customer_source"].unique().to_list() == ["shop"]
    rules = dict(zip(result.quarantine["source_row_number"], result.quarantine["rule"],
                     strict=True))
    assert rules == {3: "event_id_missing", 4: "event_customer_missing",
                     5: "event_date_unparsable", 6: "amount_invalid"}
    assert set(result.quarantine["scope"]) == {"event"}
    # The values as delivered travel with the reject.
    assert json.loads(result.quarantine["offending_value"][3])["total"] == "twelve"
    assert result.events.height + result.rejected_events == raw.height


def test_parse_amount_reads_both_decimal_marks() -> None:
    values = pl.Series(["12.50", "12,5", "1.234,56", "1,234.56", "-3", "€ 7", "1.2.3", "abc"])
    parsed = pl.select(parse_amount(pl.lit(values))).to_series().to_list()
    assert parsed == [12.5, 12.5, 1234.56, 1234.56, -3.0, 7.0, None, None]


def _events(rows: list[tuple]) -> pl.DataFrame:
    columns = ["source", "event_id", "kind", "customer_source", "customer_record_id",
               "occurred_at", "amount", "channel", "consent"]
    frame = pl.DataFrame(rows, schema=columns, orient="row")
    return pl.concat([empty_events(), frame], how="diagonal_relaxed")


XREF = pl.DataFrame({
    "source": ["shop", "shop", "crm", "news", "desk"],
    "source_record_id": ["W1", "W2", "C3", "N1", "T1"],
    "customer_id": ["A", "B", "C", "A", "A"],
})


def test_features_per_customer_and_events_without_customer() -> None:
    events = _events([
        ("orders", "O1", "order", "shop", "W1", datetime(2026, 9, 1), 10.0, "web", None),
        ("orders", "O2", "order", "shop", "W1", datetime(2025, 9, 1), 30.0, "app", None),
        ("orders", "O3", "order", "shop", "W2", datetime(2024, 1, 1), 5.0, "web", None),
        ("orders", "O9", "order", "shop", "W404", datetime(2024, 1, 1), 5.0, "web", None),
        ("desk", "T1", "ticket", "desk", "T1", datetime(2026, 9, 20), None, "phone", None),
        ("news", "N1", "signup", "news", "N1", datetime(2020, 1, 1), None, None, True),
    ])
    customers = pl.DataFrame({"customer_id": ["A", "B", "C"]})
    result = build_features(customers, events, XREF, REF)
    f = {row["customer_id"]: row for row in result.features.to_dicts()}
    assert (f["A"]["order_count"], f["A"]["revenue"], f["A"]["average_basket"]) == (2, 40.0, 20.0)
    assert f["A"]["days_since_last_order"] == 30
    assert (f["A"]["ticket_count"], f["A"]["last_contact_channel"]) == (1, "phone")
    assert (f["A"]["marketing_consent"], f["A"]["consent_source"]) == (True, "news")
    assert (f["B"]["order_count"], f["B"]["marketing_consent"]) == (1, None)
    # A customer without events has zeros, not nulls, for counts.
    assert (f["C"]["order_count"], f["C"]["revenue"], f["C"]["ticket_count"]) == (0, 0.0, 0)
    assert f["C"]["average_basket"] is None
    assert result.events_linked == 5
    assert result.events_unlinked["events"].to_list() == [1]


def test_no_behavioural_sources_gives_empty_features_not_an_error() -> None:
    customers = pl.DataFrame({"customer_id": ["A", "B"]})
    result = build_features(customers, empty_events(), XREF, REF)
    assert result.features.height == 2
    assert result.features["order_count"].to_list() == [0, 0]
    golden = pl.DataFrame({"customer_id": ["A", "B"], "email": ["a@x.nl", None],
                           "phone": [None, None], "phone_type": [None, None]})
    segments = build_segments(result.features, golden, SegmentsConfig())
    assert segments["rfm_segment"].to_list() == ["no_orders", "no_orders"]
    assert segments["lifecycle_stage"].to_list() == ["prospect", "prospect"]
    assert segments["value_tier"].to_list() == ["none", "none"]
    assert segments["contactability"].to_list() == ["consent_unknown", "consent_unknown"]


def _features(n_orders: list[int], revenue: list[float], recency: list[int | None],
              tenure: list[int | None], consent: list[bool | None]) -> pl.DataFrame:
    n = len(n_orders)
    return pl.DataFrame({
        "customer_id": [f"C{i}" for i in range(n)],
        "order_count": n_orders, "revenue": revenue,
        "days_since_last_order": recency, "days_since_first_order": tenure,
        "marketing_consent": consent, "reference_date": [REF] * n,
    }, schema_overrides={"days_since_last_order": pl.Int64, "days_since_first_order": pl.Int64,
                         "marketing_consent": pl.Boolean})


def test_rfm_scores_lifecycle_value_tiers_and_contactability() -> None:
    features = _features(
        n_orders=[9, 1, 1, 5, 0, 2],
        revenue=[900.0, 10.0, 20.0, 400.0, 0.0, 60.0],
        recency=[5, 700, 40, 500, None, 200],
        tenure=[900, 700, 40, 1200, None, 300],
        consent=[True, True, False, True, True, None],
    )
    golden = pl.DataFrame({
        "customer_id": [f"C{i}" for i in range(6)],
        "email": ["a@x.nl", None, "c@x.nl", "d@x.nl", None, "f@x.nl"],
        "phone": [None, "+31612345678", None, None, "+31201234567", None],
        "phone_type": [None, "mobile", None, None, "fixed_line", None],
    })
    config = SegmentsConfig()
    seg = {r["customer_id"]: r for r in build_segments(features, golden, config).to_dicts()}
    # Six customers, five with orders: scores are quantile bins among the buyers.
    assert (seg["C0"]["recency_score"], seg["C0"]["frequency_score"],
            seg["C0"]["monetary_score"]) == (5, 5, 5)
    assert seg["C0"]["rfm_segment"] == "champions" and seg["C0"]["rfm_cell"] == "555"
    # Two customers with one order share the lowest F score.
    assert seg["C1"]["frequency_score"] == seg["C2"]["frequency_score"] == 1
    assert seg["C1"]["rfm_segment"] == "hibernating"
    assert seg["C4"]["rfm_segment"] == "no_orders" and seg["C4"]["recency_score"] is None
    assert [seg[c]["lifecycle_stage"] for c in ("C0", "C1", "C2", "C3", "C4", "C5")] == [
        "active", "lapsing", "new", "lapsing", "prospect", "active"]
    # Top spender of five buyers is the top 20%: gold (platinum is the top 5%).
    assert seg["C0"]["value_tier"] == "gold" and seg["C4"]["value_tier"] == "none"
    assert (seg["C3"]["value_tier"], seg["C1"]["value_tier"]) == ("silver", "bronze")
    assert [seg[c]["contactability"] for c in ("C0", "C1", "C2", "C4", "C5")] == [
        "contactable", "contactable", "no_consent", "no_channel", "consent_unknown"]
    assert (seg["C0"]["contact_channels"], seg["C1"]["contact_channels"]) == ("email", "sms")
    summary = summarise(build_segments(features, golden, config), features, config)
    per_dimension = summary.group_by("dimension").agg(pl.col("customers").sum())
    assert set(per_dimension["customers"]) == {6}
    assert summary.filter(pl.col("description").is_null()).is_empty()


def test_segment_config_is_validated() -> None:
    with pytest.raises(ValueError, match="within 1..5"):
        SegmentsConfig.model_validate(
            {"rfm_segments": [{"name": "x", "description": "x", "recency": {"min": 4, "max": 7}}]}
        )
    with pytest.raises(ValueError, match="end at 1.0"):
        SegmentsConfig.model_validate({"value_tiers": [{"name": "top", "top_share": 0.5}]})
    with pytest.raises(ValueError, match="unknown"):
        ExportConfig(columns=["customer_id", "date_of_birth"])


def test_exports_hold_only_contactable_customers_and_swap_atomically(tmp_path) -> None:
    table = pl.DataFrame({
        "customer_id": ["A", "B", "C", "D"],
        "first_name": ["Ann", "Bob", "Cas", "Dirk"],
        "last_name_display": ["de Vries", "Bos", "Smit", "Kok"],
        "email": ["a@x.nl", "b@x.nl", None, "d@x.nl"],
        "phone": [None, None, "+31612345678", None],
        "contact_channels": ["email", "email", "sms", "email"],
        "rfm_segment": ["champions", "champions", "new", "loyal"],
        "lifecycle_stage": ["active"] * 4,
        "value_tier": ["gold"] * 4,
        "contactable": [True, False, True, True],
        "date_of_birth": [date(1980, 1, 1)] * 4,
    })
    config = ExportConfig()
    first = publish_exports(table, config, tmp_path, run_id="run1")
    link = tmp_path / CURRENT_LINK
    assert link.resolve() == first.folder
    champions = pl.read_parquet(link / "champions.parquet")
    assert champions["customer_id"].to_list() == ["A"]
    assert champions.columns == config.columns and "date_of_birth" not in champions.columns
    assert pl.read_csv(link / "new.csv")["customer_id"].to_list() == ["C"]
    assert dict(zip(first.manifest["segment"], first.manifest["customers"], strict=True)) == {
        "champions": 1, "loyal": 1, "new": 1}
    assert export_problems(link.resolve(), table, config) == []
    # A customer who withdrew consent leaves the files on the next export; the old set is gone.
    table = table.with_columns(
        pl.when(pl.col("customer_id") == "A").then(False).otherwise(pl.col("contactable"))
        .alias("contactable")
    )
    second = publish_exports(table, config, tmp_path, run_id="run2")
    assert link.resolve() == second.folder and not first.folder.exists()
    assert not (link / "champions.parquet").exists()
    assert export_problems(link.resolve(), table, config) == []
    # The check sees a leak when the files and the table disagree.
    leaked = table.with_columns(pl.lit(False).alias("contactable"))
    assert any("not contactable" in p for p in export_problems(link.resolve(), leaked, config))


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize(("column", "value", "finding"), [
    # A first name field a source filled with an address: e-mail outside the e-mail column.
    ("first_name", "ann.devries@example.com", "email in champions.csv:first_name"),
    ("last_name_display", "de Vries, tel 06-12345678", "phone in champions.csv:last_name_display"),
    # An e-mail address is no phone number: the phone column holds phones only.
    ("phone", "ann@example.com", "email in champions.csv:phone"),
])
def test_an_export_holding_an_identifier_outside_its_column_is_not_published(
    tmp_path: Path, column: str, value: str, finding: str
) -> None:
    table = pl.DataFrame({c: ["x"] for c in ExportConfig().columns}).with_columns(
        pl.lit("A").alias("customer_id"), pl.lit("champions").alias("rfm_segment"),
        pl.lit("ann@example.com").alias("email"), pl.lit("+31612345678").alias("phone"),
        pl.lit(True).alias("contactable"),
    )
    first = publish_exports(table, ExportConfig(), tmp_path, run_id="run1")
    before = _folder_bytes(first.folder)
    with pytest.raises(ExportRefused) as refused:
        publish_exports(table.with_columns(pl.lit(value).alias(column)), ExportConfig(),
                        tmp_path, run_id="run2")
    assert finding in str(refused.value)
    assert value not in str(refused.value)  # by place and kind, never the value
    # The published set, its link and nothing else: the refused set left no trace.
    assert (tmp_path / CURRENT_LINK).resolve() == first.folder
    assert _folder_bytes(first.folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [CURRENT_LINK, f"{CURRENT_LINK}-run1"]


def test_customer_360_joins_one_row_per_customer() -> None:
    customers = pl.DataFrame({"customer_id": ["A", "B"], "email": ["a@x.nl", None]})
    features = pl.DataFrame({"customer_id": ["B", "A"], "order_count": [0, 3],
                             "reference_date": [REF, REF]})
    segments = pl.DataFrame({"customer_id": ["A", "B"], "rfm_segment": ["loyal", "no_orders"],
                             "reference_date": [REF, REF]})
    table = build_customer_360(customers, features, segments)
    assert table.columns == ["customer_id", "email", "order_count", "reference_date",
                             "rfm_segment"]
    assert table.rows() == [("A", "a@x.nl", 3, REF, "loyal"), ("B", None, 0, REF, "no_orders")]


def test_exports_replace_a_copied_folder(tmp_path) -> None:
    table = pl.DataFrame({c: ["x"] for c in ExportConfig().columns}).with_columns(
        pl.lit(True).alias("contactable")
    )
    (tmp_path / CURRENT_LINK).mkdir()
    (tmp_path / CURRENT_LINK / "old.csv").write_text("customer_id\nZ\n", encoding="utf-8")
    result = publish_exports(table, ExportConfig(), tmp_path, run_id="r")
    assert (tmp_path / CURRENT_LINK).resolve() == result.folder
    assert sorted(p.name for p in tmp_path.iterdir()) == [CURRENT_LINK, f"{CURRENT_LINK}-r"]
