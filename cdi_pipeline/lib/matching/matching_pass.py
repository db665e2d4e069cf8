"""One matching pass: the records decided, clustered and given stable customer ids from the
scored pairs; and the step around it that reads its inputs, scores the pairs with the saved
model and hands back the tables to write."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from cdi_pipeline.lib.contracts import IDENTIFIER_PREFIX
from cdi_pipeline.lib.matching.backends import BackendConfig, open_backend
from cdi_pipeline.lib.matching.blocking import pair_bounds
from cdi_pipeline.lib.matching.clustering import attach_singletons, cluster
from cdi_pipeline.lib.matching.decisions import decide
from cdi_pipeline.lib.matching.ids import HISTORY_SCHEMA, assign_ids, read_previous_ids
from cdi_pipeline.lib.matching.input import UNIQUE_ID, Connect, prepared_records
from cdi_pipeline.lib.matching.linkers import linker_for
from cdi_pipeline.lib.matching.model_store import SavedModel, model_for_spec
from cdi_pipeline.lib.matching.outputs import REVIEW_FIELDS, MatchOutcome, match_outcome
from cdi_pipeline.lib.matching.rules import read_overrides
from cdi_pipeline.lib.matching.scoring import Scoring, score_pairs
from cdi_pipeline.lib.matching.spec import ModelSpec, derive_spec
from cdi_pipeline.lib.matching.tables import (
    CLUSTERS_TABLE,
    ID_HISTORY_TABLE,
    ID_MAP_TABLE,
    MATCH_TABLES,
    PAIRS_TABLE,
    REVIEW_QUEUE_TABLE,
    XREF_TABLE,
)
from cdi_pipeline.lib.registry import MatchingConfig
from cdi_pipeline.lib.storage import TableWrite, frame_to_markdown

log = logging.getLogger(__name__)

# A component this many times the size check's limit (matching.max_cluster_size) stops the
# pass before ids are assigned from it.
COMPONENT_LIMIT_FACTOR = 10

# The prepared columns `match` reads (besides identifiers): record keys, the rule and
# conflict fields, and what a steward sees in the review queue.
_MATCH_FIELDS = (
    UNIQUE_ID, "source", "source_record_id", "first_name_key", "first_name_canonical",
    "first_name_typo", "first_initial", "date_of_birth", "phone_type", "email_block",
    "phone_block", *REVIEW_FIELDS,
)


def match_fields(frame: pl.DataFrame) -> pl.DataFrame:
    """The columns of a prepared frame that `match` reads.

    Blocking and comparison columns have served once the pairs are scored: a caller that
    drops them before `match` frees about half the prepared frame for the clustering's
    frames.
    """
    return frame.select(c for c in frame.columns
                        if c in _MATCH_FIELDS or c.startswith(IDENTIFIER_PREFIX))


def match(
    frame: pl.DataFrame,
    scoring: Scoring,
    overrides: pl.DataFrame,
    previous_xref: pl.DataFrame,
    previous_map: pl.DataFrame,
    config: MatchingConfig,
    *,
    run_id: str,
    model_version: str,
    now: datetime,
) -> MatchOutcome:
    """Decide, cluster and assign ids for all records in `frame`, from `score_pairs`'s
    result (scored pairs, pre-flight counts, charts, comparisons scored).

    `config` is the registry's `matching:` section, passed whole: the threshold, review
    band, conflict and attachment settings and the cluster size limit all come from it.
    Scoring is separate so the caller can close the Splink backend first: its tables and
    buffers are then gone before clustering builds its own frames.
    """
    decided = decide(frame, scoring.pairs, overrides, config)
    assignment, unresolved = cluster(
        frame.get_column(UNIQUE_ID), decided.links, decided.cannot, decided.apart_fields,
        COMPONENT_LIMIT_FACTOR * config.max_cluster_size,
        birth_dates_yield_to_links=config.birth_date_conflict_yields_to_link,
    )
    attached = None
    if config.attach_min_probability is not None:
        assignment, attached = attach_singletons(
            assignment, scoring.pairs, decided.cannot, config.attach_min_probability,
            decided.apart_fields,
        )
    previous = previous_xref.select(
        (pl.col("source") + "|" + pl.col("source_record_id")).alias(UNIQUE_ID), "customer_id"
    )
    ids = assign_ids(
        assignment.select(UNIQUE_ID, "cluster_key"), previous, previous_map,
        run_id=run_id, model_version=model_version, now=now,
    )
    return match_outcome(frame, scoring, overrides, decided, assignment, attached, unresolved,
                         ids, config, run_id=run_id, model_version=model_version, now=now)


@dataclass(frozen=True)
class MatchRun:
    """What the matching step hands back: the pass's outcome, the tables to write and the
    figures shown with them."""

    outcome: MatchOutcome
    model: SavedModel
    writes: dict[str, TableWrite]  # by `schema.name`, in the order they are written
    seconds: float

    @property
    def statistics(self) -> pl.DataFrame:
        """The pass's counts (records, pairs, links, customers, ...), one row each."""
        stats = self.outcome.stats
        return pl.DataFrame({"figure": list(stats), "value": list(stats.values())})

    @property
    def cluster_sizes(self) -> pl.DataFrame:
        """Customers per cluster size (cluster_size, clusters)."""
        return (
            self.outcome.clusters.group_by("records").agg(pl.len().alias("clusters"))
            .sort("records").rename({"records": "cluster_size"})
        )

    @property
    def largest_cluster(self) -> int:
        """Records in the largest customer."""
        return int(self.outcome.clusters.get_column("records").max() or 0)

    @property
    def id_events(self) -> pl.DataFrame:
        """This run's customer id events per kind (event, count)."""
        return (self.outcome.ids.events.group_by("event").agg(pl.len().alias("count"))
                .sort("event"))

    @property
    def records_per_link_kind(self) -> pl.DataFrame:
        """Records per kind of link that put them in their customer (linked_by, records)."""
        return (self.outcome.xref.group_by("linked_by").agg(pl.len().alias("records"))
                .sort("linked_by"))

    @property
    def review_preview(self) -> pl.DataFrame:
        """The review queue's pairs with their probability and suggested override."""
        return self.outcome.review_queue.select(
            "source_l", "source_record_id_l", "source_r", "source_record_id_r",
            "match_probability", "suggested_action",
        )

    def cluster_size_histogram(self) -> str:
        """Cluster sizes as a markdown table with a bar per row (log-scaled to stay
        readable)."""
        sizes = self.cluster_sizes
        peak = max(int(sizes.get_column("clusters").max() or 1), 1)
        bars = [
            "█" * max(1, round(20 * math.log1p(c) / math.log1p(peak)))
            for c in sizes.get_column("clusters")
        ]
        return frame_to_markdown(sizes.with_columns(pl.Series("bar", bars)), max_rows=50)


