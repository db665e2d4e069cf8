"""Data-quality profile: completeness, validity and uniqueness per source and field."""

from __future__ import annotations

import polars as pl

from cdi_pipeline.lib.contracts import IDENTIFIER_PREFIX
from cdi_pipeline.lib.registry import CANONICAL_FIELDS

PROFILE_DESCRIPTIONS = {
    "source": "Source system.",
    "field": "Canonical field (or id_<identifier>).",
    "records": "Cleaned records of the source.",
    "filled": "Records with a value in this field after cleaning.",
    "invalid": "Values nulled by a rule (see quality.quarantine).",
    "distinct": "Distinct filled values.",
    "completeness": "filled / records.",
    "validity": "filled / (filled + invalid): share of delivered values that passed.",
    "uniqueness": "distinct / filled.",
}


def field_profile(records: pl.DataFrame, quarantine: pl.DataFrame) -> pl.DataFrame:
    """One row per source and field that the source delivered at all."""
    fields = [f for f in CANONICAL_FIELDS if f in records.columns]
    fields += sorted(c for c in records.columns if c.startswith(IDENTIFIER_PREFIX))
    long = records.select("source", *[pl.col(f).cast(pl.String).alias(f) for f in fields]).unpivot(
        index="source", on=fields, variable_name="field", value_name="value"
    )
    stats = long.group_by("source", "field").agg(
        pl.len().alias("records"),
        pl.col("value").is_not_null().sum().cast(pl.Int64).alias("filled"),
        pl.col("value").drop_nulls().n_unique().cast(pl.Int64).alias("distinct"),
    )
    # A nulled name counts against every name part; profile it under full_name only.
    invalid = (
        quarantine.filter(pl.col("scope") == "value")
        .with_columns(pl.col("field").replace({"name": "full_name"}))
        .group_by("source", "field")
        .agg(pl.len().cast(pl.Int64).alias("invalid"))
    )
    return (
        stats.join(invalid, on=["source", "field"], how="left")
        .with_columns(pl.col("invalid").fill_null(0))
        .filter((pl.col("filled") > 0) | (pl.col("invalid") > 0))
        .with_columns(
            (pl.col("filled") / pl.col("records")).round(4).alias("completeness"),
            (pl.col("filled") / (pl.col("filled") + pl.col("invalid"))).round(4).alias("validity"),
            (pl.col("distinct") / pl.col("filled")).fill_nan(None).round(4).alias("uniqueness"),
        )
        .select(list(PROFILE_DESCRIPTIONS))
        .sort("source", "field")
    )


def profile_markdown(profile: pl.DataFrame) -> str:
    """Completeness/validity per field (rows) and source (columns), weakest values marked."""
    sources = sorted(profile.get_column("source").unique().to_list())
    fields = profile.get_column("field").unique().to_list()
    order = {f: i for i, f in enumerate([*CANONICAL_FIELDS])}
    fields.sort(key=lambda f: (order.get(f, 99), f))
    cells = {
        (r["source"], r["field"]): r for r in profile.iter_rows(named=True)
    }  # small: sources x fields
    lines = [
        "Completeness % / validity % per field and source (⚠ below 80%).",
        "",
        "| field | " + " | ".join(sources) + " |",
        "|---|" + "---|" * len(sources),
    ]
    for field in fields:
        row = []
        for source in sources:
            cell = cells.get((source, field))
            if cell is None:
                row.append("–")
                continue
            c, v = cell["completeness"] * 100, cell["validity"] * 100
            mark = " ⚠" if min(c, v) < 80 else ""
            row.append(f"{c:.0f} / {v:.0f}{mark}")
        lines.append(f"| {field} | " + " | ".join(row) + " |")
    return "\n".join(lines)
