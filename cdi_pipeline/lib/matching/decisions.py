"""Decisions: which pairs link and which must stay apart, by steward, rule or model.

A steward decision beats a rule, a rule beats the model; birth dates further apart than a
typo are a rule against linking.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from cdi_pipeline.lib.matching.conflicts import (
    birth_dates_conflict,
    same_given_name,
    strong_agreement_keys,
    strongly_agree,
)
from cdi_pipeline.lib.matching.input import UNIQUE_ID
from cdi_pipeline.lib.matching.rules import deterministic_pairs
from cdi_pipeline.lib.registry import MatchingConfig

# Levels of Splink's DateOfBirthComparison, counted from the else level (0): 0 = more than
# 10 years apart, 1 = within 10 years, 2 = within a year; 3+ are typo-level or exact.
_DOB_FAR_MAX_GAMMA = 2


def birth_date_conflict_pairs(
    scored: pl.DataFrame, frame: pl.DataFrame, agreement: pl.DataFrame | None = None,
    threshold: float | None = None,
) -> pl.DataFrame:
    """Scored pairs whose birth dates differ by more than a typo (a swap is a typo), except
    pairs sharing a strong agreement key (`agreement`: unique_id and `strong_*` columns) and,
    with a `threshold`, pairs of one given name the model scores at or above it (it weighed
    the disagreement and still links them; `conflicts.same_given_name`)."""
    if "gamma_date_of_birth" not in scored.columns:
        return scored.select("unique_id_l", "unique_id_r").clear()
    dob = frame.select(UNIQUE_ID, "date_of_birth", "first_name_canonical")
    if agreement is not None:
        dob = dob.join(agreement, on=UNIQUE_ID, how="left")
    spared = strongly_agree(dob.columns, "_r")
    if threshold is not None:
        spared = spared | ((pl.col("match_probability") >= threshold)
                           & same_given_name("", "_r"))
    return (
        scored.filter(pl.col("gamma_date_of_birth").is_between(0, _DOB_FAR_MAX_GAMMA))
        .select("unique_id_l", "unique_id_r", "match_probability")
        .join(dob, left_on="unique_id_l", right_on=UNIQUE_ID)
        .join(dob, left_on="unique_id_r", right_on=UNIQUE_ID, suffix="_r")
        .filter(birth_dates_conflict(pl.col("date_of_birth"), pl.col("date_of_birth_r"))
                & ~spared)
        .select("unique_id_l", "unique_id_r")
    )


def build_links(
    scored: pl.DataFrame,
    rule_pairs: pl.DataFrame,
    overrides: pl.DataFrame,
    threshold: float,
    *,
    birth_date_conflicts: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """All pairs with how they were decided; the links to cluster on; the cannot-links.

    Precedence: a steward decision beats a rule, a rule beats the model. Birth dates further
    apart than a typo are a rule against linking (and against chaining through others).
    """
    if birth_date_conflicts is not None and birth_date_conflicts.height:
        rule_pairs = pl.concat([
            rule_pairs.join(birth_date_conflicts, on=["unique_id_l", "unique_id_r"],
                            how="anti"),
            birth_date_conflicts.with_columns(pl.lit("birth_date_conflict").alias("rule")),
        ])
    pairs = scored.join(
        rule_pairs.rename({"rule": "rule_fired"}), on=["unique_id_l", "unique_id_r"], how="full",
        coalesce=True,
    ).join(
        overrides.select("unique_id_l", "unique_id_r", "decision", "decided_by", "reason"),
        on=["unique_id_l", "unique_id_r"], how="full", coalesce=True,
    )
    pairs = pairs.with_columns(
        pl.when(pl.col("decision").is_not_null()).then(pl.lit("steward"))
        .when(pl.col("rule_fired").is_not_null()).then(pl.lit("rule"))
        .otherwise(pl.lit("model")).alias("decided_by_kind"),
        pl.when(pl.col("decision") == "cannot_link").then(False)
        .when(pl.col("decision") == "must_link").then(True)
        .when(pl.col("rule_fired") == "birth_date_conflict").then(False)
        .when(pl.col("rule_fired").is_not_null()).then(True)
        .otherwise(pl.col("match_probability") >= threshold).alias("is_link"),
    )
    links = pairs.filter(pl.col("is_link")).select(
        "unique_id_l", "unique_id_r",
        pl.col("match_probability").fill_null(1.0),
        pl.when(pl.col("decision") == "must_link").then(pl.lit("must_link"))
        .when(pl.col("rule_fired").is_not_null()).then(pl.lit("deterministic"))
        .otherwise(pl.lit("model")).alias("kind"),
    )
    cannot = pairs.filter(
        (pl.col("decision") == "cannot_link")
        | (pl.col("decision").is_null() & (pl.col("rule_fired") == "birth_date_conflict"))
    ).select("unique_id_l", "unique_id_r")
    return pairs, links, cannot


@dataclass(frozen=True)
class Decisions:
    """How the pairs of one matching pass were decided, and what clustering must respect."""

    pairs: pl.DataFrame  # every scored, rule or steward pair, with how it was decided
    links: pl.DataFrame  # unique_id_l, unique_id_r, match_probability, kind
    cannot: pl.DataFrame  # unique_id_l, unique_id_r: pairs that must not share a customer
    # unique_id, the fields that keep two records of one component apart and the strong
    # agreement keys that outweigh them (none when no conflict keeps records apart).
    apart_fields: pl.DataFrame | None


def decide(
    frame: pl.DataFrame, scored: pl.DataFrame, overrides: pl.DataFrame, config: MatchingConfig,
) -> Decisions:
    """Decide every pair of `frame`: the scored pairs, the deterministic rules' pairs and the
    steward `overrides`, under `config`'s threshold and conflict settings."""
    rule_pairs = deterministic_pairs(frame)
    # What keeps two records of one component apart (conflicts.records_conflict).
    apart_by = [
        *(["date_of_birth"] if config.birth_date_conflict_blocks_link else []),
        *(["first_name_key", "first_name_canonical", "first_name_typo", "last_name_key"]
          if config.given_name_conflict_blocks_link else []),
    ]
    # Agreement only one person can have (a shared identifier, the same email and birth
    # date) outweighs both conflicts.
    agreement = strong_agreement_keys(frame, config.strong_agreement)
    apart_fields = (
        frame.select(UNIQUE_ID, *apart_by).join(agreement, on=UNIQUE_ID, how="left",
                                                  maintain_order="left")
        if apart_by else None
    )
    pairs, links, cannot = build_links(
        scored, rule_pairs, overrides, config.match_threshold,
        birth_date_conflicts=(
            birth_date_conflict_pairs(
                scored, frame, agreement,
                config.match_threshold if config.birth_date_conflict_yields_to_link else None)
            if config.birth_date_conflict_blocks_link else None
        ),
    )
    return Decisions(pairs, links, cannot, apart_fields)
