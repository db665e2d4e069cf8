"""The tables one matching pass writes, built from its decisions, clusters and new ids: the
decided pairs, the review queue, the identity map (xref) and one row per customer."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from cdi_pipeline.lib.matching.decisions import Decisions
from cdi_pipeline.lib.matching.ids import IdAssignment
from cdi_pipeline.lib.matching.input import UNIQUE_ID
from cdi_pipeline.lib.matching.scoring import Scoring
from cdi_pipeline.lib.registry import MatchingConfig

# Record fields shown side by side in the review queue.
REVIEW_FIELDS = (
    "first_name_key", "last_name_key", "date_of_birth", "email", "phone", "postcode",
    "house_number",
)


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


def match_outcome(
    frame: pl.DataFrame,
    scoring: Scoring,
    overrides: pl.DataFrame,
    decided: Decisions,
    assignment: pl.DataFrame,
    attached: pl.DataFrame | None,
    unresolved: pl.DataFrame,
    ids: IdAssignment,
    config: MatchingConfig,
    *,
    run_id: str,
    model_version: str,
    now: datetime,
) -> MatchOutcome:
    """The pass's tables and statistics: the `decided` pairs, clustered into `assignment`
    (the singletons `attached` included, the cannot-links left `unresolved`), under the `ids`
    assigned from the previous run's."""
    scored, preflight, charts, comparisons = scoring
    customer = ids.assignment.select(UNIQUE_ID, "customer_id")
    pairs = decided.pairs.join(customer, left_on="unique_id_l", right_on=UNIQUE_ID,
                               how="left").join(
        customer, left_on="unique_id_r", right_on=UNIQUE_ID, how="left", suffix="_r"
    ).with_columns(
        (pl.col("customer_id") == pl.col("customer_id_r")).alias("same_customer"),
        *_split_key("l"),
        *_split_key("r"),
    ).drop("customer_id", "customer_id_r")
    review = review_queue(pairs, frame, config.match_threshold, config.review_band)
    # Links clustering refused do not count for a customer's confidence or strength.
    in_cluster_links = decided.links.join(
        customer, left_on="unique_id_l", right_on=UNIQUE_ID
    ).join(
        customer, left_on="unique_id_r", right_on=UNIQUE_ID, suffix="_r"
    ).filter(pl.col("customer_id") == pl.col("customer_id_r"))
    xref = identity_map(frame, ids, assignment, in_cluster_links, attached,
                        run_id=run_id, model_version=model_version, now=now)
    clusters = customer_clusters(xref, in_cluster_links)
    links, cannot = decided.links, decided.cannot
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
    return MatchOutcome(stored_pairs(pairs), review, xref, clusters, ids, unresolved,
                        preflight, stats, charts)


def review_queue(
    pairs: pl.DataFrame, frame: pl.DataFrame, threshold: float, band: tuple[float, float],
) -> pl.DataFrame:
    """The model's pairs with a probability in `band` that no steward or rule decided, closest
    to the `threshold` first, both records side by side with the suggested override."""
    low, high = band
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
    return review.select(
        "source_l", "source_record_id_l", "source_r", "source_record_id_r",
        "match_probability", "same_customer", "suggested_action",
        *[f"{f}{s}" for f in REVIEW_FIELDS if f in frame.columns for s in ("", "_r")],
        *[c for c in review.columns if c.startswith("mw_")],
        "distance_to_threshold",
    ).rename({f: f"{f}_l" for f in REVIEW_FIELDS if f in frame.columns})


def stored_pairs(pairs: pl.DataFrame) -> pl.DataFrame:
    """The decided pairs as stored: records named by source and record id, the way a steward
    writes them, how each pair was decided first."""
    lead = ["source_l", "source_record_id_l", "source_r", "source_record_id_r",
            "match_probability", "match_weight", "decided_by_kind", "rule_fired", "decision",
            "decided_by", "reason", "is_link", "same_customer"]
    rest = [c for c in pairs.columns if c not in lead and c not in ("unique_id_l", "unique_id_r")]
    return pairs.select(*lead, *rest).sort("source_l", "source_record_id_l", "source_r",
                                           "source_record_id_r")


def identity_map(
    frame: pl.DataFrame, ids: IdAssignment, assignment: pl.DataFrame,
    in_cluster_links: pl.DataFrame, attached: pl.DataFrame | None, *,
    run_id: str, model_version: str, now: datetime,
) -> pl.DataFrame:
    """The xref: every record with its customer id, cluster size and membership confidence.

    A record's confidence is its strongest link inside its own cluster; a record attached
    to a cluster, its attaching pair.
    """
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
    return (
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


def customer_clusters(xref: pl.DataFrame, in_cluster_links: pl.DataFrame) -> pl.DataFrame:
    """One row per customer: records, sources and the strength of the links inside it."""
    return (
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
