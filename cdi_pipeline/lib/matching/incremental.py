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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from cdi_pipeline.lib.contracts import IDENTIFIER_PREFIX
from cdi_pipeline.lib.matching.backends import BackendConfig, open_backend
from cdi_pipeline.lib.matching.blocking import pair_bounds
from cdi_pipeline.lib.matching.ids import ID_MAP_SCHEMA
from cdi_pipeline.lib.matching.input import RECORD_COLUMNS, UNIQUE_ID, prepare_input
from cdi_pipeline.lib.matching.linkers import linker_for
from cdi_pipeline.lib.matching.matching_pass import match
from cdi_pipeline.lib.matching.model_store import load_current_model
from cdi_pipeline.lib.matching.outputs import MatchOutcome
from cdi_pipeline.lib.matching.rules import deterministic_pairs, read_overrides
from cdi_pipeline.lib.matching.scoring import score_pairs
from cdi_pipeline.lib.matching.spec import ModelSpec, derive_spec
from cdi_pipeline.lib.registry import MatchingConfig
from cdi_pipeline.lib.storage import RowWrite, quote_identifier, read_table, registered
from cdi_pipeline.lib.timing import Stopwatch

KEYS = ["source", "source_record_id"]
PAIR_KEY = ("source_l", "source_record_id_l", "source_r", "source_record_id_r")


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


def action_floor(config: MatchingConfig) -> float:
    """The lowest pair probability any matching step acts on (attach, review, link)."""
    return max(config.min_pair_probability, min(
        config.match_threshold, config.review_band[0], config.attach_min_probability or 1.0))


@dataclass(frozen=True)
class MatchingState:
    """What a batch reads of the last run: the match columns of every stored record, the
    strong pairs (for one more hop), the identity map and the id map."""

    records: pl.DataFrame
    strong_pairs: pl.DataFrame
    xref: pl.DataFrame
    id_map: pl.DataFrame


def read_matching_state(con: duckdb.DuckDBPyConnection, config: MatchingConfig) -> MatchingState:
    """The stored records' match columns (identifiers included) and the identity tables.
    Only the strong pairs are read, not every pair: a batch needs them for one more hop."""
    stored = [r[0] for r in con.sql(
        "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'cleaned' AND "
        "table_name = 'customer_records' ORDER BY column_index").fetchall()]
    columns = [*RECORD_COLUMNS, *(c for c in stored if c.startswith(IDENTIFIER_PREFIX))]
    return MatchingState(
        records=con.sql(f"SELECT {', '.join(map(quote_identifier, columns))} "
                        "FROM cleaned.customer_records").pl(),
        strong_pairs=con.sql(
            f"SELECT {', '.join(PAIR_KEY)} FROM matching.pairs "
            "WHERE match_probability >= $floor", params={"floor": action_floor(config)}).pl(),
        xref=read_table(con, "matching", "customer_xref"),
        id_map=read_table(con, "matching", "customer_id_map"),
    )


@dataclass(frozen=True)
class BatchMatch:
    """A batch's matching result: the identity map after it, the rows it re-matched, the
    customers it touched, and (None for a batch without identity records) the table rows."""

    xref: pl.DataFrame  # the identity map after the batch (whole)
    rematched_xref: pl.DataFrame  # the rows of the re-matched records
    touched: pl.DataFrame  # customer_id
    updates: Updates | None
    candidates: int  # stored records sharing a blocking key with a new one
    changed: int  # new records that replace stored ones (same source and id)


