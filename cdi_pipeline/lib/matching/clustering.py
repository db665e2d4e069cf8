"""Clustering of linked pairs into customers, respecting cannot-link decisions.

Connected components are found set-wise (SciPy's sparse-graph components over integer-numbered
ids). Only components that hold both records of a cannot-link
decision are re-clustered edge by edge, strongest evidence first, refusing any union that
would join two records a steward (or a rule) said are different people: those components are
few and small, so that loop never touches the bulk of the data.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy import sparse
from scipy.sparse import csgraph

from cdi_pipeline.lib.matching.conflicts import (
    NODE,
    conflict_fields,
    member_conflicts,
    records_conflict,
)

# Evidence order for the constrained re-clustering: steward first, then rules, then model.
_PRIORITY = {"must_link": 0, "deterministic": 1, "model": 2}


def connected_components(nodes: pl.Series, edges: pl.DataFrame) -> pl.DataFrame:
    """unique_id -> cluster_key (the smallest unique_id of its component)."""
    # Ids are numbered in sorted order, so the smallest number of a component is its
    # smallest unique_id. SciPy's union-find over a sparse matrix labels all nodes in one
    # pass, where label propagation in polars would need a join per round.
    ids = pl.DataFrame({NODE: nodes.unique().sort()}).with_row_index("n")
    numbered = edges.select("unique_id_l", "unique_id_r").join(
        ids.rename({NODE: "unique_id_l", "n": "a"}), on="unique_id_l"
    ).join(ids.rename({NODE: "unique_id_r", "n": "b"}), on="unique_id_r")
    size = ids.height
    graph = sparse.coo_matrix(
        (np.ones(numbered.height, dtype=np.int8),
         (numbered.get_column("a").to_numpy(), numbered.get_column("b").to_numpy())),
        shape=(size, size),
    ).tocsr()
    _, labels = csgraph.connected_components(graph, directed=False)
    keyed = ids.with_columns(component=pl.Series(labels, dtype=pl.Int64)).with_columns(
        pl.col("n").min().over("component").alias("root")
    )
    return keyed.join(
        ids.rename({"n": "root", NODE: "cluster_key"}), on="root"
    ).select(NODE, "cluster_key")


def _constrained(edges: pl.DataFrame, forbidden: set[tuple[str, str]]) -> dict[str, str]:
    """Greedy union in evidence order, skipping unions that join a forbidden pair."""
    parent: dict[str, str] = {}
    members: dict[str, set[str]] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        members.setdefault(x, {x})
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    blocked_by: dict[str, set[str]] = {}
    for a, b in forbidden:
        blocked_by.setdefault(a, set()).add(b)
        blocked_by.setdefault(b, set()).add(a)
    ordered = edges.sort(["priority", "match_probability", "unique_id_l", "unique_id_r"],
                         descending=[False, True, False, False])
    for a, b, kind in ordered.select("unique_id_l", "unique_id_r", "kind").iter_rows():
        ra, rb = find(a), find(b)
        if ra == rb:
            continue
        small, large = sorted((ra, rb), key=lambda r: len(members[r]))
        conflict = kind != "must_link" and any(
            blocked_by.get(x, set()) & members[large] for x in members[small]
        )
        if conflict:
            continue
        parent[small] = large
        members[large] |= members.pop(small)
    return {x: find(x) for x in list(parent)}


class ComponentTooLarge(RuntimeError):
    """Links chained so many records that the model or the rules have gone wrong."""


def cluster(
    nodes: pl.Series,
    links: pl.DataFrame,
    cannot_link: pl.DataFrame,
    member_fields: pl.DataFrame | None = None,
    max_component_size: int | None = None,
    birth_dates_yield_to_links: bool = False,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Cluster nodes over `links` (unique_id_l, unique_id_r, match_probability, kind).

    With `birth_dates_yield_to_links`, two records of one given name linked directly keep
    their link despite a birth-date conflict (see `same_given_name`).

    With `member_fields` (unique_id and any of CONFLICT_COLUMNS), members of one component
    that are two people (birth dates or given names in conflict) are kept apart too, so a
    chain cannot glue a family (or a whole surname) into one customer. Returns (assignment:
    unique_id, cluster_key, cluster_size) and the cannot-link pairs that could not be
    honoured because must-link decisions chain them.
    """
    links = links.join(
        cannot_link.select("unique_id_l", "unique_id_r"), on=["unique_id_l", "unique_id_r"],
        how="anti",
    )
    assignment = connected_components(nodes, links)
    if max_component_size is not None:
        sizes = assignment.group_by("cluster_key").agg(pl.len().alias("n"))
        largest = sizes.sort("n", descending=True).head(1)
        if largest.height and largest.item(0, "n") > max_component_size:
            # Stop before anything is stored: such a component means a collapsed model or a
            # generic value gluing people together, and ids assigned from it would spread
            # wrong merges into the id history for good.
            raise ComponentTooLarge(
                f"links chain {largest.item(0, 'n'):,} records into one component (record "
                f"{largest.item(0, 'cluster_key')}); the limit is {max_component_size:,}. "
                "Nothing was written. Inspect the model (matching/model metadata) and shared "
                "values (matching.max_block_size)."
            )
    if member_fields is not None:
        cannot_link = pl.concat(
            [
                cannot_link.select("unique_id_l", "unique_id_r"),
                # Two records of one given name that the model links directly despite
                # their birth dates had that disagreement weighed as evidence (see
                # `same_given_name`); other conflicts stand.
                member_conflicts(assignment, member_fields).join(
                    links.select("unique_id_l", "unique_id_r", pl.lit(True).alias("linked")),
                    on=["unique_id_l", "unique_id_r"], how="left",
                ).filter(~(pl.col("linked").fill_null(False) & pl.col("same_given_name")
                           & pl.lit(birth_dates_yield_to_links)))
                .select("unique_id_l", "unique_id_r"),
            ]
        ).unique()
    violated = (
        cannot_link.join(assignment, left_on="unique_id_l", right_on=NODE)
        .join(assignment, left_on="unique_id_r", right_on=NODE, suffix="_r")
        .filter(pl.col("cluster_key") == pl.col("cluster_key_r"))
    )
    unresolved = cannot_link.clear().select("unique_id_l", "unique_id_r")
    if violated.height:
        affected = violated.get_column("cluster_key").unique()
        members = assignment.filter(pl.col("cluster_key").is_in(affected.implode()))
        sub_edges = links.join(members.select(NODE), left_on="unique_id_l", right_on=NODE,
                               how="semi").with_columns(
            pl.col("kind").replace_strict(_PRIORITY, return_dtype=pl.Int8).alias("priority")
        )
        forbidden = {(a, b) for a, b in violated.select("unique_id_l", "unique_id_r").iter_rows()}
        roots = _constrained(sub_edges, forbidden)
        regrouped = pl.DataFrame(
            {NODE: list(roots), "root": list(roots.values())}, schema={NODE: pl.String,
                                                                      "root": pl.String}
        )
        regrouped = members.select(NODE).join(regrouped, on=NODE, how="left").with_columns(
            pl.col("root").fill_null(pl.col(NODE))
        ).with_columns(pl.col(NODE).min().over("root").alias("cluster_key")).select(
            NODE, "cluster_key"
        )
        assignment = pl.concat(
            [assignment.join(members.select(NODE), on=NODE, how="anti"), regrouped]
        )
        unresolved = (
            violated.select("unique_id_l", "unique_id_r")
            .join(regrouped, left_on="unique_id_l", right_on=NODE)
            .join(regrouped, left_on="unique_id_r", right_on=NODE, suffix="_r")
            .filter(pl.col("cluster_key") == pl.col("cluster_key_r"))
            .select("unique_id_l", "unique_id_r")
        )
    assignment = assignment.with_columns(
        pl.len().over("cluster_key").cast(pl.Int64).alias("cluster_size")
    ).sort(NODE)
    return assignment, unresolved


