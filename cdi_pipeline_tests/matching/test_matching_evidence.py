"""Conflicts are evidence, not vetoes: agreement only one person can have outweighs them.

A birth date further apart than a typo, or clearly different given names, keeps two records
apart (household members share surname, address and phone), unless the two records share a
declared identifier or the same email and birth date (`matching.strong_agreement`), and a
given name written in the surname field is a swap, not another person.
"""

from __future__ import annotations

import polars as pl
import pytest

from cdi_pipeline.lib.matching.clustering import cluster
from cdi_pipeline.lib.matching.conflicts import strong_agreement_keys
from cdi_pipeline.lib.matching.decisions import birth_date_conflict_pairs
from cdi_pipeline.lib.registry import MatchingConfig


def _links(rows: list[tuple[str, str, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        {"unique_id_l": [r[0] for r in rows], "unique_id_r": [r[1] for r in rows],
         "match_probability": [r[2] for r in rows], "kind": ["model"] * len(rows)}
    )


NO_CANNOT = pl.DataFrame(schema={"unique_id_l": pl.String, "unique_id_r": pl.String})


def _records(rows: dict[str, dict]) -> pl.DataFrame:
    columns = ("first_name_key", "first_name_canonical", "first_name_typo", "last_name_key",
               "date_of_birth", "email", "id_ssn")
    return pl.DataFrame(
        {"unique_id": list(rows),
         **{c: [r.get(c) for r in rows.values()] for c in columns}},
        schema_overrides={"first_name_typo": pl.Boolean, "date_of_birth": pl.String},
    ).with_columns(pl.col("date_of_birth").str.to_date(), pl.col("first_name_typo")
                   .fill_null(False))


def _groups(assignment: pl.DataFrame) -> set[frozenset[str]]:
    return {frozenset(g) for g in assignment.group_by("cluster_key").agg("unique_id")
            .get_column("unique_id").to_list()}


def _member_fields(records: pl.DataFrame, kinds: list[str]) -> pl.DataFrame:
    apart = records.select("unique_id", "date_of_birth", "first_name_key",
                           "first_name_canonical", "first_name_typo", "last_name_key")
    return apart.join(strong_agreement_keys(records, kinds), on="unique_id", how="left")


# Grace and Paige Sherriff, one national id: FEBRL replaced the given name. Jan and Kees
# Bakker, same surname, no shared id: a father and son, kept apart.
RECORDS = _records({
    "a": {"first_name_key": "grace", "first_name_canonical": "grace", "last_name_key": "sherriff",
          "date_of_birth": "1997-09-13", "id_ssn": "2181571"},
    "b": {"first_name_key": "paige", "first_name_canonical": "paige", "last_name_key": "sherriff",
          "date_of_birth": "1979-09-13", "id_ssn": "2181571"},
    "c": {"first_name_key": "jan", "first_name_canonical": "jan", "last_name_key": "bakker",
          "date_of_birth": "1950-01-02", "email": "bakker@example.org"},
    "d": {"first_name_key": "kees", "first_name_canonical": "kees", "last_name_key": "bakker",
          "date_of_birth": "1980-05-06", "email": "bakker@example.org"},
})
LINKS = _links([("a", "b", 0.97), ("c", "d", 0.95)])


def test_a_shared_identifier_outweighs_birth_date_and_given_name_conflicts() -> None:
    fields = _member_fields(RECORDS, ["identifiers", "email_and_birth_date"])
    assignment, _ = cluster(RECORDS.get_column("unique_id"), LINKS, NO_CANNOT, fields)
    assert _groups(assignment) == {frozenset("ab"), frozenset("c"), frozenset("d")}


def test_without_strong_agreement_conflicts_keep_records_apart() -> None:
    fields = _member_fields(RECORDS, [])
    assignment, _ = cluster(RECORDS.get_column("unique_id"), LINKS, NO_CANNOT, fields)
    assert _groups(assignment) == {frozenset(x) for x in "abcd"}


def test_same_email_alone_is_not_strong_but_with_the_birth_date_it_is() -> None:
    records = RECORDS.with_columns(
        pl.when(pl.col("unique_id") == "d").then(pl.lit("1950-01-02").str.to_date())
        .otherwise(pl.col("date_of_birth")).alias("date_of_birth")
    )
    keys = strong_agreement_keys(records, ["email_and_birth_date"])
    assert keys.columns == ["unique_id", "strong_email_and_birth_date"]
    fields = _member_fields(records, ["email_and_birth_date"])
    assignment, _ = cluster(records.get_column("unique_id"), LINKS, NO_CANNOT, fields)
    # c and d now share email and birth date: one person whatever the given names say.
    assert frozenset("cd") in _groups(assignment)


def test_one_named_identifier_can_be_chosen() -> None:
    assert strong_agreement_keys(RECORDS, ["id_ssn"]).columns == ["unique_id", "strong_id_ssn"]
    assert strong_agreement_keys(RECORDS, ["id_other"]).columns == ["unique_id"]


def test_birth_date_conflict_rule_spares_pairs_sharing_an_identifier() -> None:
    scored = pl.DataFrame({"unique_id_l": ["a", "c"], "unique_id_r": ["b", "d"],
                           "gamma_date_of_birth": [1, 1], "match_probability": [0.97, 0.95]})
    frame = RECORDS.select("unique_id", "date_of_birth", "first_name_canonical")
    every = birth_date_conflict_pairs(scored, frame)
    assert every.rows() == [("a", "b"), ("c", "d")]
    spared = birth_date_conflict_pairs(scored, frame,
                                       strong_agreement_keys(RECORDS, ["identifiers"]))
    assert spared.rows() == [("c", "d")]


def test_optionally_a_direct_link_outweighs_a_birth_date_conflict_under_one_given_name(
) -> None:
    # e and f: one given name, birth dates mistyped beyond a typo, linked at 0.99 by the
    # model. g has no given name: its high score rests on the household's shared surname,
    # address and email, so its conflict with e stands.
    records = _records({
        "e": {"first_name_key": "jake", "first_name_canonical": "jake",
              "date_of_birth": "1900-11-15"},
        "f": {"first_name_key": "jake", "first_name_canonical": "jake",
              "date_of_birth": "1910-09-15"},
        "g": {"date_of_birth": "1960-01-01"},
    })
    scored = pl.DataFrame({"unique_id_l": ["e", "e", "e"], "unique_id_r": ["f", "g", "f"],
                           "gamma_date_of_birth": [1, 1, 1],
                           "match_probability": [0.99, 0.99, 0.5]})
    frame = records.select("unique_id", "date_of_birth", "first_name_canonical")
    kept = birth_date_conflict_pairs(scored.head(2), frame, threshold=0.9)
    assert kept.rows() == [("e", "g")]
    # Under the threshold the model did not link them: the conflict stands.
    assert birth_date_conflict_pairs(scored.tail(1), frame, threshold=0.9).rows() == [("e", "f")]
    fields = _member_fields(records, [])
    linked, _ = cluster(records.get_column("unique_id"), _links([("e", "f", 0.99)]), NO_CANNOT,
                        fields, birth_dates_yield_to_links=True)
    assert frozenset("ef") in _groups(linked)
    # Off (the default): the conflict keeps them apart, however strong the link.
    apart, _ = cluster(records.get_column("unique_id"), _links([("e", "f", 0.99)]), NO_CANNOT,
                       fields)
    assert frozenset("ef") not in _groups(apart)
    chained, _ = cluster(records.get_column("unique_id"),
                         _links([("e", "g", 0.99), ("g", "f", 0.99)]), NO_CANNOT, fields,
                         birth_dates_yield_to_links=True)
    # e and f meet only through g: no direct link weighed their birth dates.
    assert not any({"e", "f"} <= group for group in _groups(chained))


def test_swapped_name_fields_are_no_given_name_conflict() -> None:
    records = _records({
        "x": {"first_name_key": "alicia", "first_name_canonical": "alicia",
              "last_name_key": "heron"},
        "y": {"first_name_key": "heron", "first_name_canonical": "heron",
              "last_name_key": "alicia"},
        "z": {"first_name_key": "brooke", "first_name_canonical": "brooke",
              "last_name_key": "heron"},
    })
    links = _links([("x", "y", 0.99), ("y", "z", 0.99)])
    fields = _member_fields(records, [])
    assignment, _ = cluster(records.get_column("unique_id"), links, NO_CANNOT, fields)
    # x and y are one person written both ways round; z is another given name: cut from x.
    groups = _groups(assignment)
    assert frozenset("xy") <= next(g for g in groups if "x" in g)
    assert not any({"x", "z"} <= g for g in groups)


@pytest.mark.parametrize("kind", ["passport", "id_", "ID_SSN"])
def test_unknown_strong_agreement_kinds_are_refused(kind: str) -> None:
    with pytest.raises(ValueError, match="strong_agreement entry"):
        MatchingConfig(strong_agreement=[kind])


def test_swapped_name_fields_are_a_level_of_both_name_comparisons() -> None:
    from cdi_pipeline.lib.matching.spec import ModelSpec, splink_settings

    def labels(comparisons: list[str]) -> dict[str, list[str]]:
        spec = ModelSpec(comparisons, [["date_of_birth"]], [["date_of_birth"]])
        settings = splink_settings(spec, 1e-4).create_settings_dict("duckdb")
        return {c["output_column_name"]: [lv.get("label_for_charts", "") for lv in
                                          c["comparison_levels"]]
                for c in settings["comparisons"]}

    both = labels(["first_name", "last_name", "date_of_birth"])
    assert "Given name and surname swapped" in both["first_name"]
    assert "Given name and surname swapped" in both["last_name"]
    # Right after exact agreement, which stays the level the sanity rules judge.
    assert both["first_name"].index("Given name and surname swapped") == 3
    # Given names alone: no surname to be swapped with, so no level EM could never observe.
    alone = labels(["first_name", "date_of_birth"])
    assert "Given name and surname swapped" not in alone["first_name"]

