"""The pipeline's only uses of Splink internals, pinned to the Splink version they were
checked against: an upgrade fails here first, and each use is re-checked before the pin
moves."""

from __future__ import annotations

import polars as pl
import splink

from cdi_pipeline.lib.matching.backends import running_spark_session
from cdi_pipeline.lib.segments.charts import write_summary_chart
from cdi_pipeline.lib.splink_private import SPLINK_CHECKED_VERSION, offline_chart_html

SPEC = {
    "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
    "data": {"values": [{"segment": "loyal", "customers": 12}]},
    "mark": "bar",
    "encoding": {"x": {"field": "customers", "type": "quantitative"},
                 "y": {"field": "segment", "type": "nominal"}},
}


def test_installed_splink_is_the_version_the_internals_were_checked_against() -> None:
    assert splink.__version__ == SPLINK_CHECKED_VERSION, (
        f"Splink {splink.__version__} is installed; cdi_pipeline/lib/splink_private.py was "
        f"checked against {SPLINK_CHECKED_VERSION}: check each function there still works "
        "(and whether Splink now offers a public way), then move SPLINK_CHECKED_VERSION"
    )


def test_offline_chart_is_a_whole_page_that_needs_no_network() -> None:
    html = offline_chart_html(SPEC, "Customer segments")
    assert html.startswith("<!DOCTYPE html>")
    assert "<title>Customer segments</title>" in html and "Splink chart" not in html
    assert '"loyal"' in html and "vegaEmbed" in html
    # The Vega libraries are inline, not loaded from a CDN.
    assert "<script src=" not in html and len(html) > 100_000


def test_segment_summary_chart_is_written_offline(tmp_path) -> None:
    summary = pl.DataFrame({"dimension": ["value"], "segment": ["loyal"], "customers": [12],
                            "contactable": [10], "share": [1.0]})
    path = tmp_path / "segments.html"
    spec = write_summary_chart(summary, path)
    assert spec["data"]["values"][0]["segment"] == "loyal"
    assert "<title>Customer segments</title>" in path.read_text(encoding="utf-8")


def test_no_spark_session_runs_until_the_spark_backend_starts_one() -> None:
    # pyspark's public SparkSession.active() answers it; no test here starts Spark.
    assert running_spark_session() is None
