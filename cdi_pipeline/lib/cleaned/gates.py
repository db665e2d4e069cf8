"""The cleaned layer's gates: nothing lost between raw and cleaned, and no source mostly
held back (see `lib.gates`)."""

from __future__ import annotations

import duckdb
import polars as pl

from cdi_pipeline.lib.cleaned.records import conservation as balance_of
from cdi_pipeline.lib.gates import GateResult
from cdi_pipeline.lib.privacy import SHAPE_NOTE, delivered_shapes
from cdi_pipeline.lib.registry import Registry
from cdi_pipeline.lib.storage import frame_to_markdown, quote_identifier

CONSERVATION = "conservation"
REJECTED_SHARE = "rejected_share"


def conservation(con: duckdb.DuckDBPyConnection, sources: list[str]) -> GateResult:
    """Every raw row of each identity source is a cleaned record or quarantined whole."""
    raw_counts = {name: con.sql(f"SELECT count(*) FROM raw.{quote_identifier(name)}")
                  .fetchall()[0][0] for name in sources}
    records = con.sql("SELECT source FROM cleaned.customer_records").pl()
    quarantine = con.sql("SELECT source, scope FROM cleaned.quarantine").pl()
    balance = balance_of(raw_counts, records, quarantine)
    broken = balance.filter(~pl.col("holds"))
    return GateResult(
        CONSERVATION, broken.is_empty(),
        "raw = cleaned + quarantined for every source" if broken.is_empty()
        else f"rows lost or duplicated in {broken.get_column('source').to_list()}",
        figures={"sources_out_of_balance": broken.height},
        tables={"balance": balance},
    )


def rejected_share(
    records: pl.DataFrame, quarantine: pl.DataFrame, limits: dict[str, float]
) -> GateResult:
    """Per source, the share of records held back whole stays within its limit.

    `records` needs a `source` column, `quarantine` the quarantine's columns; pass the whole
    tables, or a batch's own rows to judge the batch.
    """
    held = quarantine.filter(pl.col("scope") == "record")
    table = (
        pl.DataFrame({"source": list(limits), "limit": list(limits.values())},
                     schema={"source": pl.String, "limit": pl.Float64})
        .join(records.group_by("source").agg(pl.len().alias("cleaned")), on="source",
              how="left")
        .join(held.group_by("source").agg(pl.len().alias("held_back")), on="source", how="left")
        .with_columns(pl.col("cleaned", "held_back").fill_null(0))
        .with_columns((pl.col("cleaned") + pl.col("held_back")).alias("records"))
        .with_columns((pl.col("held_back") / pl.col("records")).fill_nan(0.0).round(4)
                      .alias("share"))
        .with_columns((pl.col("share") <= pl.col("limit")).alias("ok"))
        .select("source", "records", "held_back", "share", "limit", "ok")
    )
    failing = table.filter(~pl.col("ok"))
    return GateResult(
        REJECTED_SHARE, failing.is_empty(),
        "every source within its limit" if failing.is_empty()
        else f"too many records held back in {failing.get_column('source').to_list()}",
        tables={"per_source": table,
                "per_rule": held.group_by("source", "rule").agg(pl.len().alias("rows"))
                .sort("source", "rule")},
        notes={"examples": _examples(held)},
    )


def _examples(held: pl.DataFrame, n: int = 5) -> str:
    # By shape only: the event log is kept beyond any erasure (cleaned.quarantine has the
    # values, and erasure purges them there).
    sample = held.head(n)
    if not sample.height:
        return "(none)"
    shown = sample.select("source", "source_record_id", "rule").with_columns(
        delivered_shapes(sample.get_column("offending_value")).alias("offending_value_shape"))
    return f"{frame_to_markdown(shown)}\n\n({SHAPE_NOTE})"


def rejected_share_limits(registry: Registry) -> dict[str, float]:
    """Each identity source's limit on the share of records held back whole."""
    return {s.name: registry.rejected_share_limit(s) for s in registry.identity_sources}
