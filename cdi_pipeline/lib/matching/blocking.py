"""Blocking: which record pairs are compared at all, and how many that will be.

Block keys are capped (a value held by too many records is no key), and before anything is
scored the pairs the blocking rules produce are counted against the comparison budget.
"""

from __future__ import annotations

from typing import Any

import polars as pl
from splink import block_on


def frequent_values(frame: pl.DataFrame, column: str, more_than: int) -> pl.Series:
    """The non-null values of `column` held by more than `more_than` rows.

    A group-by per column, run one at a time: `pl.len().over(column)` would build the row
    groups of every window at once and keep them all until the last was done, where only a
    handful of values is ever over the limit.
    """
    return (
        frame.lazy().select(column).drop_nulls().group_by(column).len()
        .filter(pl.col("len") > more_than).select(column).collect().to_series()
    )


def without_frequent(frame: pl.DataFrame, column: str, more_than: int) -> pl.Expr:
    """`column`, null where its value is held by more than `more_than` rows of `frame`.

    (A null stays null, as it would whatever its count.)
    """
    frequent = frequent_values(frame, column, more_than).implode()
    return pl.when(pl.col(column).is_in(frequent).not_()).then(pl.col(column))


def pair_bounds(
    left: pl.DataFrame, rules: list[list[str]], right: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Pairs each blocking rule produces on its own (a pair two rules both find counts in
    both): within `left` (each pair once), or between `left` and `right`.

    A group-by per rule: cheap where Splink's exact count of distinct pairs joins every
    rule's pairs against the earlier rules'.
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


def count_comparisons(linker: Any, blocking_rules: list[list[str]]) -> pl.DataFrame:
    """Exact number of pairs each blocking rule adds (marginal and cumulative)."""
    records = linker.blocking_analysis.count_comparisons_from_blocking_rules(
        [block_on(*r) for r in blocking_rules], record_sample_proportion=1.0
    )
    return pl.DataFrame(
        {
            "blocking_rule": [", ".join(r) for r in blocking_rules],
            "marginal_pairs": [int(r["marginal_comparison_count"]) for r in records],
            "cumulative_pairs": [int(r["cumulative_comparison_count"]) for r in records],
        }
    )


class ComparisonBudgetExceeded(RuntimeError):
    """The blocking rules would generate more pairs than the configured budget."""


def preflight(
    linker: Any, blocking_rules: list[list[str]], budget: float,
    bounds: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Pairs the blocking rules will score, rule by rule (blocking_rule, marginal_pairs,
    cumulative_pairs, counted); over `budget`, ComparisonBudgetExceeded.

    `bounds` (`pair_bounds` of the input) settle the count when their sum is within the
    budget; over it, Splink's exact count decides.
    """
    if bounds is not None and int(bounds.get_column("pairs").sum()) <= budget:
        counted = bounds.select(
            "blocking_rule",
            pl.col("pairs").alias("marginal_pairs"),
            pl.col("pairs").cum_sum().alias("cumulative_pairs"),
            pl.lit("upper bound").alias("counted"),
        )
    else:
        counted = count_comparisons(linker, blocking_rules).with_columns(
            pl.lit("exact").alias("counted")
        )
    total = int(counted.get_column("cumulative_pairs").max() or 0)
    if total > budget:
        raise ComparisonBudgetExceeded(
            f"blocking rules would score {total:,} pairs, over the budget of {budget:,.0f} "
            "(matching.max_comparisons_per_record x records). Per rule:\n"
            + "\n".join(
                f"  {r['blocking_rule']}: +{r['marginal_pairs']:,}"
                for r in counted.iter_rows(named=True)
            )
            + "\nA rule on a field with a few very common values is the usual cause; "
            "lower matching.max_block_size or raise the budget."
        )
    return counted
