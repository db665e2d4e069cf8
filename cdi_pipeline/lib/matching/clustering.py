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

from cdi_pipeline.lib.contracts import IDENTIFIER_PREFIX

NODE = "unique_id"
# Evidence order for the constrained re-clustering: steward first, then rules, then model.
_PRIORITY = {"must_link": 0, "deterministic": 1, "model": 2}


def connected_components(nodes: pl.Series, edges: pl.DataFrame) -> pl.DataFrame:
    """unique_id -> cluster_key (the smallest unique_id of its component)."""
    # Ids are numbered in sorted order, so the smallest number of a component is its
    # smallest unique_id. SciPy's union-find over a sparse matrix labels a million nodes in
    # well under a second; the label propagation in polars it replaced needed a join per
    # round and took 4.6 s at a million records.
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


def birth_dates_conflict(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    """True when two birth dates differ by more than a typo.

    "More than a typo": over a month apart, more than one digit different, and not day and
    month swapped. Null on either side is no conflict.
    """
    left, right = a.dt.strftime("%Y%m%d"), b.dt.strftime("%Y%m%d")
    digits_apart = pl.sum_horizontal(
        [(left.str.slice(i, 1) != right.str.slice(i, 1)).cast(pl.Int8) for i in range(8)]
    )
    swapped = (a.dt.year() == b.dt.year()) & (a.dt.month() == b.dt.day()) & (
        a.dt.day() == b.dt.month()
    )
    far = (a - b).dt.total_days().abs() > 31
    return (far & (digits_apart > 1) & ~swapped).fill_null(False)


def given_names_conflict(
    a: pl.Expr, b: pl.Expr, a_canonical: pl.Expr, b_canonical: pl.Expr,
    a_typo: pl.Expr | None = None, b_typo: pl.Expr | None = None,
) -> pl.Expr:
    """True when two given names are clearly two different names.

    "Clearly": both written out (two letters or more, not an initial), neither a likely
    misspelling of a more common name (`a_typo`, `b_typo`: "cornlis" is no evidence
    against "kees"), starting with different letters, not one name by the nickname table
    (equal canonical forms), and not one typo apart. With the first letters different, a
    single typo must be at the first letter: replaced, dropped, added, or swapped with the
    second. Null on either side is no conflict. Names sharing a first letter never conflict
    here: short forms (Cor and Cornelia, Alex and Alexandra) and nicknames the table lacks
    mostly keep the initial.

    Household members share surname, address, landline and often an email: evidence the
    model counts as independent, so two of them can outscore the threshold on those alone.
    Their given names are what tells them apart.
    """
    written = (a.str.len_chars() >= 2) & (b.str.len_chars() >= 2)
    if a_typo is not None and b_typo is not None:
        written = written & ~a_typo.fill_null(False) & ~b_typo.fill_null(False)
    typo = (
        (a.str.slice(1) == b.str.slice(1))
        | (a.str.slice(1) == b)
        | (b.str.slice(1) == a)
        | (
            (a.str.slice(0, 1) == b.str.slice(1, 1))
            & (a.str.slice(1, 1) == b.str.slice(0, 1))
            & (a.str.slice(2) == b.str.slice(2))
        )
    )
    nickname = (a_canonical == b_canonical).fill_null(False)
    return (
        written & (a.str.slice(0, 1) != b.str.slice(0, 1)) & ~nickname & ~typo
    ).fill_null(False)


# Columns of a record that tell two people apart when two records disagree on them.
CONFLICT_COLUMNS = ("date_of_birth", "first_name_key", "first_name_canonical", "first_name_typo",
                    "last_name_key")
# Columns holding a strong agreement key (`strong_agreement_keys`): two records with the same
# value agree on something only one person has, which outweighs any conflict above.
STRONG_PREFIX = "strong_"
# The kinds of strong agreement (matching.strong_agreement in the registry).
STRONG_AGREEMENTS = ("identifiers", "email_and_birth_date")


def strong_agreement_keys(frame: pl.DataFrame, kinds: list[str] | tuple[str, ...]) -> pl.DataFrame:
    """unique_id plus one `strong_*` column per kind of strong agreement in `kinds`.

    `identifiers`: every declared identifier (`id_*` columns), each its own key; an `id_<name>`
    entry names one identifier. `email_and_birth_date`: the email and the birth date together
    (both present). Two records holding the same key are one person whatever else they
    disagree on: a national id or loyalty number is not shared within a family, and a family
    sharing an email rarely shares a birth date with it.
    """
    identifiers = [c for c in frame.columns if c.startswith(IDENTIFIER_PREFIX)]
    chosen = [c for c in identifiers if "identifiers" in kinds or c in kinds]
    keys = [pl.col(c).alias(f"{STRONG_PREFIX}{c}") for c in chosen]
    if "email_and_birth_date" in kinds and {"email", "date_of_birth"} <= set(frame.columns):
        keys.append(pl.concat_str(pl.col("email"), pl.lit("|"),
                                  pl.col("date_of_birth").cast(pl.String))
                    .alias(f"{STRONG_PREFIX}email_and_birth_date"))
    return frame.select(NODE, *keys)


def strongly_agree(columns: list[str] | tuple[str, ...], suffix: str) -> pl.Expr:
    """True when a row's record and the other record (columns + suffix) share a strong key."""
    keys = [c for c in columns if c.startswith(STRONG_PREFIX)]
    if not keys:
        return pl.lit(False)
    return pl.any_horizontal((pl.col(c) == pl.col(f"{c}{suffix}")).fill_null(False)
                             for c in keys)


def names_swapped(suffix: str, other: str) -> pl.Expr:
    """True when one record's given name is the other's surname (the fields swapped)."""
    return (
        (pl.col(f"first_name_key{suffix}") == pl.col(f"last_name_key{other}"))
        | (pl.col(f"last_name_key{suffix}") == pl.col(f"first_name_key{other}"))
    ).fill_null(False)


def same_given_name(suffix: str, other: str) -> pl.Expr:
    """True when both records hold a given name and it is one name (by the nickname table).

    Only then does a birth-date conflict give way to a direct model link: a record without a
    given name that shares a household's surname, address and email scores high on that
    correlated evidence alone, while one given name besides it leaves a mistyped birth date
    the likelier story.
    """
    return (pl.col(f"first_name_canonical{suffix}")
            == pl.col(f"first_name_canonical{other}")).fill_null(False)


def records_conflict(columns: list[str] | tuple[str, ...], suffix: str) -> pl.Expr:
    """True when a row's record (columns) and other record (columns + suffix) are two
    people: birth dates further apart than a typo, or clearly different given names (each
    checked only when its columns are present), unless they share a strong agreement key
    (`strong_*` columns, see `strong_agreement_keys`)."""
    checks = []
    if "date_of_birth" in columns:
        checks.append(birth_dates_conflict(pl.col("date_of_birth"),
                                           pl.col(f"date_of_birth{suffix}")))
    if "first_name_key" in columns and "first_name_canonical" in columns:
        typo = "first_name_typo" in columns
        given = given_names_conflict(
            pl.col("first_name_key"), pl.col(f"first_name_key{suffix}"),
            pl.col("first_name_canonical"), pl.col(f"first_name_canonical{suffix}"),
            pl.col("first_name_typo") if typo else None,
            pl.col(f"first_name_typo{suffix}") if typo else None,
        )
        if "last_name_key" in columns:
            # A given name written as the other record's surname is a swap of the two name
            # fields ("Heron Alicia" / "Alicia Heron"), not another person.
            given = given & ~names_swapped("", suffix)
        checks.append(given)
    if not checks:
        return pl.lit(False)
    return pl.any_horizontal(checks) & ~strongly_agree(columns, suffix)


def _conflict_fields(fields: pl.DataFrame) -> list[str]:
    return [c for c in fields.columns if c in CONFLICT_COLUMNS or c.startswith(STRONG_PREFIX)]


def member_conflicts(assignment: pl.DataFrame, member_fields: pl.DataFrame) -> pl.DataFrame:
    """Pairs inside one component whose records are two people (see `records_conflict`).

    A chain A-B-C can join A and C although nobody compared them; if their birth dates
    disagree, or their given names clearly do, they are different people, and the pair
    becomes a cannot-link. `member_fields` holds unique_id, any of CONFLICT_COLUMNS and any
    strong agreement keys.
    """
    cols = _conflict_fields(member_fields)
    members = assignment.select(NODE, "cluster_key").join(
        member_fields.select(NODE, *cols).filter(pl.any_horizontal(
            pl.col(c).is_not_null() for c in cols if c in ("date_of_birth", "first_name_key")
        )),
        on=NODE,
    ).filter(pl.len().over("cluster_key") > 1)
    pairs = members.join(members, on="cluster_key", suffix="_r").filter(
        pl.col(NODE) < pl.col(f"{NODE}_r")
    )
    return pairs.filter(records_conflict(cols, "_r")).select(
        pl.col(NODE).alias("unique_id_l"), pl.col(f"{NODE}_r").alias("unique_id_r"),
        same_given_name("", "_r").alias("same_given_name")
        if "first_name_canonical" in cols else pl.lit(False).alias("same_given_name"),
    )


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
        cols = _conflict_fields(member_fields)
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
        cols = _conflict_fields(member_fields)
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
