"""Stable customer ids: clusters inherit the id of the previous cluster they overlap most.

Ids are assigned set-wise in rounds: each previous id offers itself to the new cluster holding
most of its records, each cluster accepts its best offer, the pair is settled, and the rest
try again. Clusters left without an id get new sequential ids. Every id that stops being
current is recorded in the id history (merged into, split off, retired) and resolves through
`customer_id_map`, so an id handed out once always leads somewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import polars as pl

from cdi_pipeline.lib.storage import table_exists

ID_PREFIX = "CUS"
ID_DIGITS = 9

HISTORY_SCHEMA = {
    "old_customer_id": pl.String,
    "new_customer_id": pl.String,
    "event": pl.String,
    "records": pl.Int64,
    "run_id": pl.String,
    "model_version": pl.String,
    "occurred_at": pl.Datetime("us"),
}
ID_MAP_SCHEMA = {"customer_id": pl.String, "current_customer_id": pl.String,
                 "status": pl.String}


@dataclass(frozen=True)
class IdAssignment:
    """Result of id assignment: record -> id, this run's events, and the full id map."""

    assignment: pl.DataFrame  # unique_id, cluster_key, customer_id
    events: pl.DataFrame  # HISTORY_SCHEMA (without run metadata filled for old rows)
    id_map: pl.DataFrame  # ID_MAP_SCHEMA: every id ever issued -> current id (or null)


@dataclass(frozen=True)
class PreviousIds:
    """The identity tables the previous run left, which id assignment continues from (empty
    before the first run)."""

    xref: pl.DataFrame  # source, source_record_id, customer_id
    id_map: pl.DataFrame  # ID_MAP_SCHEMA
    history: pl.DataFrame  # HISTORY_SCHEMA


def read_previous_ids(con: duckdb.DuckDBPyConnection) -> PreviousIds:
    """The previous run's identity map, id map and id history from the warehouse."""
    xref = (
        con.sql("SELECT source, source_record_id, customer_id FROM matching.customer_xref").pl()
        if table_exists(con, "matching", "customer_xref")
        else pl.DataFrame(schema={"source": pl.String, "source_record_id": pl.String,
                                  "customer_id": pl.String})
    )
    id_map = (
        con.sql("SELECT * FROM matching.customer_id_map").pl()
        if table_exists(con, "matching", "customer_id_map") else pl.DataFrame(schema=ID_MAP_SCHEMA)
    )
    history = (
        con.sql("SELECT * FROM matching.id_history").pl()
        if table_exists(con, "matching", "id_history") else pl.DataFrame(schema=HISTORY_SCHEMA)
    )
    return PreviousIds(xref, id_map, history)


def format_id(number: pl.Expr) -> pl.Expr:
    """CUS000000042 from 42."""
    return pl.lit(ID_PREFIX) + number.cast(pl.String).str.zfill(ID_DIGITS)


def id_number(customer_id: pl.Expr) -> pl.Expr:
    """42 from CUS000000042."""
    return customer_id.str.strip_prefix(ID_PREFIX).cast(pl.Int64, strict=False)


def _inherit(overlap: pl.DataFrame) -> pl.DataFrame:
    """Match clusters to previous ids, largest overlaps first, each used at most once."""
    settled = []
    remaining = overlap
    while remaining.height:
        offers = remaining.sort(
            ["customer_id", "n", "cluster_key"], descending=[False, True, False]
        ).unique("customer_id", keep="first")
        accepted = offers.sort(
            ["cluster_key", "n", "customer_id"], descending=[False, True, False]
        ).unique("cluster_key", keep="first")
        settled.append(accepted.select("cluster_key", "customer_id"))
        remaining = remaining.join(accepted, on="cluster_key", how="anti").join(
            accepted, on="customer_id", how="anti"
        )
    if not settled:
        return pl.DataFrame(schema={"cluster_key": pl.String, "customer_id": pl.String})
    return pl.concat(settled)


