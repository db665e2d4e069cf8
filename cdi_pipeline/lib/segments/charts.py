"""The segment summary as a Vega-Lite bar chart: a JSON spec, and an offline HTML page."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from cdi_pipeline.lib.splink_private import offline_chart_html


def summary_chart_spec(summary: pl.DataFrame) -> dict:
    """Customers per segment, one bar panel per dimension, contactable customers overlaid."""
    values = summary.select(
        "dimension", "segment", "customers", "contactable", "share"
    ).to_dicts()
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": "Customers per segment",
        "data": {"values": values},
        "facet": {"row": {"field": "dimension", "type": "nominal", "title": None}},
        "resolve": {"scale": {"y": "independent"}},
        "spec": {
            "width": 420,
            "layer": [
                {
                    "mark": {"type": "bar", "color": "#9ecae1"},
                    "encoding": {
                        "y": {"field": "segment", "type": "nominal", "sort": "-x", "title": None},
                        "x": {"field": "customers", "type": "quantitative"},
                        "tooltip": [
                            {"field": "segment"},
                            {"field": "customers"},
                            {"field": "contactable"},
                            {"field": "share", "format": ".1%"},
                        ],
                    },
                },
                {
                    "mark": {"type": "bar", "color": "#3182bd", "height": 6},
                    "encoding": {
                        "y": {"field": "segment", "type": "nominal", "sort": "-x"},
                        "x": {"field": "contactable", "type": "quantitative"},
                    },
                },
            ],
        },
    }


def write_summary_chart(summary: pl.DataFrame, path: Path) -> dict:
    """Write the chart as a self-contained HTML page; return its Vega-Lite spec."""
    spec = summary_chart_spec(summary)
    path.parent.mkdir(parents=True, exist_ok=True)
    html = offline_chart_html(spec, "Customer segments")
    temporary = path.with_suffix(".tmp")
    temporary.write_text(html, encoding="utf-8")
    temporary.replace(path)
    return spec


def markdown_bars(summary: pl.DataFrame, width: int = 30) -> str:
    """The summary as a markdown table with text bars (renders in any metadata viewer)."""
    lines = [
        "| dimension | segment | customers | share | contactable | |",
        "|---|---|---:|---:|---:|---|",
    ]
    peak = {
        row["dimension"]: row["customers"]
        for row in summary.group_by("dimension").agg(pl.col("customers").max()).to_dicts()
    }
    for row in summary.iter_rows(named=True):
        filled = round(width * row["customers"] / max(peak[row["dimension"]], 1))
        lines.append(
            f"| {row['dimension']} | {row['segment']} | {row['customers']:,} | "
            f"{row['share']:.1%} | {row['contactable']:,} | {'█' * filled} |"
        )
    return "\n".join(lines)