def match_records(
    connect: Connect,
    config: MatchingConfig,
    backend: BackendConfig,
    *,
    models_dir: Path,
    overrides_file: Path,
    charts_dir: Path | None,
    run_id: str,
    log: logging.Logger = log,
) -> MatchRun:
    """Match every cleaned record with the current model: read the records and the previous
    run's identity tables (each on a connection of its own from `connect`), score the pairs
    on `backend`, and run the pass.

    Nothing is written: the returned tables replace the stored ones together, in one
    transaction, at the caller.
    """
    # The records are read straight into the prepared frame and never kept beside it.
    frame = prepared_records(connect, config)
    spec = derive_spec(frame, config.training_rules)
    model = model_for_spec(models_dir, spec)
    overrides = read_overrides(overrides_file, frame.get_column(UNIQUE_ID))
    with connect() as con:
        previous = read_previous_ids(con)
    started = time.monotonic()
    now = datetime.now(UTC).replace(tzinfo=None)
    scoring = _score(frame, spec, model, config, backend, charts_dir)
    # Only the columns clustering and the review queue read stay in memory from here.
    frame = match_fields(frame)
    outcome = match(frame, scoring, overrides, previous.xref, previous.id_map, config,
                    run_id=run_id, model_version=model.version, now=now)
    seconds = time.monotonic() - started
    log.info(f"matched {frame.height:,} records in {seconds:.1f}s: {outcome.stats}")
    frames = {
        PAIRS_TABLE.qualified: outcome.pairs,
        REVIEW_QUEUE_TABLE.qualified: outcome.review_queue,
        CLUSTERS_TABLE.qualified: outcome.clusters,
        XREF_TABLE.qualified: outcome.xref,
        ID_HISTORY_TABLE.qualified: pl.concat([previous.history.cast(HISTORY_SCHEMA),
                                               outcome.ids.events]),
        ID_MAP_TABLE.qualified: outcome.ids.id_map,
    }
    writes = {table.qualified: table.write(frames[table.qualified]) for table in MATCH_TABLES}
    return MatchRun(outcome, model, writes, seconds)


def _score(
    frame: pl.DataFrame, spec: ModelSpec, model: SavedModel, config: MatchingConfig,
    backend: BackendConfig, charts_dir: Path | None,
) -> Scoring:
    """The scored pairs of `frame`, on a backend session closed before they are returned
    (its tables and the registered input with it)."""
    with open_backend(backend) as db_api:
        linker = linker_for(db_api, frame, model.splink_settings, model.term_frequencies)
        scoring = score_pairs(
            db_api, linker, spec, min_probability=config.min_pair_probability,
            budget=config.max_comparisons_per_record * max(frame.height, 1),
            charts_dir=charts_dir, bounds=pair_bounds(frame, spec.blocking_rules),
        )
        # The linker holds the registered input (shares the frame's buffers).
        del linker
    return scoring
