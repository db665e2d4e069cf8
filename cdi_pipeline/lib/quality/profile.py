"""Data-quality profile: completeness, validity and uniqueness per source and field."""

from __future__ import annotations

import duckdb
import polars as pl

from cdi_pipeline.lib.contracts import IDENTIFIER_PREFIX
from cdi_pipeline.lib.registry import CANONICAL_FIELDS
from cdi_pipeline.lib.storage import quote_identifier, quote_literal

PROFILE_DESCRIPTIONS = {
    "source": "Source system.",
    "field": "Canonical field (or id_<identifier>).",
    "records": "Cleaned records of the source.",
    "filled": "Records with a value in this field after cleaning.",
    "invalid": "Values nulled by a rule (see cleaned.quarantine).",
    "distinct": "Distinct filled values.",
    "completeness": "filled / records.",
    "validity": "filled / (filled + invalid): share of delivered values that passed.",
    "uniqueness": "distinct / filled.",
}


def field_profile(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """One row per source and field that the source delivered at all, from
    `cleaned.customer_records` and `cleaned.quarantine`.

    Counted in DuckDB one column at a time: the records never leave the database (read into
    polars and unpivoted, ten million records took more memory than the machine has).
    """
    columns = [r[0] for r in con.sql(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = 'cleaned' AND table_name = 'customer_records'").fetchall()]
    fields = [f for f in CANONICAL_FIELDS if f in columns]
    fields += sorted(c for c in columns if c.startswith(IDENTIFIER_PREFIX))
    stats = con.sql(" UNION ALL ".join(
        f"SELECT source, {quote_literal(f)} AS field, count(*) AS records, "
        f"count({quote_identifier(f)}) AS filled, "
        f"count(DISTINCT CAST({quote_identifier(f)} AS VARCHAR)) AS distinct "
        "FROM cleaned.customer_records GROUP BY source"
        for f in fields
    )).pl().cast({"records": pl.UInt32, "filled": pl.Int64, "distinct": pl.Int64})
    # A nulled name counts against every name part; profile it under full_name only.
    invalid = con.sql(
        "SELECT source, CASE field WHEN 'name' THEN 'full_name' ELSE field END AS field, "
        "count(*) AS invalid FROM cleaned.quarantine WHERE scope = 'value' GROUP BY ALL"
    ).pl().cast({"invalid": pl.Int64})
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
