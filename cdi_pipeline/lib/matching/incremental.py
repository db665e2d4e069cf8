"""Incremental matching: new records matched against existing customers without a rebuild.

1. The new records and every existing record sharing a blocking key with one of them are
   scored (Splink, the saved model and its frozen term frequencies), keeping only pairs that
   involve a new record. That finds the customers a new record could join.
2. The affected closure, every record of those customers plus the new records, goes through
   the full matching pass (deterministic rules, overrides, clustering, attachment, id
   assignment against the previous ids). Clusters outside it cannot change: no new pair
   touches them.
3. The result replaces the closure's rows in the identity tables; everything else stays.

The input is prepared on all records together, so generic values (an email held by more
than `max_block_size` records) are judged exactly as a full run judges them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from cdi_pipeline.lib.matching.blocking import pair_bounds
from cdi_pipeline.lib.matching.ids import ID_MAP_SCHEMA
from cdi_pipeline.lib.matching.input import UNIQUE_ID
from cdi_pipeline.lib.matching.outputs import MatchOutcome
from cdi_pipeline.lib.matching.rules import deterministic_pairs
from cdi_pipeline.lib.matching.scoring import score_pairs
from cdi_pipeline.lib.matching.spec import ModelSpec


@dataclass(frozen=True)
class Closure:
    """The records an incremental batch can affect."""

    candidates: int  # existing records sharing a blocking key with a new record
    affected_customers: pl.DataFrame  # customer_id (previous ids touched by the batch)
    records: pl.DataFrame  # unique_id of every record to re-match (new + affected customers)


def blocking_candidates(prepared: pl.DataFrame, new_ids: pl.Series, spec: ModelSpec) -> pl.Series:
    """Existing records that share at least one blocking-rule key with a new record."""
    if not spec.blocking_rules:
        return pl.Series(UNIQUE_ID, [], dtype=pl.String)
    columns = sorted({c for rule in spec.blocking_rules for c in rule})
    split = prepared.select(
        UNIQUE_ID, *columns, pl.col(UNIQUE_ID).is_in(new_ids.implode()).alias("__new")
    )
    new = split.filter(pl.col("__new")).lazy()
    existing = split.filter(~pl.col("__new")).lazy()
    # One lazy query: polars runs the per-rule joins in parallel.
    found = [
        existing.drop_nulls(rule)
        .join(new.select(rule).drop_nulls().unique(), on=rule, how="semi")
        .select(UNIQUE_ID)
        for rule in spec.blocking_rules
    ]
    return pl.concat(found).unique().collect().get_column(UNIQUE_ID)


def closure(
    db_api: Any,
    prepared: pl.DataFrame,
    new_ids: pl.Series,
    changed_ids: pl.Series,
    previous_xref: pl.DataFrame,
    linker_over: Any,
    spec: ModelSpec,
    *,
    floor: float,
    budget: float,
) -> Closure:
    """Score new records against their blocking candidates; collect the affected customers.

    `linker_over(frame, link_to=None)` returns a Splink linker on the backend `db_api` over
    a prepared frame (or linking it to `link_to`). `floor` is the lowest probability any
    later step acts on (attachment, review, linking).
    """
    candidates = blocking_candidates(prepared, new_ids, spec)
    is_new = pl.col(UNIQUE_ID).is_in(new_ids.implode())
    new_frame = prepared.filter(is_new)
    candidate_frame = prepared.filter(pl.col(UNIQUE_ID).is_in(candidates.implode()) & ~is_new)
    frame = pl.concat([new_frame, candidate_frame])
    # New against existing (link only: existing pairs among themselves are known), and the
    # new records among themselves.
    scored = [score_pairs(db_api, linker_over(new_frame), spec, min_probability=floor,
                          budget=budget, charts_dir=None,
                          bounds=pair_bounds(new_frame, spec.blocking_rules)).pairs]
    if candidate_frame.height:
        scored.append(score_pairs(
            db_api, linker_over(new_frame, candidate_frame), spec, min_probability=floor,
            budget=budget, charts_dir=None,
            bounds=pair_bounds(new_frame, spec.blocking_rules, candidate_frame),
        ).pairs)
    scored = pl.concat(scored, how="diagonal_relaxed")
    rule_pairs = deterministic_pairs(frame).select("unique_id_l", "unique_id_r")
    new = new_ids.implode()
    touching = pl.concat([
        scored.select("unique_id_l", "unique_id_r"), rule_pairs
    ]).filter(pl.col("unique_id_l").is_in(new) | pl.col("unique_id_r").is_in(new))
    partners = pl.concat([
        touching.select(pl.col("unique_id_l").alias(UNIQUE_ID)),
        touching.select(pl.col("unique_id_r").alias(UNIQUE_ID)),
        changed_ids.to_frame(UNIQUE_ID),
    ]).unique()
    keyed = previous_xref.select(
        (pl.col("source") + "|" + pl.col("source_record_id")).alias(UNIQUE_ID), "customer_id"
    )
    affected = keyed.join(partners, on=UNIQUE_ID, how="semi").select("customer_id").unique()
    records = pl.concat([
        keyed.join(affected, on="customer_id", how="semi").select(UNIQUE_ID),
        new_ids.to_frame(UNIQUE_ID),
    ]).unique()
    return Closure(candidates=candidates.len(), affected_customers=affected, records=records)


def id_map_updates(
    previous_map: pl.DataFrame, subset_map: pl.DataFrame, affected_ids: pl.DataFrame,
    assigned_ids: pl.DataFrame,
) -> pl.DataFrame:
    """Rows of the id map the batch changed (to replace by customer_id).

    `subset_map` came from id assignment over the closure only, so it knows nothing of the
    other customers (it would call them retired). Only rows about ids the batch touched are
    taken from it: the affected and newly assigned ids, and older ids that pointed at them.
    """
    touched = pl.concat([
        previous_map.filter(
            pl.col("current_customer_id").is_in(affected_ids.get_column("customer_id").implode())
        ).select("customer_id"),
        affected_ids.select("customer_id"),
        assigned_ids.select("customer_id"),
    ]).unique()
    return subset_map.join(touched, on="customer_id", how="semi").cast(ID_MAP_SCHEMA)


@dataclass(frozen=True)
class Updates:
    """What a batch changes in the identity tables, as rows to delete and rows to insert."""

    xref: pl.DataFrame  # the identity map after the batch (whole, unordered)
    closure_records: pl.DataFrame  # source, source_record_id of the re-matched records
    outcome: MatchOutcome
    id_map_rows: pl.DataFrame
    touched_ids: pl.DataFrame  # customer_id: affected before, or assigned now


def identity_updates(
    previous_xref: pl.DataFrame, previous_map: pl.DataFrame, outcome: MatchOutcome,
    closure_ids: pl.DataFrame, affected: pl.DataFrame,
) -> Updates:
    """The identity map after a batch, and the rows to write: the closure's rows replaced,
    everything else untouched."""
    key = pl.concat_str("source", pl.lit("|"), "source_record_id")
    in_closure = key.is_in(closure_ids.get_column(UNIQUE_ID).implode())
    # Unordered: later steps join on it; sorting every key would cost more than they do.
    xref = pl.concat([previous_xref.filter(~in_closure), outcome.xref], how="diagonal_relaxed")
    assigned = outcome.clusters.select("customer_id")
    closure_records = closure_ids.select(
        pl.col(UNIQUE_ID).str.splitn("|", 2).struct.rename_fields(
            ["source", "source_record_id"]).alias("k")
    ).unnest("k")
    return Updates(
        xref=xref,
        closure_records=closure_records,
        outcome=outcome,
        id_map_rows=id_map_updates(previous_map, outcome.ids.id_map, affected, assigned),
        touched_ids=pl.concat([affected.select("customer_id"), assigned]).unique(),
    )