def assign_ids(
    clusters: pl.DataFrame,
    previous: pl.DataFrame,
    previous_map: pl.DataFrame,
    *,
    run_id: str,
    model_version: str,
    now,
) -> IdAssignment:
    """Give every cluster a customer id that survives re-runs.

    clusters: unique_id, cluster_key. previous: unique_id, customer_id from the last run
    (empty on the first). previous_map: the last run's id map (empty on the first).
    """
    overlap = (
        clusters.join(previous, on="unique_id", how="inner")
        .group_by("cluster_key", "customer_id")
        .agg(pl.len().cast(pl.Int64).alias("n"))
    )
    inherited = _inherit(overlap)
    last_number = max(
        previous_map.select(id_number(pl.col("customer_id")).max()).item() or 0,
        previous.select(id_number(pl.col("customer_id")).max()).item() or 0,
    )
    fresh = (
        clusters.select("cluster_key").unique()
        .join(inherited, on="cluster_key", how="anti")
        .sort("cluster_key")
        .with_row_index("i", offset=last_number + 1)
        .select("cluster_key", format_id(pl.col("i")).alias("customer_id"))
    )
    ids = pl.concat([inherited, fresh])
    assignment = clusters.join(ids, on="cluster_key", how="left")

    moved = overlap.join(ids.rename({"customer_id": "new_customer_id"}), on="cluster_key")
    moved = moved.rename({"customer_id": "old_customer_id"}).filter(
        pl.col("old_customer_id") != pl.col("new_customer_id")
    )
    kept_ids = inherited.get_column("customer_id")
    fresh_ids = fresh.get_column("customer_id")
    # An old id that lives on elsewhere gave records to a new cluster: a split. An old id
    # that no cluster inherited went into others: a merge.
    splits = moved.filter(
        pl.col("old_customer_id").is_in(kept_ids.implode())
        & pl.col("new_customer_id").is_in(fresh_ids.implode())
    ).select("old_customer_id", "new_customer_id", pl.lit("split").alias("event"),
             pl.col("n").alias("records"))
    # Records that went from one surviving customer to another surviving customer.
    moves = moved.filter(
        pl.col("old_customer_id").is_in(kept_ids.implode())
        & ~pl.col("new_customer_id").is_in(fresh_ids.implode())
    ).select("old_customer_id", "new_customer_id", pl.lit("moved").alias("event"),
             pl.col("n").alias("records"))
    merges = moved.filter(~pl.col("old_customer_id").is_in(kept_ids.implode())).select(
        "old_customer_id", "new_customer_id", pl.lit("merged").alias("event"),
        pl.col("n").alias("records"),
    )
    previous_ids = previous.select("customer_id").unique()
    retired = (
        previous_ids.join(overlap.select("customer_id").unique(), on="customer_id", how="anti")
        .select(
            pl.col("customer_id").alias("old_customer_id"),
            pl.lit(None, pl.String).alias("new_customer_id"),
            pl.lit("retired").alias("event"),
            pl.lit(0, pl.Int64).alias("records"),
        )
    )
    fed = overlap.select("cluster_key").unique()
    created = (
        fresh.join(fed, on="cluster_key", how="anti")
        .join(assignment.group_by("cluster_key").agg(pl.len().cast(pl.Int64).alias("records")),
              on="cluster_key")
        .select(
            pl.lit(None, pl.String).alias("old_customer_id"),
            pl.col("customer_id").alias("new_customer_id"),
            pl.lit("created").alias("event"),
            "records",
        )
    )
    events = (
        pl.concat([created, splits, merges, moves, retired])
        .with_columns(
            pl.lit(run_id).alias("run_id"),
            pl.lit(model_version).alias("model_version"),
            pl.lit(now).cast(pl.Datetime("us")).alias("occurred_at"),
        )
        .select(list(HISTORY_SCHEMA))
        .sort("event", "old_customer_id", "new_customer_id", nulls_last=True)
    )

    # Where does each id that was current last run point now? Itself if kept, the cluster
    # that took most of its records if merged, nowhere if retired.
    this_run = pl.concat(
        [
            ids.select("customer_id", pl.col("customer_id").alias("current_customer_id")),
            merges.sort(["old_customer_id", "records", "new_customer_id"],
                        descending=[False, True, False])
            .unique("old_customer_id", keep="first")
            .select(pl.col("old_customer_id").alias("customer_id"),
                    pl.col("new_customer_id").alias("current_customer_id")),
            retired.select(pl.col("old_customer_id").alias("customer_id"),
                           pl.lit(None, pl.String).alias("current_customer_id")),
        ]
    ).unique("customer_id", keep="first")
    carried = (
        previous_map.join(this_run, left_on="current_customer_id", right_on="customer_id",
                          how="left", suffix="_now")
        .select("customer_id", pl.col("current_customer_id_now").alias("current_customer_id"))
        .join(this_run, on="customer_id", how="anti")
    )
    id_map = pl.concat([this_run, carried]).with_columns(
        pl.when(pl.col("current_customer_id").is_null()).then(pl.lit("retired"))
        .when(pl.col("current_customer_id") == pl.col("customer_id")).then(pl.lit("active"))
        .otherwise(pl.lit("merged"))
        .alias("status")
    ).select(list(ID_MAP_SCHEMA)).sort("customer_id")
    return IdAssignment(assignment.select("unique_id", "cluster_key", "customer_id"),
                        events, id_map)
