"""Quarterly snapshots of the identity map, the golden records and the segments.

Each snapshot table keeps one partition per quarter; a later run in the same quarter replaces
that quarter's rows. Every row carries the quarter, the matching model version and the run
that took it, so a past campaign selection can be reproduced.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb
import polars as pl

from cdi_pipeline.lib.golden.survivorship import CUSTOMER_COLUMNS
from cdi_pipeline.lib.matching.tables import XREF_COLUMNS
from cdi_pipeline.lib.segments.segments import SEGMENT_COLUMNS
from cdi_pipeline.lib.storage import PartitionWrite, read_table

SNAPSHOT_COLUMNS = {
    "quarter": "Quarter the snapshot belongs to, e.g. 2026Q4 (a later run in the same quarter "
    "replaces it).",
    "model_version": "Matching model version the identity map was built with.",
    "snapshot_run_id": "Dagster run that took the snapshot.",
    "snapshot_at": "When the snapshot was taken (UTC).",
}


@dataclass(frozen=True)
class SnapshotTags:
    """What every row of one snapshot carries (the columns of SNAPSHOT_COLUMNS)."""

    quarter: str
    model_version: str | None
    snapshot_run_id: str
    snapshot_at: datetime

    def tag(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The tags as the first columns of `frame`; they replace same-named columns (the
        identity map's own model_version)."""
        tags = {"quarter": self.quarter, "model_version": self.model_version,
                "snapshot_run_id": self.snapshot_run_id, "snapshot_at": self.snapshot_at}
        return frame.select(
            *(pl.lit(v).alias(k) for k, v in tags.items()),
            *(c for c in frame.columns if c not in tags),
        ).with_columns(pl.col("model_version").cast(pl.String))


def snapshot_writes(con: duckdb.DuckDBPyConnection, tags: SnapshotTags) -> list[PartitionWrite]:
    """The quarter's partitions of enrichment.customer_xref_snapshots, enrichment.customer_snapshots
    and enrichment.customer_segment_snapshots: the current matching.customer_xref,
    golden.customers and segments.customer_segments, tagged (write with
    `replace_partitions`)."""
    return [
        PartitionWrite("enrichment", "customer_xref_snapshots",
                       tags.tag(read_table(con, "matching", "customer_xref")), "quarter",
                       "The identity map at each quarter.",
                       {**XREF_COLUMNS, **SNAPSHOT_COLUMNS}),
        PartitionWrite("enrichment", "customer_snapshots",
                       tags.tag(read_table(con, "golden", "customers")), "quarter",
                       "Golden records at each quarter.",
                       {**CUSTOMER_COLUMNS, **SNAPSHOT_COLUMNS}),
        PartitionWrite("enrichment", "customer_segment_snapshots",
                       tags.tag(read_table(con, "segments", "customer_segments")),
                       "quarter", "Segments at each quarter.",
                       {**SEGMENT_COLUMNS, **SNAPSHOT_COLUMNS}),
    ]


def quarters_kept(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Per quarter in enrichment.customer_snapshots: customers and the model version."""
    return con.sql(
        "SELECT quarter, count(*) AS customers, any_value(model_version) AS model_version "
        "FROM enrichment.customer_snapshots GROUP BY quarter ORDER BY quarter"
    ).pl()
