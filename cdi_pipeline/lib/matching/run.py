"""One matching pass: score pairs, add rules and steward decisions, cluster, assign ids.

Plain functions over polars frames and a Splink linker; the Dagster asset around them only
reads inputs, writes the tables in one transaction and reports.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import polars as pl

from cdi_pipeline.lib.contracts import IDENTIFIER_PREFIX
from cdi_pipeline.lib.matching import engine
from cdi_pipeline.lib.matching.clustering import (
    STRONG_AGREEMENTS,
    attach_singletons,
    birth_dates_conflict,
    cluster,
    same_given_name,
    strong_agreement_keys,
    strongly_agree,
)
from cdi_pipeline.lib.matching.ids import IdAssignment, assign_ids
from cdi_pipeline.lib.matching.rules import deterministic_pairs
from cdi_pipeline.lib.matching.spec import UNIQUE_ID, ModelSpec

log = logging.getLogger(__name__)

# Record fields shown side by side in the review queue.
REVIEW_FIELDS = (
    "first_name_key", "last_name_key", "date_of_birth", "email", "phone", "postcode",
    "house_number",
)


class ComparisonBudgetExceeded(RuntimeError):
    """The blocking rules would generate more pairs than the configured budget."""


@dataclass
class MatchOutcome:
    """Everything one matching pass produced."""

    pairs: pl.DataFrame
    review_queue: pl.DataFrame
    xref: pl.DataFrame
    clusters: pl.DataFrame
    ids: IdAssignment
    unresolved_cannot_links: pl.DataFrame
    preflight: pl.DataFrame
    stats: dict[str, Any] = field(default_factory=dict)
    charts: dict[str, Path] = field(default_factory=dict)


def _split_key(side: str) -> list[pl.Expr]:
    # Source names cannot hold "|" (they are snake_case), record ids can: split at the first.
    parts = pl.col(f"unique_id_{side}").str.splitn("|", 2)
    return [
        parts.struct.field("field_0").alias(f"source_{side}"),
        parts.struct.field("field_1").alias(f"source_record_id_{side}"),
    ]


# Pairs the comparison viewer is built from; larger predictions are sampled down to it.
VIEWER_PAIRS = 100_000

# Blocked pairs (by the pre-flight count) scored in one prediction chunk. Splink
# materialises a chunk's pairs with both records' compared values before the threshold
# drops most of them: at ten million records 419 million pairs in one go filled 55 GB of
# spill disk, and chunks of 46 million ran out of DuckDB's 1.5 GB memory limit. Each chunk
# costs one more blocking pass over the whole input.
PAIRS_PER_CHUNK = 25_000_000


class Scoring(NamedTuple):
    """What `score_pairs` hands to `match`."""

    pairs: pl.DataFrame
    preflight: pl.DataFrame
    charts: dict[str, Path]
    comparisons: int


def pair_bounds(
    left: pl.DataFrame, rules: list[list[str]], right: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Pairs each blocking rule produces on its own (a pair two rules both find counts in
    both): within `left` (each pair once), or between `left` and `right`.

    A group-by per rule, seconds at ten million records, where Splink's exact count of
    distinct pairs (every rule's pairs joined against the earlier rules') took 8 minutes.
    """
    counts = []
    for rule in rules:
        sizes = left.drop_nulls(rule).group_by(rule).len()
        if right is None:
            n = sizes.select((pl.col("len") * (pl.col("len") - 1) // 2).sum()).item()
        else:
            other = right.drop_nulls(rule).group_by(rule).len()
            n = sizes.join(other, on=rule).select(
                (pl.col("len") * pl.col("len_right")).sum()
            ).item()
        counts.append(int(n or 0))
    return pl.DataFrame(
        {"blocking_rule": [", ".join(r) for r in rules], "pairs": counts},
        schema={"blocking_rule": pl.String, "pairs": pl.Int64},
    )


def pair_bound(
    left: pl.DataFrame, rules: list[list[str]], right: pl.DataFrame | None = None
) -> int:
    """Upper bound on the distinct pairs the blocking rules produce (see `pair_bounds`)."""
    return int(pair_bounds(left, rules, right).get_column("pairs").sum())


def score_pairs(
    linker: Any, spec: ModelSpec, *, min_probability: float, budget: float,
    charts_dir: Path | None, bounds: pl.DataFrame | None = None,
    pairs_per_chunk: int = PAIRS_PER_CHUNK,
) -> Scoring:
    """Pre-flight the comparison count, predict in chunks, and write explanation charts.

    `bounds` (`pair_bounds` of the input) settles the pre-flight when their sum is within
    the budget; over it, Splink's exact count decides. The count also sets how many chunks
    the prediction is split into (by a hash of the left record's id); the comparisons
    reported are the blocked pairs actually scored, counted chunk by chunk.
    """
    if bounds is not None and int(bounds.get_column("pairs").sum()) <= budget:
        preflight = bounds.select(
            "blocking_rule",
            pl.col("pairs").alias("marginal_pairs"),
            pl.col("pairs").cum_sum().alias("cumulative_pairs"),
            pl.lit("upper bound").alias("counted"),
        )
    else:
        preflight = engine.count_comparisons(linker, spec.blocking_rules).with_columns(
            pl.lit("exact").alias("counted")
        )
    total = int(preflight.get_column("cumulative_pairs").max() or 0)
    if total > budget:
        raise ComparisonBudgetExceeded(
            f"blocking rules would score {total:,} pairs, over the budget of {budget:,.0f} "
            "(matching.max_comparisons_per_record x records). Per rule:\n"
            + "\n".join(
                f"  {r['blocking_rule']}: +{r['marginal_pairs']:,}"
                for r in preflight.iter_rows(named=True)
            )
            + "\nA rule on a field with a few very common values is the usual cause; "
            "lower matching.max_block_size or raise the budget."
        )
    chunks = max(1, -(-total // pairs_per_chunk))
    log.info("pre-flight: %s pairs (%s) from %d blocking rules, scored in %d chunk(s)",
             f"{total:,}", preflight.get_column("counted")[0] if preflight.height else "exact",
             len(spec.blocking_rules), chunks)
    started = time.monotonic()
    parts: list[pl.DataFrame] = []
    comparisons = 0
    charts: dict[str, Path] = {}
    engine.keep_insertion_order(linker, False)
    for predicted, blocked_so_far in _predict_in_chunks(
        linker, chunks, min_probability, sample_for_charts=charts_dir is not None
    ):
        columns = _columns(linker, predicted)
        if charts_dir is not None and not charts:
            # The first prediction is a sample of the pairs (a hash chunk of the left
            # records, or the chart sample): its pairs show every pattern.
            charts = write_prediction_charts(linker, predicted, columns, charts_dir)
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
        parts.append(engine.to_polars(
            linker.misc.query_sql(f"SELECT {', '.join(keep)} FROM {predicted.physical_name}")
        ))
        predicted.drop_table_from_database_and_remove_from_cache()
        if chunks > 1:
            log.info("chunk %d/%d: %s blocked pairs, %s kept, %.0fs", len(parts), chunks,
                     f"{comparisons:,}", f"{sum(p.height for p in parts):,}",
                     time.monotonic() - started)
    engine.keep_insertion_order(linker, True)
    pairs = pl.concat(parts, rechunk=False) if len(parts) > 1 else parts[0]
    log.info("scored %s pairs, kept %s, in %.1fs", f"{comparisons:,}", f"{pairs.height:,}",
             time.monotonic() - started)
    # The prediction and Splink's intermediate tables have served: dropping them hands their
    # memory back before clustering builds its own frames (at a million records, ~1 GB).
    linker.table_management.delete_tables_created_by_splink_from_db()
    return Scoring(pairs, preflight, charts, comparisons)


def _count(linker: Any, table: Any) -> int:
    return int(engine.to_polars(linker.misc.query_sql(
        f"SELECT count(*) AS n FROM {table.physical_name}")).get_column("n")[0])


def _columns(linker: Any, table: Any) -> list[str]:
    return linker.misc.query_sql(
        f"SELECT * FROM {table.physical_name} LIMIT 0"
    ).as_pyarrow_table().column_names


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
    linker: Any, chunks: int, min_probability: float, *, sample_for_charts: bool = False,
) -> Iterator[tuple[Any, int | None]]:
    """Yield (prediction table, blocked pairs counted so far) chunk by chunk; the caller
    drops each prediction.

    On DuckDB the blocking joins run once: the blocked id pairs (three short columns) go to
    one table, which spills to disk under the memory limit, and each chunk scores a slice
    of its rows. Splink's own chunking (kept for Spark) repeats every blocking join for
    every chunk, filtering the left records by hash: at ten million records that was 105 s
    of each chunk's 155 s. A slice holds the pairs of a few rules (the table comes in rule
    order), so with `sample_for_charts` a seeded sample of all the blocked pairs is scored
    first and yielded with None, for the charts only.
    """
    if chunks > 1 and engine.backend_of(linker) == "duckdb":
        blocked = linker.inference.compute_blocked_pairs_for_predict_chunk(
            left_chunk=(1, 1), right_chunk=(1, 1))
        total = _count(linker, blocked)
        # A table written once numbers its rows 0..n-1, and a rowid range is read by
        # skipping the other row groups.
        size = max(-(-total // chunks), 1)
        try:
            if sample_for_charts:
                sample = (f"SELECT * FROM {blocked.physical_name} USING SAMPLE "
                          f"reservoir({2 * VIEWER_PAIRS} ROWS) REPEATABLE (1)")
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
        counted += _count(linker, blocked)
        # Scores the blocked pairs just computed: Splink finds them in its cache by chunk.
        predicted = linker.inference.predict_chunk(
            left_chunk=side, right_chunk=(1, 1), threshold_match_probability=min_probability,
            warning_mode="auto" if chunk == 1 else "never",
        )
        blocked.drop_table_from_database_and_remove_from_cache()
        yield predicted, counted


def write_prediction_charts(
    linker: Any, predicted: Any, columns: list[str], charts_dir: Path
) -> dict[str, Path]:
    """Waterfall charts for sampled pairs and Splink's comparison viewer, as HTML.

    The viewer is built from at most VIEWER_PAIRS pairs (every n-th by weight): it shows
    which comparison patterns occur and examples of each. At a million records (1.3 million
    pairs) both charts took 8 s on every pair and wide-row sorts; now they take 2 s.
    """
    charts_dir.mkdir(parents=True, exist_ok=True)
    pred = predicted.physical_name
    # Pairs ranked by weight on the keys alone: sorting the full prediction rows (every
    # compared value) is what made these charts slow at a million records.
    ranked = linker.misc.query_sql(
        "SELECT unique_id_l, unique_id_r, row_number() OVER (ORDER BY match_weight, "
        f"unique_id_l, unique_id_r) AS _rank, count(*) OVER () AS _n FROM {pred}"
    )
    listed = ", ".join(f"p.{c}" for c in columns)

    def every_nth(n_expr: str) -> str:
        return (f"SELECT {listed} FROM {pred} p JOIN {ranked.physical_name} r ON "
                "p.unique_id_l = r.unique_id_l AND p.unique_id_r = r.unique_id_r "
                f"WHERE r._rank % {n_expr} = 0")

    # A spread of pairs from sure non-matches to sure matches, picked in the backend so
    # the full prediction never has to come to Python.
    sample = engine.to_polars(linker.misc.query_sql(
        every_nth("greatest(CAST(r._n / 12 AS BIGINT), 1)") + " ORDER BY p.match_weight LIMIT 12"
    ))
    total = _count(linker, predicted)
    out: dict[str, Path] = {}
    if sample.height:
        records = sample.to_dicts()
        chart = linker.visualisations.waterfall_chart(records, filter_nulls=True)
        path = charts_dir / "waterfall_sampled_pairs.html"
        path.write_text(chart.to_html(inline=True), encoding="utf-8")
        out["waterfall"] = path
        viewer = charts_dir / "comparison_viewer.html"
        shown = predicted
        if total > VIEWER_PAIRS:
            shown = linker.misc.query_sql(every_nth(str(-(-total // VIEWER_PAIRS))))
            # Splink's viewer SQL names its input by the prediction's template name.
            shown.templated_name = predicted.templated_name
        linker.visualisations.comparison_viewer_dashboard(
            shown, str(viewer), overwrite=True, num_example_rows=2,
            # Rare comparison vectors add size, not insight, on large runs.
            minimum_comparison_vector_count=5,
        )
        out["comparison_viewer"] = viewer
    return out


# Levels of Splink's DateOfBirthComparison, counted from the else level (0): 0 = more than
# 10 years apart, 1 = within 10 years, 2 = within a year; 3+ are typo-level or exact.
_DOB_FAR_MAX_GAMMA = 2


def birth_date_conflict_pairs(
    scored: pl.DataFrame, frame: pl.DataFrame, agreement: pl.DataFrame | None = None,
    threshold: float | None = None,
) -> pl.DataFrame:
    """Scored pairs whose birth dates differ by more than a typo (a swap is a typo), except
    pairs sharing a strong agreement key (`agreement`: unique_id and `strong_*` columns) and,
    with a `threshold`, pairs of one given name the model scores at or above it (it weighed
    the disagreement and still links them; `clustering.same_given_name`)."""
    if "gamma_date_of_birth" not in scored.columns:
        return scored.select("unique_id_l", "unique_id_r").clear()
    dob = frame.select(UNIQUE_ID, "date_of_birth", "first_name_canonical")
    if agreement is not None:
        dob = dob.join(agreement, on=UNIQUE_ID, how="left")
    spared = strongly_agree(dob.columns, "_r")
    if threshold is not None:
        spared = spared | ((pl.col("match_probability") >= threshold)
                           & same_given_name("", "_r"))
    return (
        scored.filter(pl.col("gamma_date_of_birth").is_between(0, _DOB_FAR_MAX_GAMMA))
        .select("unique_id_l", "unique_id_r", "match_probability")
        .join(dob, left_on="unique_id_l", right_on=UNIQUE_ID)
        .join(dob, left_on="unique_id_r", right_on=UNIQUE_ID, suffix="_r")
        .filter(birth_dates_conflict(pl.col("date_of_birth"), pl.col("date_of_birth_r"))
                & ~spared)
        .select("unique_id_l", "unique_id_r")
    )


def build_links(
    scored: pl.DataFrame,
    rule_pairs: pl.DataFrame,
    overrides: pl.DataFrame,
    threshold: float,
    *,
    birth_date_conflicts: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """All pairs with how they were decided; the links to cluster on; the cannot-links.

    Precedence: a steward decision beats a rule, a rule beats the model. Birth dates further
    apart than a typo are a rule against linking (and against chaining through others).
    """
    if birth_date_conflicts is not None and birth_date_conflicts.height:
        rule_pairs = pl.concat([
            rule_pairs.join(birth_date_conflicts, on=["unique_id_l", "unique_id_r"],
                            how="anti"),
            birth_date_conflicts.with_columns(pl.lit("birth_date_conflict").alias("rule")),
        ])
    pairs = scored.join(
        rule_pairs.rename({"rule": "rule_fired"}), on=["unique_id_l", "unique_id_r"], how="full",
        coalesce=True,
    ).join(
        overrides.select("unique_id_l", "unique_id_r", "decision", "decided_by", "reason"),
        on=["unique_id_l", "unique_id_r"], how="full", coalesce=True,
    )
    pairs = pairs.with_columns(
        pl.when(pl.col("decision").is_not_null()).then(pl.lit("steward"))
        .when(pl.col("rule_fired").is_not_null()).then(pl.lit("rule"))
        .otherwise(pl.lit("model")).alias("decided_by_kind"),
        pl.when(pl.col("decision") == "cannot_link").then(False)
        .when(pl.col("decision") == "must_link").then(True)
        .when(pl.col("rule_fired") == "birth_date_conflict").then(False)
        .when(pl.col("rule_fired").is_not_null()).then(True)
        .otherwise(pl.col("match_probability") >= threshold).alias("is_link"),
    )
    links = pairs.filter(pl.col("is_link")).select(
        "unique_id_l", "unique_id_r",
        pl.col("match_probability").fill_null(1.0),
        pl.when(pl.col("decision") == "must_link").then(pl.lit("must_link"))
        .when(pl.col("rule_fired").is_not_null()).then(pl.lit("deterministic"))
        .otherwise(pl.lit("model")).alias("kind"),
    )
    cannot = pairs.filter(
        (pl.col("decision") == "cannot_link")
        | (pl.col("decision").is_null() & (pl.col("rule_fired") == "birth_date_conflict"))
    ).select("unique_id_l", "unique_id_r")
    return pairs, links, cannot


# Which kind of link names a record's membership when two of its links are equally strong
# (a must_link and an unscored rule link both count as probability 1).
LINK_KIND_ORDER = ("must_link", "deterministic", "model", "attached")


def strongest_links(edge_conf: pl.DataFrame) -> pl.DataFrame:
    """Per record (unique_id, match_probability, kind): its strongest link's probability
    (match_confidence) and kind (linked_by).

    Equal probabilities are settled by LINK_KIND_ORDER: polars' sort is not stable, so with
    the probability alone the kind of a tie followed the order pairs arrived in.
    """
    rank = pl.col("kind").replace_strict(
        {k: i for i, k in enumerate(LINK_KIND_ORDER)}, return_dtype=pl.Int8
    )
    return (
        edge_conf.sort([pl.col("match_probability"), rank], descending=[True, False])
        .group_by(UNIQUE_ID)
        .agg(pl.col("match_probability").first().alias("match_confidence"),
             pl.col("kind").first().alias("linked_by"))
    )


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
    drops them before `match` frees about half the prepared frame (gigabytes at ten million
    records) for the clustering's frames.
    """
    return frame.select(c for c in frame.columns
                        if c in _MATCH_FIELDS or c.startswith(IDENTIFIER_PREFIX))


def match(
    frame: pl.DataFrame,
    scoring: Scoring,
    overrides: pl.DataFrame,
    previous_xref: pl.DataFrame,
    previous_map: pl.DataFrame,
    *,
    threshold: float,
    review_band: tuple[float, float],
    birth_date_conflict_blocks_link: bool = True,
    given_name_conflict_blocks_link: bool = True,
    strong_agreement: list[str] | tuple[str, ...] = STRONG_AGREEMENTS,
    birth_date_conflict_yields_to_link: bool = False,
    attach_min_probability: float | None = None,
    max_component_size: int | None = None,
    run_id: str,
    model_version: str,
    now,
) -> MatchOutcome:
    """Decide, cluster and assign ids for all records in `frame`, from `score_pairs`'s
    result (scored pairs, pre-flight counts, charts, comparisons scored).

    Scoring is separate so the caller can close the Splink backend first: its tables and
    buffers are then gone before clustering builds its own frames.
    """
    scored, preflight, charts, comparisons = scoring
    rule_pairs = deterministic_pairs(frame)
    # What keeps two records of one component apart (clustering.records_conflict).
    apart_by = [
        *(["date_of_birth"] if birth_date_conflict_blocks_link else []),
        *(["first_name_key", "first_name_canonical", "first_name_typo", "last_name_key"]
          if given_name_conflict_blocks_link else []),
    ]
    # Agreement only one person can have (a shared identifier, the same email and birth
    # date) outweighs both conflicts.
    agreement = strong_agreement_keys(frame, strong_agreement)
    apart_fields = (
        frame.select(UNIQUE_ID, *apart_by).join(agreement, on=UNIQUE_ID, how="left",
                                                  maintain_order="left")
        if apart_by else None
    )
    pairs, links, cannot = build_links(
        scored, rule_pairs, overrides, threshold,
        birth_date_conflicts=(
            birth_date_conflict_pairs(
                scored, frame, agreement,
                threshold if birth_date_conflict_yields_to_link else None)
            if birth_date_conflict_blocks_link else None
        ),
    )
    assignment, unresolved = cluster(
        frame.get_column(UNIQUE_ID), links, cannot, apart_fields, max_component_size,
        birth_dates_yield_to_links=birth_date_conflict_yields_to_link,
    )
    attached = None
    if attach_min_probability is not None:
        assignment, attached = attach_singletons(
            assignment, scored, cannot, attach_min_probability, apart_fields
        )
    previous = previous_xref.select(
        (pl.col("source") + "|" + pl.col("source_record_id")).alias(UNIQUE_ID), "customer_id"
    )
    ids = assign_ids(
        assignment.select(UNIQUE_ID, "cluster_key"), previous, previous_map,
        run_id=run_id, model_version=model_version, now=now,
    )
    customer = ids.assignment.select(UNIQUE_ID, "customer_id")

    pairs = (
        pairs.join(customer, left_on="unique_id_l", right_on=UNIQUE_ID, how="left")
        .join(customer, left_on="unique_id_r", right_on=UNIQUE_ID, how="left", suffix="_r")
        .with_columns(
            (pl.col("customer_id") == pl.col("customer_id_r")).alias("same_customer"),
            *_split_key("l"),
            *_split_key("r"),
        )
        .drop("customer_id", "customer_id_r")
    )
    low, high = review_band
    fields = frame.select(UNIQUE_ID, *[c for c in REVIEW_FIELDS if c in frame.columns])
    review = (
        pairs.filter(
            pl.col("decision").is_null()
            & pl.col("rule_fired").is_null()
            & pl.col("match_probability").is_between(low, high, closed="left")
        )
        .with_columns(
            (pl.col("match_probability") - threshold).abs().alias("distance_to_threshold"),
        )
        .join(fields, left_on="unique_id_l", right_on=UNIQUE_ID, how="left")
        .join(fields, left_on="unique_id_r", right_on=UNIQUE_ID, how="left", suffix="_r")
        .with_columns(
            pl.when(pl.col("same_customer"))
            .then(pl.lit("linked now: add cannot_link if these are different people"))
            .otherwise(pl.lit("not linked now: add must_link if this is one person"))
            .alias("suggested_action")
        )
        # Down to both records: a record's pairs at the same distance keep one order.
        .sort("distance_to_threshold", "source_l", "source_record_id_l", "source_r",
              "source_record_id_r")
    )
    review = review.select(
        "source_l", "source_record_id_l", "source_r", "source_record_id_r",
        "match_probability", "same_customer", "suggested_action",
        *[f"{f}{s}" for f in REVIEW_FIELDS if f in frame.columns for s in ("", "_r")],
        *[c for c in review.columns if c.startswith("mw_")],
        "distance_to_threshold",
    ).rename({f: f"{f}_l" for f in REVIEW_FIELDS if f in frame.columns})

    # The stored pairs name records by source and record id, the way a steward writes them.
    lead = ["source_l", "source_record_id_l", "source_r", "source_record_id_r",
            "match_probability", "match_weight", "decided_by_kind", "rule_fired", "decision",
            "decided_by", "reason", "is_link", "same_customer"]
    rest = [c for c in pairs.columns if c not in lead and c not in ("unique_id_l", "unique_id_r")]
    pairs = pairs.select(*lead, *rest).sort("source_l", "source_record_id_l", "source_r",
                                            "source_record_id_r")

    # Confidence of a record's membership: its strongest link inside its own cluster (links
    # clustering refused do not count); a record attached to a cluster, its attaching pair.
    in_cluster_links = links.join(customer, left_on="unique_id_l", right_on=UNIQUE_ID).join(
        customer, left_on="unique_id_r", right_on=UNIQUE_ID, suffix="_r"
    ).filter(pl.col("customer_id") == pl.col("customer_id_r"))
    edge_conf = pl.concat(
        [
            in_cluster_links.select(pl.col("unique_id_l").alias(UNIQUE_ID), "match_probability",
                                    "kind"),
            in_cluster_links.select(pl.col("unique_id_r").alias(UNIQUE_ID), "match_probability",
                                    "kind"),
        ]
    )
    if attached is not None and attached.height:
        edge_conf = pl.concat([
            edge_conf,
            attached.select(UNIQUE_ID, "match_probability", pl.lit("attached").alias("kind")),
        ])
    edge_conf = strongest_links(edge_conf)
    xref = (
        ids.assignment.join(assignment.select(UNIQUE_ID, "cluster_size"), on=UNIQUE_ID)
        .join(edge_conf, on=UNIQUE_ID, how="left")
        .join(frame.select(UNIQUE_ID, "source", "source_record_id"), on=UNIQUE_ID)
        .with_columns(
            pl.col("linked_by").fill_null(pl.lit("singleton")),
            pl.lit(model_version).alias("model_version"),
            pl.lit(run_id).alias("run_id"),
            pl.lit(now).cast(pl.Datetime("us")).alias("assigned_at"),
        )
        .select("source", "source_record_id", "customer_id", "cluster_size",
                "match_confidence", "linked_by", "model_version", "run_id", "assigned_at")
        .sort("source", "source_record_id")
    )
    clusters = (
        xref.group_by("customer_id")
        .agg(
            pl.len().cast(pl.Int64).alias("records"),
            pl.col("source").n_unique().cast(pl.Int64).alias("sources"),
            pl.col("source").unique().sort().str.join(", ").alias("source_list"),
        )
        .join(
            in_cluster_links.group_by("customer_id").agg(
                pl.col("match_probability").min().alias("weakest_link"),
                pl.col("match_probability").mean().alias("mean_link"),
                pl.len().cast(pl.Int64).alias("links"),
                (pl.col("kind") == "must_link").any().alias("has_steward_link"),
            ),
            on="customer_id", how="left",
        )
        .with_columns(pl.col("links").fill_null(0), pl.col("has_steward_link").fill_null(False))
        .sort("customer_id")
    )
    stats = {
        "records": frame.height,
        "comparisons_scored": comparisons,
        "pairs_scored": scored.height,
        "pairs_linked": links.height,
        "deterministic_links": links.filter(pl.col("kind") == "deterministic").height,
        "cannot_links": cannot.height,
        "steward_overrides": overrides.height,
        "customers": clusters.height,
        "review_queue": review.height,
        "unresolved_cannot_links": unresolved.height,
        "singletons_attached": 0 if attached is None else attached.height,
    }
    return MatchOutcome(pairs, review, xref, clusters, ids, unresolved, preflight, stats, charts)