def match_batch(
    state: MatchingState, fresh: pl.DataFrame, config: MatchingConfig, backend: BackendConfig,
    *, models_dir: Path, overrides_file: Path, run_id: str, watch: Stopwatch,
) -> BatchMatch:
    """Match a batch's cleaned records (`fresh`) against the stored ones with the saved
    model: the closure of customers they can affect goes through the same matching pass as
    a full run (`match`), and everything outside it keeps its ids.

    The input is prepared on all records together, so generic values are judged as a full
    run judges them. Raises RuntimeError when the saved model does not fit the records."""
    changed = fresh.select(KEYS).join(state.records.select(KEYS), on=KEYS, how="semi")
    if not fresh.height:
        return BatchMatch(state.xref, state.xref.clear(), state.xref.select("customer_id").clear(),
                          None, 0, 0)
    identifiers = sorted({c for frame in (state.records, fresh) for c in frame.columns
                          if c.startswith(IDENTIFIER_PREFIX)})
    records = pl.concat([
        state.records.join(changed, on=KEYS, how="anti"),
        fresh.select(c for c in (*RECORD_COLUMNS, *identifiers) if c in fresh.columns),
    ], how="diagonal_relaxed")
    # Unsorted: the batch only looks records up; the closure is sorted before matching.
    prepared = prepare_input(records.select(*RECORD_COLUMNS, *identifiers),
                             config.max_block_size, config.max_name_block_size, ordered=False)
    del records
    spec = derive_spec(prepared, config.training_rules)
    model = load_current_model(models_dir)
    if model is None or model.spec_fingerprint != spec.fingerprint():
        raise RuntimeError(
            "the saved model does not fit the records with the new files (their fields "
            "differ); run full_refresh, which retrains"
        )
    watch.lap("prepare matching input")
    unique = pl.concat_str("source", pl.lit("|"), "source_record_id")
    new_ids = fresh.select(unique.alias(UNIQUE_ID)).get_column(UNIQUE_ID)
    changed_ids = changed.select(unique.alias(UNIQUE_ID)).get_column(UNIQUE_ID)
    with open_backend(backend) as db_api:
        linkers = []

        def linker_over(frame: pl.DataFrame, link_to: pl.DataFrame | None = None):
            linkers.append(frame.height)
            return linker_for(db_api, frame, model.splink_settings, model.term_frequencies,
                              name_suffix=f"_{len(linkers)}", link_to=link_to)

        found = closure(db_api, prepared, new_ids, changed_ids, state.xref, linker_over, spec,
                        floor=action_floor(config),
                        budget=config.max_comparisons_per_record * max(prepared.height, 1))
        watch.lap("score new records against their blocking candidates")
        affected, closure_ids = _one_more_hop(found, state, new_ids)
        frame = prepared.join(closure_ids, on=UNIQUE_ID, how="semi").sort(UNIQUE_ID)
        overrides = read_overrides(overrides_file, prepared.get_column(UNIQUE_ID))
        scoring = score_pairs(
            db_api, linker_over(frame), spec, min_probability=config.min_pair_probability,
            budget=config.max_comparisons_per_record * max(frame.height, 1), charts_dir=None,
            bounds=pair_bounds(frame, spec.blocking_rules),
        )
    in_closure = unique.is_in(closure_ids.get_column(UNIQUE_ID).implode())
    outcome = match(frame, scoring, overrides, state.xref.filter(in_closure), state.id_map,
                    config, run_id=run_id, model_version=model.version,
                    now=datetime.now(UTC).replace(tzinfo=None))
    updates = identity_updates(state.xref, state.id_map, outcome, closure_ids, affected)
    watch.lap("re-match the affected customers")
    return BatchMatch(updates.xref, outcome.xref, updates.touched_ids, updates,
                      found.candidates, changed.height)


def _one_more_hop(
    found: Closure, state: MatchingState, new_ids: pl.Series
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The affected customers and the records to re-match. An affected record's other strong
    pairs decide whether it may be attached or linked, so their customers belong in the
    pass as well."""
    members = found.records.get_column(UNIQUE_ID).implode()
    pair_key = {s: pl.concat_str(f"source_{s}", pl.lit("|"), f"source_record_id_{s}")
                for s in ("l", "r")}
    strong = state.strong_pairs.select(pair_key["l"].alias("a"), pair_key["r"].alias("b"))
    neighbours = pl.concat([
        strong.filter(pl.col("a").is_in(members)).select(pl.col("b").alias(UNIQUE_ID)),
        strong.filter(pl.col("b").is_in(members)).select(pl.col("a").alias(UNIQUE_ID)),
    ])
    keyed_xref = state.xref.select(
        pl.concat_str("source", pl.lit("|"), "source_record_id").alias(UNIQUE_ID), "customer_id")
    affected = pl.concat([
        found.affected_customers,
        keyed_xref.join(neighbours, on=UNIQUE_ID, how="semi").select("customer_id"),
    ]).unique()
    closure_ids = pl.concat([
        keyed_xref.join(affected, on="customer_id", how="semi").select(UNIQUE_ID),
        new_ids.to_frame(UNIQUE_ID),
    ]).unique()
    return affected, closure_ids


def identity_writes(
    con: duckdb.DuckDBPyConnection, updates: Updates, run_id: str
) -> list[RowWrite]:
    """The matching tables' rows a batch replaces: pairs and review items inside the closure
    (their stored keys read from `con`), the closure's identity-map rows, the touched
    clusters and id-map rows, and this run's id events. Nothing outside the closure moves."""
    outcome = updates.outcome
    inside = (
        "SELECT source_l, source_record_id_l, source_r, source_record_id_r FROM {t} "
        "WHERE (source_l, source_record_id_l) IN (SELECT (source, source_record_id) FROM "
        "__closure) AND (source_r, source_record_id_r) IN "
        "(SELECT (source, source_record_id) FROM __closure)"
    )
    with registered(con, "__closure", updates.closure_records):
        old_pairs = con.sql(inside.format(t="matching.pairs")).pl()
        old_review = con.sql(inside.format(t="matching.review_queue")).pl()
    return [
        RowWrite("matching", "pairs", outcome.pairs, PAIR_KEY, old_pairs),
        RowWrite("matching", "review_queue", outcome.review_queue, PAIR_KEY, old_review),
        RowWrite("matching", "customer_xref", outcome.xref, tuple(KEYS), updates.closure_records),
        RowWrite("matching", "clusters", outcome.clusters, ("customer_id",), updates.touched_ids),
        RowWrite("matching", "id_history", outcome.ids.events, ("run_id",),
                 pl.DataFrame({"run_id": [run_id]})),
        RowWrite("matching", "customer_id_map", updates.id_map_rows, ("customer_id",),
                 updates.id_map_rows.select("customer_id")),
    ]