def attach_singletons(
    assignment: pl.DataFrame,
    scored: pl.DataFrame,
    cannot_link: pl.DataFrame,
    min_probability: float,
    member_fields: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Attach a record left alone to the one cluster its plausible pairs all point into.

    A sparse record (a support ticket with only a name) rarely reaches the threshold on its
    own, yet when every pair above `min_probability` leads into the same cluster there is no
    competing candidate: it joins that cluster. Two candidate clusters (namesakes) or a
    cannot-link with any member leave it alone. Returns the new assignment and the
    attachments (unique_id, cluster_key, match_probability).
    """
    alone = assignment.filter(pl.col("cluster_size") == 1).select(NODE)
    both = pl.concat(
        [
            scored.select(pl.col("unique_id_l").alias(NODE), pl.col("unique_id_r").alias("other"),
                          "match_probability"),
            scored.select(pl.col("unique_id_r").alias(NODE), pl.col("unique_id_l").alias("other"),
                          "match_probability"),
        ]
    ).filter(pl.col("match_probability") >= min_probability)
    # Established clusters are the candidates: two lone tickets of the same name both
    # attach to the customer they point at, rather than blocking each other. Only a record
    # with no established cluster in reach looks at other lone records: a sparse ticket and
    # the one full record of its person (no other source knows them) then still meet.
    candidates = both.join(alone, on=NODE).join(
        assignment.select(pl.col(NODE).alias("other"), "cluster_key", "cluster_size"),
        on="other",
    )
    reaches_established = (
        candidates.filter(pl.col("cluster_size") > 1).select(NODE).unique()
    )
    candidates = pl.concat([
        candidates.filter(pl.col("cluster_size") > 1),
        candidates.filter(pl.col("cluster_size") == 1)
        .join(reaches_established, on=NODE, how="anti"),
    ]).drop("cluster_size")
    forbidden = pl.concat(
        [
            cannot_link.select(pl.col("unique_id_l").alias(NODE), pl.col("unique_id_r").alias("o")),
            cannot_link.select(pl.col("unique_id_r").alias(NODE), pl.col("unique_id_l").alias("o")),
        ]
    ).join(assignment.select(pl.col(NODE).alias("o"), "cluster_key"), on="o")
    candidates = candidates.join(forbidden.select(NODE, "cluster_key"), on=[NODE, "cluster_key"],
                                 how="anti")
    if member_fields is not None:
        # A conflict (birth date, given name) with any member of the target cluster rules
        # it out.
        cols = conflict_fields(member_fields)
        fields = member_fields.select(NODE, *cols)
        clash = (
            candidates.select(NODE, "cluster_key").unique()
            .join(fields, on=NODE)
            .join(assignment.select(pl.col(NODE).alias("member"), "cluster_key"),
                  on="cluster_key")
            .join(fields.rename({NODE: "member"}), on="member", suffix="_m")
            .filter(records_conflict(cols, "_m"))
            .select(NODE, "cluster_key").unique()
        )
        candidates = candidates.join(clash, on=[NODE, "cluster_key"], how="anti")
    chosen = (
        candidates.group_by(NODE)
        .agg(
            pl.col("cluster_key").n_unique().alias("clusters"),
            pl.col("cluster_key").first().alias("cluster_key"),
            pl.col("match_probability").max(),
        )
        .filter(pl.col("clusters") == 1)
        .drop("clusters")
    )
    # Between lone records: two that choose each other become one customer (the larger id
    # joins the smaller); a lone target that itself attaches elsewhere is no target (its
    # new cluster was not checked against the record pointing at it).
    movers = chosen.select(pl.col(NODE).alias("cluster_key"), pl.col("cluster_key").alias("t"))
    chosen = (
        chosen.join(movers, on="cluster_key", how="left")
        .filter(pl.col("t").is_null() | ((pl.col("t") == pl.col(NODE))
                                         & (pl.col(NODE) > pl.col("cluster_key"))))
        .drop("t")
    )
    # Two records attaching to the same cluster that must stay apart (a steward's
    # cannot-link, or birth dates in conflict): neither attaches.
    pairs_into_same = chosen.select(NODE, "cluster_key").join(
        chosen.select(pl.col(NODE).alias("o"), "cluster_key"), on="cluster_key"
    ).filter(pl.col(NODE) < pl.col("o"))
    apart = pairs_into_same.join(
        cannot_link.select(pl.col("unique_id_l").alias(NODE), pl.col("unique_id_r").alias("o")),
        on=[NODE, "o"], how="semi",
    )
    if member_fields is not None:
        cols = conflict_fields(member_fields)
        fields = member_fields.select(NODE, *cols)
        apart = pl.concat([
            apart,
            pairs_into_same.join(fields, on=NODE)
            .join(fields.rename({NODE: "o"}), on="o", suffix="_o")
            .filter(records_conflict(cols, "_o"))
            .select(NODE, "cluster_key", "o"),
        ])
    excluded = pl.concat([apart.select(NODE), apart.select(pl.col("o").alias(NODE))]).unique()
    chosen = chosen.join(excluded, on=NODE, how="anti")
    updated = (
        assignment.join(chosen.select(NODE, pl.col("cluster_key").alias("new_key")), on=NODE,
                        how="left")
        .with_columns(pl.coalesce("new_key", "cluster_key").alias("cluster_key"))
        .drop("new_key")
        .with_columns(pl.len().over("cluster_key").cast(pl.Int64).alias("cluster_size"))
        .sort(NODE)
    )
    return updated, chosen.sort(NODE)
