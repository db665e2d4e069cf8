"""Model sanity: reject a trained model whose parameters are implausible.

EM can converge to the wrong solution (FIELD_NOTES: on 1M records, EM blocked on names gave
m(exact date of birth) = 0.15 instead of ~0.87 and one giant cluster). Such a model looks
fine to Splink; these rules catch it before any prediction is used.
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl

from cdi_pipeline.lib.contracts import IDENTIFIER_PREFIX

# Minimum m-probability of each comparison's strongest level: how often true matches agree
# exactly. Set well below what real data shows, so only a collapsed model falls under it.
MIN_TOP_LEVEL_M = {
    "date_of_birth": 0.5,
    "last_name": 0.5,
    "first_name": 0.3,
    "email": 0.2,
    "phone": 0.2,
    "address": 0.2,
    "gender": 0.5,
}
MIN_IDENTIFIER_M = 0.5


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


def sanity_problems(settings: dict[str, Any], training: list[dict[str, Any]]) -> list[str]:
    """Reasons to reject a model; empty when it is plausible."""
    problems = []
    for session in training:
        if not session.get("converged", False):
            problems.append(
                f"EM blocked on {session['blocking_rule']} did not converge in "
                f"{session.get('iterations')} iterations"
            )
    prior = settings.get("probability_two_random_records_match")
    if prior is None or not 0 < prior < 0.5:
        problems.append(f"probability_two_random_records_match {prior} is not in (0, 0.5)")
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
        top = levels.filter(pl.col("level") == main_level[comparison]).row(0, named=True)
        minimum = (
            MIN_IDENTIFIER_M
            if comparison.startswith(IDENTIFIER_PREFIX)
            else MIN_TOP_LEVEL_M.get(comparison, 0.2)
        )
        m, u = top["m_probability"], top["u_probability"]
        if m is None:
            problems.append(
                f"{comparison}: '{top['label']}' has no trained m: no training pair agreed on it"
            )
            continue
        # u missing means no random pair agreed: the value is rarer than 1 in the sample.
        u = u if u is not None else 1e-6
        if m < minimum:
            problems.append(
                f"{comparison}: m({top['label']}) = {m:.3f} is below {minimum} - true matches "
                "would rarely agree on it, a sign that EM converged on the wrong clusters"
            )
        if m <= u:
            problems.append(
                f"{comparison}: '{top['label']}' has m {m:.3g} <= u {u:.3g}: agreeing would "
                "count as evidence against a match"
            )
        last = levels.sort("level").row(-1, named=True)
        if last["match_weight"] is not None and last["match_weight"] > 0:
            problems.append(
                f"{comparison}: disagreement ('{last['label']}') has a positive match weight "
                f"{last['match_weight']:.2f}"
            )
    return problems
