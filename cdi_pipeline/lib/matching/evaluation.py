"""Accuracy of clusters against a truth file: pairwise and cluster-level scores.

All figures are computed from counts per (cluster, person) cell, so no pair list is ever
materialised: at a million records that list would not fit in memory.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

TRUTH_COLUMNS = ("source", "source_record_id", "person_id")


def read_truth(path: Path) -> pl.DataFrame:
    """The truth CSV (source, source_record_id, person_id), all strings."""
    frame = pl.read_csv(path, infer_schema=False)
    missing = [c for c in TRUTH_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"truth file {path}: missing columns {missing}; expected {TRUTH_COLUMNS}")
    frame = frame.select(TRUTH_COLUMNS).unique()
    conflicting = frame.filter(pl.len().over("source", "source_record_id") > 1)
    if conflicting.height:
        first = conflicting.row(0, named=True)
        raise ValueError(
            f"truth file {path}: {conflicting.height} rows give one record two persons, "
            f"e.g. {first['source']}/{first['source_record_id']}"
        )
    return frame


def _pairs(n: pl.Expr) -> pl.Expr:
    return (n * (n - 1) / 2).sum()


def score_clusters(assignment: pl.DataFrame, truth: pl.DataFrame) -> dict[str, float]:
    """Pairwise precision/recall/F1, B-cubed precision/recall/F1 and share of persons exact.

    `assignment` has source, source_record_id, customer_id. Only records present in both
    tables are scored (records the truth does not know cannot be judged).
    """
    joined = assignment.join(truth, on=["source", "source_record_id"], how="inner")
    cells = joined.group_by("customer_id", "person_id").agg(pl.len().alias("n"))
    cluster_sizes = cells.group_by("customer_id").agg(pl.col("n").sum().alias("c"))
    person_sizes = cells.group_by("person_id").agg(pl.col("n").sum().alias("p"))
    cells = cells.join(cluster_sizes, on="customer_id").join(person_sizes, on="person_id")

    true_positive = cells.select(_pairs(pl.col("n"))).item() or 0.0
    predicted = cluster_sizes.select(_pairs(pl.col("c"))).item() or 0.0
    actual = person_sizes.select(_pairs(pl.col("p"))).item() or 0.0
    precision = true_positive / predicted if predicted else 1.0
    recall = true_positive / actual if actual else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0

    # B-cubed: each record's share of its cluster that is its person, and vice versa;
    # summed per cell as n * (n / c) and n * (n / p).
    records = joined.height
    b3 = cells.select(
        (pl.col("n") * pl.col("n") / pl.col("c")).sum().alias("precision"),
        (pl.col("n") * pl.col("n") / pl.col("p")).sum().alias("recall"),
    ).row(0, named=True)
    b3_precision = b3["precision"] / records if records else 1.0
    b3_recall = b3["recall"] / records if records else 1.0
    b3_f1 = (
        2 * b3_precision * b3_recall / (b3_precision + b3_recall)
        if b3_precision + b3_recall
        else 0.0
    )
    # A person is reproduced exactly when one cluster holds all their records and nothing else.
    exact = cells.filter((pl.col("n") == pl.col("c")) & (pl.col("n") == pl.col("p"))).height
    persons = person_sizes.height
    return {
        "records_scored": float(records),
        "persons": float(persons),
        "pairwise_precision": precision,
        "pairwise_recall": recall,
        "pairwise_f1": f1,
        "bcubed_precision": b3_precision,
        "bcubed_recall": b3_recall,
        "bcubed_f1": b3_f1,
        "persons_exact_share": exact / persons if persons else 1.0,
    }


def pair_errors(
    assignment: pl.DataFrame, truth: pl.DataFrame, limit: int = 20
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Examples of wrongly merged persons and wrongly split persons, for the check's metadata."""
    joined = assignment.join(truth, on=["source", "source_record_id"], how="inner")

    def impure(group: str, other: str, count: str) -> pl.DataFrame:
        return (
            joined.group_by(group)
            .agg(pl.col(other).n_unique().alias(count), pl.len().alias("records"))
            .filter(pl.col(count) > 1)
            .sort(count, "records", descending=True)
            .head(limit)
        )

    return impure("customer_id", "person_id", "persons"), impure(
        "person_id", "customer_id", "customers"
    )
