"""Model sanity: reject a trained model whose parameters are implausible.

EM can converge to the wrong solution (EM blocked on names can settle on namesakes: a low m
for an exact birth date, and one giant cluster). Such a model looks fine to Splink; these
rules catch it before any prediction is used, without rejecting a valid model of noisy data.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

import polars as pl


def parameter_table(settings: dict[str, Any]) -> pl.DataFrame:
    """One row per comparison level: m, u and the match weight they imply."""
    rows = []
    for comparison in settings["comparisons"]:
        for position, level in enumerate(comparison["comparison_levels"]):
            if level.get("is_null_level"):
                continue
            # Splink writes a text marker for levels never observed in training.
            m, u = level.get("m_probability"), level.get("u_probability")
            m = m if isinstance(m, int | float) else None
            u = u if isinstance(u, int | float) else None
            weight = math.log2(m / u) if m and u else None
            rows.append(
                {
                    "comparison": comparison["output_column_name"],
                    "level": position,
                    "label": level.get("label_for_charts") or level["sql_condition"],
                    "m_probability": m,
                    "u_probability": u,
                    "match_weight": weight,
                }
            )
    return pl.DataFrame(
        rows,
        schema={"comparison": pl.String, "level": pl.Int64, "label": pl.String,
                "m_probability": pl.Float64, "u_probability": pl.Float64,
                "match_weight": pl.Float64},
    )


# Comparisons whose partial levels compare a coarser part of the value (see sanity_problems).
COARSER_PART_COMPARISONS = ("address", "postcode")


def training_warnings(training: list[dict[str, Any]]) -> list[str]:
    """What is worth a warning but not a rejection: EM sessions that stopped before
    converging. Their parameters were still moving by more than the tolerance, which on slow
    noisy data is no sign of a wrong model; the rules of `sanity_problems` judge the result."""
    return [
        f"EM blocked on {session['blocking_rule']} did not converge in "
        f"{session.get('iterations')} iterations (raise matching.em_max_iterations or "
        "matching.em_convergence if its parameters look unsettled)"
        for session in training
        if not session.get("converged", False)
    ]


def prior_warnings(priors: list[dict[str, Any]]) -> list[str]:
    """A warning per comparison EM could not train, naming the prior m it uses instead: its
    weight is an assumption, not an estimate from this data."""
    return [
        f"{p['comparison']}: '{p['level']}' was not trained ({p['why']}); it scores with the "
        f"prior m={p['prior_m']:.2f}"
        for p in priors
    ]


def untrained_comparisons(priors: list[dict[str, Any]]) -> frozenset[str]:
    """The comparisons whose m is a prior, which the sanity rules leave out."""
    return frozenset(p["comparison"] for p in priors)


def sanity_problems(
    settings: dict[str, Any], untrained: Collection[str] = frozenset()
) -> list[str]:
    """Reasons to reject a model; empty when it is plausible.

    Only shapes no valid model has, whatever the data's noise: a prior outside (0, 0.5);
    agreement counting against a match (m <= u); disagreement counting for one; an exact
    level never trained; and m out of order, a partial level (a typo, within a year) more
    common among matches than exact agreement, which is how EM on the wrong pairs collapses
    (m of an exact birth date falls, and "within a year" takes the rest). Absolute m floors
    are no rule: on data with typos in every field the true m(exact) can be 0.4. Unconverged
    EM is a warning (`training_warnings`), not a rule here; so are the `untrained`
    comparisons, whose m is a prior nobody estimated (`prior_warnings`).
    """
    problems = []
    retrain = "; change matching.training_rules in the registry"
    prior = settings.get("probability_two_random_records_match")
    if prior is None or not 0 < prior < 0.5:
        problems.append(f"probability_two_random_records_match {prior} is not in (0, 0.5)"
                        + retrain)
    params = parameter_table(settings)
    # The level checked is the one right after the null level: the plain agreement level
    # ("Exact match on ..."); levels before the null level are special cases.
    main_level = {
        c["output_column_name"]: next(
            (i + 1 for i, lv in enumerate(c["comparison_levels"]) if lv.get("is_null_level")), 0
        )
        for c in settings["comparisons"]
    }
    for name, levels in params.group_by("comparison", maintain_order=True):
        comparison = str(name[0])
        if comparison in untrained:
            continue
        levels = levels.sort("level")
        top = levels.filter(pl.col("level") == main_level[comparison]).row(0, named=True)
        m, u = top["m_probability"], top["u_probability"]
        if m is None:
            problems.append(
                f"{comparison}: '{top['label']}' has no trained m: no training pair agreed on "
                f"it{retrain}"
            )
            continue
        # u missing means no random pair agreed: the value is rarer than 1 in the sample.
        u = u if u is not None else 1e-6
        if m <= u:
            problems.append(
                f"{comparison}: '{top['label']}' has m {m:.3g} <= u {u:.3g}: agreeing would "
                f"count as evidence against a match{retrain}"
            )
        # Levels on a coarser part (an initial, a postcode area, a postcode without the
        # number) are reached by records that only hold that part, so on sparse data their m
        # may rightly exceed exact agreement's: only near-agreement levels are held to it.
        partial = levels.filter(
            (pl.col("level") > main_level[comparison])
            & (pl.col("level") < levels.get_column("level").max())
            & (pl.col("m_probability") > m)
            & ~pl.col("label").str.to_lowercase().str.contains("initial")
        ) if comparison not in COARSER_PART_COMPARISONS else levels.clear()
        if partial.height:
            worst = partial.sort("m_probability", descending=True).row(0, named=True)
            problems.append(
                f"{comparison}: m({top['label']}) = {m:.3f} is below m({worst['label']}) = "
                f"{worst['m_probability']:.3f}: true matches would more often nearly agree "
                f"than agree, a sign that EM converged on the wrong pairs{retrain}"
            )
        last = levels.row(-1, named=True)
        if last["match_weight"] is not None and last["match_weight"] > 0:
            problems.append(
                f"{comparison}: disagreement ('{last['label']}') has a positive match weight "
                f"{last['match_weight']:.2f}{retrain}"
            )
    return problems


# How many times the pairs the clusters link may exceed what the model's prior expects of
# the records: a valid model links a small multiple of it, a collapsed one far more.
MAX_LINKS_OVER_PRIOR = 10.0


def linked_share_problem(records: int, linked_pairs: float, prior: float | None) -> str | None:
    """Why the links are implausible for the model's prior, or None.

    The prior (the share of all record pairs that are matches) is estimated from near-certain
    rules, apart from EM; a model that collapsed links far more pairs than that share allows,
    long before one cluster grows past the size limit.
    """
    if prior is None or records < 2:
        return None
    expected = prior * records * (records - 1) / 2
    if expected > 0 and linked_pairs > MAX_LINKS_OVER_PRIOR * expected:
        return (
            f"the clusters link {linked_pairs:,.0f} record pairs, {linked_pairs / expected:.0f} "
            f"times the {expected:,.0f} the model's prior expects of {records:,} records: the "
            "model links far more than it believes true; change matching.training_rules in "
            "the registry and retrain"
        )
    return None
