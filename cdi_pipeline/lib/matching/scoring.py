"""Scoring: the blocked pairs predicted with the saved model, in chunks, down to the columns
the matching tables keep.

The backend (`db_api`) is passed beside the linker built on it: Splink's linker does not
expose it, and it decides how the prediction is chunked and which session settings apply.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import polars as pl

from cdi_pipeline.lib.matching import visualisations
from cdi_pipeline.lib.matching.backends import backend_of, keep_insertion_order, to_polars
from cdi_pipeline.lib.matching.blocking import preflight
from cdi_pipeline.lib.matching.linkers import column_names, row_count
from cdi_pipeline.lib.matching.spec import ModelSpec

log = logging.getLogger(__name__)

# Blocked pairs (by the pre-flight count) scored in one prediction chunk. Splink
# materialises a chunk's pairs with both records' compared values before the threshold
# drops most of them, so one chunk's size bounds the spill disk and memory scoring needs.
# Each chunk costs one more blocking pass over the whole input.
PAIRS_PER_CHUNK = 25_000_000


class Scoring(NamedTuple):
    """What `score_pairs` hands to `match`."""

    pairs: pl.DataFrame
    preflight: pl.DataFrame
    charts: dict[str, Path]
    comparisons: int


def score_pairs(
    db_api: Any, linker: Any, spec: ModelSpec, *, min_probability: float, budget: float,
    charts_dir: Path | None, bounds: pl.DataFrame | None = None,
    pairs_per_chunk: int = PAIRS_PER_CHUNK,
) -> Scoring:
    """Pre-flight the comparison count, predict in chunks, and write explanation charts.

    `linker` runs on `db_api`. `bounds` (`pair_bounds` of the input) settles the pre-flight
    when their sum is within the budget; over it, Splink's exact count decides. The count
    also sets how many chunks the prediction is split into; the comparisons reported are
    the blocked pairs actually scored, counted chunk by chunk.
    """
    counted = preflight(linker, spec.blocking_rules, budget, bounds)
    total = int(counted.get_column("cumulative_pairs").max() or 0)
    chunks = max(1, -(-total // pairs_per_chunk))
    log.info("pre-flight: %s pairs (%s) from %d blocking rules, scored in %d chunk(s)",
             f"{total:,}", counted.get_column("counted")[0] if counted.height else "exact",
             len(spec.blocking_rules), chunks)
    started = time.monotonic()
    parts: list[pl.DataFrame] = []
    comparisons = 0
    charts: dict[str, Path] = {}
    keep_insertion_order(db_api, False)
    for predicted, blocked_so_far in _predict_in_chunks(
        db_api, linker, chunks, min_probability, sample_for_charts=charts_dir is not None
    ):
        columns = column_names(linker, predicted)
        if charts_dir is not None and not charts:
            # The first prediction is a sample of the pairs (a hash chunk of the left
            # records, or the chart sample): its pairs show every pattern.
            charts = visualisations.write_prediction_charts(linker, predicted, columns,
                                                            charts_dir)
        if blocked_so_far is None:
            # The chart sample: its pairs are scored again in their slice.
            predicted.drop_table_from_database_and_remove_from_cache()
            continue
        comparisons = blocked_so_far
        # Only the columns the tables need leave the backend: the prediction also holds
        # every compared value and term-frequency column, several times the size.
        mw = [c for c in columns if c.startswith("mw_") and not c.startswith("mw_tf_")]
        gamma = [c for c in columns if c.startswith("gamma_")]
        keep = ["unique_id_l", "unique_id_r", "match_weight", "match_probability", *mw, *gamma]
        parts.append(to_polars(
            linker.misc.query_sql(f"SELECT {', '.join(keep)} FROM {predicted.physical_name}")
        ))
        predicted.drop_table_from_database_and_remove_from_cache()
        if chunks > 1:
            log.info("chunk %d/%d: %s blocked pairs, %s kept, %.0fs", len(parts), chunks,
                     f"{comparisons:,}", f"{sum(p.height for p in parts):,}",
                     time.monotonic() - started)
    keep_insertion_order(db_api, True)
    pairs = pl.concat(parts, rechunk=False) if len(parts) > 1 else parts[0]
    log.info("scored %s pairs, kept %s, in %.1fs", f"{comparisons:,}", f"{pairs.height:,}",
             time.monotonic() - started)
    # The prediction and Splink's intermediate tables have served: dropping them hands their
    # memory back before clustering builds its own frames.
    linker.table_management.delete_tables_created_by_splink_from_db()
    return Scoring(pairs, counted, charts, comparisons)


def _predict_registered(linker: Any, pairs_sql: str, min_probability: float, *,
                        warn: bool) -> Any:
    """Score the blocked id pairs `pairs_sql` selects (materialised and registered)."""
    part = linker.misc.query_sql(pairs_sql)
    linker.table_management.register_blocked_pairs_for_predict(part)
    try:
        return linker.inference.predict(threshold_match_probability=min_probability,
                                        warning_mode="auto" if warn else "never")
    finally:
        part.drop_table_from_database_and_remove_from_cache()


def _predict_in_chunks(
    db_api: Any, linker: Any, chunks: int, min_probability: float, *,
    sample_for_charts: bool = False,
) -> Iterator[tuple[Any, int | None]]:
    """Yield (prediction table, blocked pairs counted so far) chunk by chunk; the caller
    drops each prediction.

    On DuckDB the blocking joins run once: the blocked id pairs (three short columns) go to
    one table, which spills to disk under the memory limit, and each chunk scores a slice
    of its rows. Splink's own chunking (kept for Spark) repeats every blocking join for
    every chunk, filtering the left records by hash, which costs most of each chunk's time
    on a large input. A slice holds the pairs of a few rules (the table comes in rule
    order), so with `sample_for_charts` a seeded sample of all the blocked pairs is scored
    first and yielded with None, for the charts only.
    """
    if chunks > 1 and backend_of(db_api) == "duckdb":
        blocked = linker.inference.compute_blocked_pairs_for_predict_chunk(
            left_chunk=(1, 1), right_chunk=(1, 1))
        total = row_count(linker, blocked)
        # A table written once numbers its rows 0..n-1, and a rowid range is read by
        # skipping the other row groups.
        size = max(-(-total // chunks), 1)
        try:
            if sample_for_charts:
                sample = (f"SELECT * FROM {blocked.physical_name} USING SAMPLE "
                          f"reservoir({2 * visualisations.VIEWER_PAIRS} ROWS) REPEATABLE (1)")
                yield _predict_registered(linker, sample, min_probability, warn=True), None
            for i, start in enumerate(range(0, max(total, 1), size)):
                where = f"rowid >= {start} AND rowid < {start + size}"
                predicted = _predict_registered(
                    linker, f"SELECT * FROM {blocked.physical_name} WHERE {where}",
                    min_probability, warn=i == 0 and not sample_for_charts,
                )
                yield predicted, min(start + size, total)
        finally:
            blocked.drop_table_from_database_and_remove_from_cache()
            # The cache still names the last slice, which is gone.
            linker.table_management.invalidate_cache()
        return
    counted = 0
    for chunk in range(1, chunks + 1):
        side = (chunk, chunks)
        blocked = linker.inference.compute_blocked_pairs_for_predict_chunk(
            left_chunk=side, right_chunk=(1, 1)
        )
        counted += row_count(linker, blocked)
        # Scores the blocked pairs just computed: Splink finds them in its cache by chunk.
        predicted = linker.inference.predict_chunk(
            left_chunk=side, right_chunk=(1, 1), threshold_match_probability=min_probability,
            warning_mode="auto" if chunk == 1 else "never",
        )
        blocked.drop_table_from_database_and_remove_from_cache()
        yield predicted, counted
