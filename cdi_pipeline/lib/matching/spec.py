"""The model specification, derived from which canonical fields the data populates.

A source set with only names and birth dates gets a model of names and birth dates; one with
everything gets every comparison. The same derivation chooses blocking rules (for recall
across fields) and EM training rules (on fields that stay sound at scale: EM blocked on
names can converge on namesakes, a low m for an exact birth date and one giant cluster,
where EM on date of birth and on email does not).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import polars as pl
from splink import SettingsCreator, block_on

from cdi_pipeline.lib.contracts import IDENTIFIER_PREFIX
from cdi_pipeline.lib.matching.comparisons import comparison
from cdi_pipeline.lib.matching.input import UNIQUE_ID

# A field counts as populated when at least this share of records carries it; below that
# its comparison has too few observations for EM to estimate m reliably.
MIN_COVERAGE = 0.02


def coverage(frame: pl.DataFrame) -> dict[str, float]:
    """Share of records carrying each input column."""
    n = max(frame.height, 1)
    counts = frame.select(pl.all().count()).row(0, named=True)
    return {name: counts[name] / n for name in frame.columns}


@dataclass(frozen=True)
class ModelSpec:
    """What the model compares, how pairs are blocked, and which rules train it."""

    comparisons: list[str]
    blocking_rules: list[list[str]]
    training_rules: list[list[str]]
    identifiers: list[str] = field(default_factory=list)

    def fingerprint(self) -> str:
        """A hash of the spec: a saved model is reused only when this still matches.

        It covers every comparison level's SQL, so a changed comparison retrains too.
        """
        untrained = splink_settings(self, 1e-4).create_settings_dict("duckdb")
        payload = json.dumps(
            {
                "comparisons": [
                    [lv["sql_condition"] for lv in c["comparison_levels"]]
                    for c in untrained["comparisons"]
                ],
                "blocking": self.blocking_rules,
                "training": self.training_rules,
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def derive_spec(frame: pl.DataFrame, training_rules: list[list[str]] | None = None) -> ModelSpec:
    """Choose comparisons, blocking rules and EM training rules from populated fields."""
    cov = coverage(frame)

    def has(*cols: str) -> bool:
        return all(cov.get(c, 0.0) >= MIN_COVERAGE for c in cols)

    comparisons: list[str] = []
    if has("first_initial"):
        comparisons.append("first_name")
    if has("last_name_key"):
        comparisons.append("last_name")
    if has("date_of_birth"):
        comparisons.append("date_of_birth")
    if has("gender"):
        comparisons.append("gender")
    if has("email"):
        comparisons.append("email")
    if has("phone"):
        comparisons.append("phone")
    if has("house_number") and (has("postcode") or has("street_key")):
        comparisons.append("address")
    elif has("postcode"):
        # Without house numbers a postcode is all the address there is: levels that need a
        # number would never be observed, and EM could not estimate them.
        comparisons.append("postcode")
    # An identifier no two records share can never agree, so EM could not learn its m.
    shared = frame.select(
        (pl.col(c).is_not_null() & pl.col(c).is_duplicated()).sum()
        for c in frame.columns
        if c.startswith(IDENTIFIER_PREFIX)
    )
    identifiers = [c for c in shared.columns if has(c) and shared.get_column(c).item() >= 2]
    comparisons += identifiers
    if len(comparisons) < 2:
        raise ValueError(
            "matching needs at least two populated fields among names, date of birth, gender, "
            f"email, phone, address and identifiers; populated: {comparisons or 'none'}"
        )

    candidates: list[list[str]] = [
        ["email_block"],
        ["phone_block"],
        ["email_local", "first_initial"],
        ["name_block"],
        ["name_block_email"],
        ["name_block_stem"],
        ["surname_initial_block"],
        ["given_surname_prefix_block"],
        ["last_name_key", "date_of_birth"],
        ["first_name_canonical", "date_of_birth"],
        ["date_of_birth", "postcode_area"],
        ["postcode", "house_number"],
        ["surname_area_block"],
        ["first_name_canonical", "postcode"],
        ["postcode_block"],
        ["address_block"],
        *[[c] for c in identifiers],
    ]
    blocking = [rule for rule in candidates if has(*rule)]
    if not blocking:
        raise ValueError("no blocking rule has its fields populated; matching cannot run")

    if training_rules is None:
        # Each comparison must be estimated by at least one session: a session cannot
        # estimate the comparisons its own blocking columns belong to, hence two sessions.
        pool = [["date_of_birth"], ["email"], ["phone"], ["postcode"], ["last_name_key"]]
        training_rules = [rule for rule in pool if has(*rule)][:2]
    if len(training_rules) < 1:
        raise ValueError("no field suitable for EM training is populated")
    return ModelSpec(comparisons, blocking, training_rules, identifiers)



# EM's iteration cap and tolerance (matching.em_max_iterations, matching.em_convergence). On
# noisy data with few fields EM can need far more than a handful of iterations to settle.
EM_MAX_ITERATIONS = 100
EM_CONVERGENCE = 0.0001


def splink_settings(
    spec: ModelSpec, probability_two_random_records_match: float, *,
    max_iterations: int = EM_MAX_ITERATIONS, em_convergence: float = EM_CONVERGENCE,
):
    """Splink SettingsCreator for a spec (dedupe across all sources at once)."""
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name=UNIQUE_ID,
        probability_two_random_records_match=probability_two_random_records_match,
        comparisons=[
            comparison(name, both_names={"first_name", "last_name"} <= set(spec.comparisons))
            for name in spec.comparisons
        ],
        blocking_rules_to_generate_predictions=[block_on(*r) for r in spec.blocking_rules],
        retain_intermediate_calculation_columns=True,
        retain_matching_columns=True,
        additional_columns_to_retain=["source", "source_record_id"],
        max_iterations=max_iterations,
        em_convergence=em_convergence,
    )
