"""The pre-flight bound the matching runs use instead of Splink's exact per-rule count."""

import polars as pl

from cdi_pipeline.lib.matching.blocking import pair_bounds

RULES = [["email"], ["last_name", "postcode"]]


def _frame(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["unique_id", "email", "last_name", "postcode"],
                        orient="row")


def _brute_force(left: pl.DataFrame, right: pl.DataFrame | None) -> tuple[int, int]:
    """(pairs found by any rule, pairs summed per rule), by comparing every pair."""
    other = left if right is None else right
    pairs = left.join(other, how="cross", suffix="_r")
    if right is None:
        pairs = pairs.filter(pl.col("unique_id") < pl.col("unique_id_r"))
    hits = [pl.all_horizontal(pl.col(c) == pl.col(f"{c}_r") for c in rule).fill_null(False)
            for rule in RULES]
    per_rule = sum(pairs.filter(h).height for h in hits)
    return pairs.filter(pl.any_horizontal(hits)).height, per_rule


def _bound(left: pl.DataFrame, right: pl.DataFrame | None = None) -> int:
    """The pre-flight's bound: the rules' pairs summed (a pair two rules find counts twice)."""
    return int(pair_bounds(left, RULES, right).get_column("pairs").sum())


def test_bound_within_a_batch_counts_each_rule_and_never_undercounts() -> None:
    new = _frame([
        ("a", "x@m.nl", "jansen", "1011"), ("b", "x@m.nl", "jansen", "1011"),
        ("c", "x@m.nl", "bakker", None), ("d", None, "jansen", "1011"),
        ("e", "y@m.nl", None, "1011"),
    ])
    distinct, per_rule = _brute_force(new, None)
    # email: a-b, a-c, b-c; surname+postcode: a-b, a-d, b-d (a-b twice).
    assert (distinct, per_rule) == (5, 6)
    assert _bound(new) == per_rule >= distinct
    assert pair_bounds(new, RULES).rows() == [("email", 3), ("last_name, postcode", 3)]


def test_bound_between_batch_and_candidates_and_nulls_never_block() -> None:
    new = _frame([("n1", "x@m.nl", "jansen", "1011"), ("n2", None, None, None)])
    existing = _frame([
        ("e1", "x@m.nl", "jansen", "1011"), ("e2", "x@m.nl", "smit", "2000"),
        ("e3", None, "jansen", "1011"), ("e4", None, None, None),
    ])
    distinct, per_rule = _brute_force(new, existing)
    assert (distinct, per_rule) == (3, 4)
    assert _bound(new, existing) == per_rule
