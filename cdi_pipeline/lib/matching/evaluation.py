"""Accuracy of clusters against a truth file: pairwise and cluster-level scores.

All figures are computed from counts per (cluster, person) cell, so no pair list is ever
materialised: it grows with the square of the cluster sizes and would not fit in memory on a
large input.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from cdi_pipeline.lib.contracts import IDENTIFIER_PREFIX

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


# Values that identify a person beyond their name. A split record that shares none of them
# with its person's other records is tied to them by its name alone.
EVIDENCE_COLUMNS = ("email", "phone", "date_of_birth", "postcode")


def evidence_limits(records: pl.DataFrame, assignment: pl.DataFrame,
                    truth: pl.DataFrame) -> dict[str, float]:
    """How far the records' own evidence can take recall, judged against the truth.

    `records` is cleaned.customer_records (source, source_record_id, first_name_key,
    last_name_key, the evidence columns and id_* identifiers); `assignment` has customer_id.

    - `recall_if_value_shared_attached`: pairwise recall if every record split from its
      person's main customer (the one holding most of the person's records) joined it
      whenever it shares a value with one of that customer's records: the e-mail, the
      e-mail's local part (a typo in the domain), phone, birth date, postcode or an
      identifier. Optimistic: nothing is lost on the way and no wrong link is added.
      `f1_if_value_shared_attached` is the pairwise F1 at that recall and today's precision.
    - `split_records_name_only_share`: the share of split records that share no such value.
    - `lone_name_attach_precision`: for records alone in their customer whose full name
      (first and last name keys) exactly one other customer holds, the share that belong to
      that customer. It is what attaching on a name alone would be right about.
    """
    keys = ["source", "source_record_id"]
    evidence = [c for c in (*EVIDENCE_COLUMNS,
                            *(c for c in records.columns if c.startswith(IDENTIFIER_PREFIX)))
                if c in records.columns]
    joined = (
        records.select(*keys, "first_name_key", "last_name_key", *evidence)
        .with_columns(pl.col("email").str.split("@").list.first().alias("email_local"))
        .join(assignment.select(*keys, "customer_id"), on=keys)
        .join(truth, on=keys)
    )
    cells = joined.group_by("person_id", "customer_id").agg(pl.len().alias("n"))
    # Ties go to the smaller id, so the figure does not depend on hash order.
    main = (cells.sort("n", "customer_id", descending=[True, False])
            .group_by("person_id", maintain_order=True).first()
            .rename({"customer_id": "main_id", "n": "main_n"}))
    with_main = joined.join(main, on="person_id")
    split = with_main.filter(pl.col("customer_id") != pl.col("main_id"))
    in_main = with_main.filter(pl.col("customer_id") == pl.col("main_id"))
    shared = pl.concat([
        split.select(*keys, "person_id", column).drop_nulls(column)
        .join(in_main.select("person_id", column).drop_nulls().unique(),
              on=["person_id", column], how="semi").select(keys)
        for column in (*evidence, "email_local")
    ]).unique()
    moved = split.join(shared, on=keys, how="semi")
    # Pairs gained: each moved record with the main customer's records, and moved records of
    # one person with each other when they came from different customers.
    from_customer = moved.group_by("person_id", "customer_id").len()
    of_person = from_customer.group_by("person_id").agg(pl.col("len").sum())
    recovered = (moved.get_column("main_n").sum()
                 + (of_person.select(_pairs(pl.col("len"))).item() or 0.0)
                 - (from_customer.select(_pairs(pl.col("len"))).item() or 0.0))

    scores = score_clusters(assignment, truth)
    actual = (joined.group_by("person_id").len()
              .select(_pairs(pl.col("len"))).item() or 0.0)
    true_positive = scores["pairwise_recall"] * actual
    recall_ceiling = (true_positive + recovered) / actual if actual else 1.0
    precision = scores["pairwise_precision"]

    name = ["first_name_key", "last_name_key"]
    named = joined.drop_nulls(name)
    alone = joined.group_by("customer_id").len().filter(pl.col("len") == 1)
    lone = named.join(alone, on="customer_id", how="semi")
    holders = named.select(*name, "customer_id", "person_id")
    # The lone record's own customer is one of the two holders.
    two = (holders.group_by(name).agg(pl.col("customer_id").n_unique().alias("customers"))
           .filter(pl.col("customers") == 2))
    guesses = (
        lone.join(two, on=name, how="semi")
        .join(holders, on=name, suffix="_other")
        .filter(pl.col("customer_id_other") != pl.col("customer_id"))
        .group_by(keys).agg((pl.col("person_id_other") == pl.col("person_id")).any()
                            .alias("right"))
    )
    return {
        "recall_if_value_shared_attached": recall_ceiling,
        "f1_if_value_shared_attached": (
            2 * precision * recall_ceiling / (precision + recall_ceiling)
            if precision + recall_ceiling else 0.0),
        "split_records_name_only_share": (
            1 - shared.height / split.height if split.height else 0.0),
        "lone_name_attach_precision": (
            guesses.get_column("right").mean() if guesses.height else float("nan")),
        "lone_name_attach_candidates": float(guesses.height),
    }
