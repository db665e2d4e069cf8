"""Clustering of links into customers: components, cannot-link splits, must-link precedence."""

from __future__ import annotations

import random

import polars as pl

from cdi_pipeline.lib.matching.clustering import cluster, connected_components

EDGE_SCHEMA = {"unique_id_l": pl.String, "unique_id_r": pl.String}
LINK_SCHEMA = {**EDGE_SCHEMA, "match_probability": pl.Float64, "kind": pl.String}


def _edges(pairs: list[tuple[str, str]]) -> pl.DataFrame:
    return pl.DataFrame(pairs, schema=EDGE_SCHEMA, orient="row")


def _links(rows: list[tuple[str, str, float, str]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=LINK_SCHEMA, orient="row")


def _groups(assignment: pl.DataFrame) -> set[frozenset[str]]:
    """The partition an assignment describes, independent of the keys it uses."""
    return {
        frozenset(g)
        for g in assignment.group_by("cluster_key").agg("unique_id").get_column("unique_id")
    }


def _reference_components(nodes: list[str], pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Plain union-find: node -> smallest node of its component."""
    parent = {n: n for n in nodes}

    def find(x: str) -> str:
        while parent[x] != x:
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {n: find(n) for n in nodes}


def test_components_of_a_small_graph() -> None:
    nodes = pl.Series(["a", "b", "c", "d", "e", "f", "g"])
    edges = _edges([("b", "a"), ("c", "b"), ("d", "e"), ("f", "f")])
    out = connected_components(nodes, edges)
    assert dict(out.iter_rows()) == {
        "a": "a", "b": "a", "c": "a",  # a-b-c, given right to left
        "d": "d", "e": "d",
        "f": "f",  # a self-loop is its own component
        "g": "g",  # no edges at all
    }
    assert out.height == nodes.len()


def test_long_chain_in_random_id_order_converges() -> None:
    # 3000 records in one chain whose ids are shuffled along it: the smallest id sits
    # somewhere in the middle and has to reach both ends (a glued "giant cluster").
    ids = [f"r{i:05d}" for i in range(3000)]
    chain = ids.copy()
    random.Random(3).shuffle(chain)
    edges = _edges(list(zip(chain[:-1], chain[1:], strict=True)))
    out = connected_components(pl.Series(ids), edges)
    assert out.height == 3000
    assert out.get_column("cluster_key").unique().to_list() == ["r00000"]


def test_components_match_union_find_on_random_graphs() -> None:
    rng = random.Random(11)
    for _ in range(5):
        nodes = [f"n{i:04d}" for i in range(400)]
        pairs = [(rng.choice(nodes), rng.choice(nodes)) for _ in range(300)]
        out = connected_components(pl.Series(nodes), _edges(pairs))
        assert dict(out.iter_rows()) == _reference_components(nodes, pairs)


def test_cannot_link_splits_a_component_chained_through_model_links() -> None:
    # a-b-c-d held together by model links only; a steward says a and d are different people.
    # The weakest link on the path (c-d, 0.91) is the one given up.
    nodes = pl.Series(["a", "b", "c", "d", "x"])
    links = _links(
        [
            ("a", "b", 0.99, "model"),
            ("b", "c", 0.95, "model"),
            ("c", "d", 0.91, "model"),
        ]
    )
    cannot = _edges([("a", "d")])
    assignment, unresolved = cluster(nodes, links, cannot)
    assert _groups(assignment) == {
        frozenset({"a", "b", "c"}), frozenset({"d"}), frozenset({"x"})
    }
    assert dict(assignment.select("unique_id", "cluster_size").iter_rows()) == {
        "a": 3, "b": 3, "c": 3, "d": 1, "x": 1
    }
    assert unresolved.is_empty()
    # Without the cannot-link it is one component: the split above is the decision's doing.
    together, _ = cluster(nodes, links, cannot.clear())
    assert frozenset({"a", "b", "c", "d"}) in _groups(together)


def test_cannot_link_on_a_direct_link_removes_it() -> None:
    nodes = pl.Series(["a", "b"])
    links = _links([("a", "b", 0.999, "deterministic")])
    assignment, unresolved = cluster(nodes, links, _edges([("a", "b")]))
    assert _groups(assignment) == {frozenset({"a"}), frozenset({"b"})}
    assert unresolved.is_empty()


def test_must_link_beats_stronger_model_evidence() -> None:
    # Model: a-b at 0.999. Steward: b and c are one person, a and c are not.
    # The must-link is settled first, so the (stronger) model link a-b is the one refused.
    nodes = pl.Series(["a", "b", "c"])
    links = _links([("a", "b", 0.999, "model"), ("b", "c", 1.0, "must_link")])
    assignment, unresolved = cluster(nodes, links, _edges([("a", "c")]))
    assert _groups(assignment) == {frozenset({"a"}), frozenset({"b", "c"})}
    assert unresolved.is_empty()


def test_must_link_chain_overrides_cannot_link_and_is_reported() -> None:
    # Two steward must-links chain a and c together although a third decision says they are
    # different: the must-links win and the cannot-link is reported as unresolved.
    nodes = pl.Series(["a", "b", "c"])
    links = _links([("a", "b", 1.0, "must_link"), ("b", "c", 1.0, "must_link")])
    assignment, unresolved = cluster(nodes, links, _edges([("a", "c")]))
    assert _groups(assignment) == {frozenset({"a", "b", "c"})}
    assert unresolved.rows() == [("a", "c")]


def test_results_do_not_depend_on_edge_order() -> None:
    rng = random.Random(5)
    nodes = [f"n{i:03d}" for i in range(120)]
    rows = []
    for _ in range(150):
        a, b = sorted(rng.sample(nodes, 2))
        rows.append((a, b, round(rng.uniform(0.9, 1.0), 3), rng.choice(["model", "model",
                                                                         "deterministic"])))
    links = _links(rows).unique(["unique_id_l", "unique_id_r"], keep="first",
                                maintain_order=True)
    # Cannot-links between records the links connect, so the constrained path is exercised.
    first, _ = cluster(pl.Series(nodes), links, _edges([]))
    big = first.filter(pl.col("cluster_size") == pl.col("cluster_size").max())
    members = big.get_column("unique_id").to_list()
    cannot = _edges([(members[0], members[-1]), (members[1], members[-2])])

    expected, expected_unresolved = cluster(pl.Series(nodes), links, cannot)
    key = dict(expected.select("unique_id", "cluster_key").iter_rows())
    assert len(members) >= 4
    assert key[members[0]] != key[members[-1]] and key[members[1]] != key[members[-2]]
    assert expected_unresolved.is_empty()
    for seed in range(4):
        shuffled_links = links.sample(fraction=1.0, shuffle=True, seed=seed)
        shuffled_nodes = pl.Series(nodes).sample(fraction=1.0, shuffle=True, seed=seed)
        got, got_unresolved = cluster(shuffled_nodes, shuffled_links, cannot.reverse())
        assert got.equals(expected)
        assert got_unresolved.sort(pl.all()).equals(expected_unresolved.sort(pl.all()))


def _dobs(rows: dict[str, str | None]) -> pl.DataFrame:
    return pl.DataFrame(
        {"unique_id": list(rows), "date_of_birth": list(rows.values())}
    ).with_columns(pl.col("date_of_birth").str.to_date())


def test_chain_between_different_birth_dates_is_cut_at_its_weakest_link() -> None:
    # Mother a, son c, and a record b without a birth date that links to both: the chain
    # would make one customer of two people born 30 years apart.
    links = _links([("a", "b", 0.99, "model"), ("b", "c", 0.95, "model"), ("c", "d", 0.99,
                                                                           "model")])
    nodes = pl.Series(["a", "b", "c", "d"])
    dobs = _dobs({"a": "1950-03-04", "b": None, "c": "1980-07-01", "d": "1980-07-01"})
    no_cannot = _edges([])
    together, _ = cluster(nodes, links, no_cannot)
    assert _groups(together) == {frozenset("abcd")}
    apart, unresolved = cluster(nodes, links, no_cannot, dobs)
    assert _groups(apart) == {frozenset("ab"), frozenset("cd")}
    assert unresolved.is_empty()


def test_typo_level_birth_date_differences_do_not_cut() -> None:
    links = _links([("a", "b", 0.99, "model"), ("b", "c", 0.99, "model")])
    nodes = pl.Series(["a", "b", "c"])
    # One digit off, and day and month swapped: the same person typed differently.
    dobs = _dobs({"a": "1965-09-08", "b": "1965-09-09", "c": "1965-08-09"})
    assignment, _ = cluster(nodes, links, _edges([]), dobs)
    assert _groups(assignment) == {frozenset("abc")}


def test_attaching_a_lone_record_respects_birth_dates_and_cannot_links() -> None:
    from cdi_pipeline.lib.matching.clustering import attach_singletons

    # a-b-c chain cut because a and c were born 30 years apart: c must not be attached back.
    links = _links([("a", "b", 0.99, "model"), ("b", "c", 0.95, "model")])
    nodes = pl.Series(["a", "b", "c", "s1", "s2"])
    dobs = _dobs({"a": "1950-03-04", "b": None, "c": "1980-07-01", "s1": None, "s2": None})
    assignment, _ = cluster(nodes, links, _edges([]), dobs)
    scored = _links([("b", "c", 0.95, "model"), ("a", "s1", 0.5, "model"),
                     ("a", "s2", 0.5, "model")])
    cannot = _edges([("s1", "s2")])
    updated, attached = attach_singletons(assignment, scored, cannot, 0.3, dobs)
    groups = _groups(updated)
    assert frozenset("c") in groups
    # s1 and s2 both point at {a, b} but a steward keeps them apart: neither attaches.
    assert attached.is_empty()
    assert {frozenset(["s1"]), frozenset(["s2"])} <= groups


def test_a_component_far_too_large_stops_before_anything_is_assigned() -> None:
    import pytest

    from cdi_pipeline.lib.matching.clustering import ComponentTooLarge

    ids = [f"r{i:03d}" for i in range(50)]
    links = _links([(a, b, 0.99, "model") for a, b in zip(ids, ids[1:], strict=False)])
    with pytest.raises(ComponentTooLarge, match="chain 50 records"):
        cluster(pl.Series(ids), links, _edges([]), max_component_size=20)


def _names(rows: dict[str, tuple[str | None, str | None, bool]]) -> pl.DataFrame:
    return pl.DataFrame(
        [(k, *v) for k, v in rows.items()],
        schema={"unique_id": pl.String, "first_name_key": pl.String,
                "first_name_canonical": pl.String, "first_name_typo": pl.Boolean},
        orient="row",
    )


def test_clearly_different_given_names_split_a_household_chain() -> None:
    # Guus and Arnold share surname, address and a household email: the links chain them
    # through a record without a given name. The strongest links decide who it joins.
    links = _links([("a", "n", 0.99, "model"), ("n", "b", 0.95, "model"),
                    ("a", "b", 0.92, "model")])
    nodes = pl.Series(["a", "b", "n"])
    names = _names({"a": ("guus", "guus", False), "b": ("arnold", "arnold", False),
                    "n": (None, None, None)})
    assignment, _ = cluster(nodes, links, _edges([]), names)
    assert _groups(assignment) == {frozenset("an"), frozenset("b")}


def test_nicknames_typos_and_misspellings_are_no_given_name_conflict() -> None:
    from cdi_pipeline.lib.matching.conflicts import given_names_conflict

    pairs = pl.DataFrame(
        [
            ("kees", "cornelis", "cornelis", "cornelis", False, False, False),  # nickname
            ("emre", "dmre", "emre", "dmre", False, False, False),  # first letter typed wrong
            ("liam", "iliam", "liam", "iliam", False, False, False),  # letter added
            ("rpiya", "priya", "rpiya", "priya", False, False, False),  # swapped
            ("kees", "cornlis", "cornelis", "cornlis", False, True, False),  # misspelt
            ("j", "pieter", "j", "pieter", False, False, False),  # an initial
            ("cor", "cornelia", "cor", "cornelia", False, False, False),  # same initial
            ("guus", "arnold", "guus", "arnold", False, False, True),
        ],
        schema=["a", "b", "ca", "cb", "ta", "tb", "expected"], orient="row",
    )
    got = pairs.select(given_names_conflict(
        pl.col("a"), pl.col("b"), pl.col("ca"), pl.col("cb"), pl.col("ta"), pl.col("tb")
    )).to_series()
    assert got.to_list() == pairs.get_column("expected").to_list()


def test_misspelt_values_are_one_edit_from_a_much_more_common_value() -> None:
    from cdi_pipeline.lib.matching.names import misspelt_values

    frame = pl.DataFrame(
        {"first_name_key": ["cornelis"] * 6 + ["cornlis", "cornleis", "kees", "anna", "anne"]}
    )
    # "anna" and "anne" are one edit apart but equally common: both stay names.
    assert set(misspelt_values(frame, "first_name_key").to_list()) == {"cornlis", "cornleis"}
