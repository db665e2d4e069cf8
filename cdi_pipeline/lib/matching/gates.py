"""The matching layer's gates on the stored clusters and identity map (see `lib.gates`)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from cdi_pipeline.lib.gates import GateResult
from cdi_pipeline.lib.matching.rules import read_overrides
from cdi_pipeline.lib.matching.sanity import linked_share_problem

CLUSTER_SIZE = "cluster_size"
LINKED_SHARE = "linked_share"
OVERRIDES_HONOURED = "overrides_honoured"
EVERY_RECORD_MAPPED = "every_record_mapped"


def cluster_size(con: duckdb.DuckDBPyConnection, max_cluster_size: int) -> GateResult:
    """No customer holds more than `max_cluster_size` records: a bigger one is a chain
    that glued different people together."""
    clusters = con.sql("SELECT customer_id, records, source_list, weakest_link "
                       "FROM matching.clusters").pl()
    sizes = (clusters.group_by("records").agg(pl.len().alias("clusters")).sort("records")
             .rename({"records": "cluster_size"}))
    oversized = clusters.filter(pl.col("records") > max_cluster_size).sort(
        "records", descending=True)
    largest = int(clusters.get_column("records").max() or 0)
    return GateResult(
        CLUSTER_SIZE, oversized.is_empty(),
        f"largest cluster {largest} records" if oversized.is_empty()
        else f"{oversized.height} cluster(s) above {max_cluster_size} records",
        figures={"oversized_clusters": oversized.height, "largest": largest},
        tables={"cluster_size_distribution": sizes, "largest_clusters": oversized.head(10)},
    )


def linked_share(con: duckdb.DuckDBPyConnection, prior: float | None) -> GateResult:
    """The clusters link no more record pairs than the model's prior makes plausible
    (`linked_share_problem`): far more is a collapse."""
    records, linked = con.sql(
        "SELECT coalesce(sum(records), 0), coalesce(sum(records * (records - 1) / 2), 0) "
        "FROM matching.clusters").fetchall()[0]
    problem = linked_share_problem(int(records), float(linked), prior)
    expected = prior * records * (records - 1) / 2 if prior else 0.0
    return GateResult(
        LINKED_SHARE, problem is None,
        problem or f"{linked:,.0f} linked pairs, {expected:,.0f} expected",
        figures={"linked_pairs": int(linked), "expected_pairs": round(expected),
                 "ratio": round(linked / expected, 3) if expected else 0.0},
    )


def overrides_honoured(con: duckdb.DuckDBPyConnection, overrides_file: Path) -> GateResult:
    """Every steward must_link shares a customer and every cannot_link does not."""
    xref = con.sql("SELECT source || '|' || source_record_id AS unique_id, customer_id "
                   "FROM matching.customer_xref").pl()
    overrides = read_overrides(overrides_file, xref.get_column("unique_id"))
    judged = (
        overrides.join(xref, left_on="unique_id_l", right_on="unique_id")
        .join(xref, left_on="unique_id_r", right_on="unique_id", suffix="_r")
        .with_columns((pl.col("customer_id") == pl.col("customer_id_r")).alias("together"))
    )
    broken = judged.filter(
        ((pl.col("decision") == "must_link") & ~pl.col("together"))
        | ((pl.col("decision") == "cannot_link") & pl.col("together"))
    )
    return GateResult(
        OVERRIDES_HONOURED, broken.is_empty(),
        f"{overrides.height} override(s), {broken.height} not honoured",
        figures={"overrides": overrides.height},
        tables={"not_honoured": broken.select("unique_id_l", "unique_id_r", "decision",
                                              "decided_by")},
    )


def every_record_mapped(con: duckdb.DuckDBPyConnection) -> GateResult:
    """Every cleaned record has exactly one customer_id, and nothing else has one."""
    records, mapped, duplicated, unmapped, without_id = con.sql(
        """
        SELECT
          (SELECT count(*) FROM cleaned.customer_records),
          (SELECT count(*) FROM matching.customer_xref),
          (SELECT count(*) FROM (SELECT source, source_record_id FROM
              matching.customer_xref GROUP BY ALL HAVING count(*) > 1)),
          (SELECT count(*) FROM cleaned.customer_records c ANTI JOIN
              matching.customer_xref x USING (source, source_record_id)),
          (SELECT count(*) FROM matching.customer_xref WHERE customer_id IS NULL)
        """
    ).fetchall()[0]
    passed = records == mapped and duplicated == unmapped == without_id == 0
    return GateResult(
        EVERY_RECORD_MAPPED, passed, f"{mapped:,} of {records:,} records mapped",
        figures={"records": records, "mapped": mapped, "duplicated": duplicated,
                 "unmapped": unmapped, "without_id": without_id},
    )
