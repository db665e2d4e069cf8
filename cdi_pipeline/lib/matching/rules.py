"""Deterministic links on strong identifiers, and steward overrides.

An exact email, mobile number or identifier links two records outright, unless the value is
generic (a role address, a value many records share) or the two records contradict each other
(different birth dates, clearly different given names): a household email or a shared
landline must not glue a family into one customer.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from cdi_pipeline.lib.contracts import IDENTIFIER_PREFIX
from cdi_pipeline.lib.governance.files import read_governed_csv
from cdi_pipeline.lib.matching.input import UNIQUE_ID, record_key

OVERRIDE_COLUMNS = (
    "decision",
    "source_l",
    "source_record_id_l",
    "source_r",
    "source_record_id_r",
    "decided_by",
    "reason",
)
DECISIONS = ("must_link", "cannot_link")
# Within one value's group we compare all pairs; groups are capped by max_block_size already,
# but a shared value in a single family rarely exceeds a handful of records.
_KEYS = {"email": "email_block", "mobile": "phone_block"}


class OverrideFileError(ValueError):
    """The overrides file cannot be used; the message names the file, the row and the problem."""


def deterministic_pairs(frame: pl.DataFrame) -> pl.DataFrame:
    """Pairs sharing a non-generic strong identifier without contradicting evidence.

    Returns unique_id_l < unique_id_r with the rule that fired (first rule wins).
    """
    keys = dict(_KEYS)
    # Identifier rules keep their id_ prefix: an identifier called "email" must not replace
    # the built-in email rule.
    keys.update({c: c for c in frame.columns if c.startswith(IDENTIFIER_PREFIX)})
    base = frame.select(
        UNIQUE_ID, "first_name_canonical", "first_initial", "date_of_birth", "phone_type",
        *sorted(set(keys.values())),
    )
    found = []
    for rule, column in keys.items():
        side = base.filter(pl.col(column).is_not_null())
        if rule == "mobile":
            # A landline is shared by a household; only a mobile number says who someone is.
            side = side.filter(pl.col("phone_type") == "mobile")
        side = side.select(UNIQUE_ID, "first_name_canonical", "first_initial", "date_of_birth",
                           pl.col(column).alias("key"))
        # A value carried by records with two different given names is a shared value.
        names = side.group_by("key").agg(
            pl.col("first_name_canonical").drop_nulls().n_unique().alias("given_names")
        )
        side = side.join(names.filter(pl.col("given_names") <= 1), on="key").drop("given_names")
        pairs = side.join(side, on="key", suffix="_r").filter(
            pl.col(UNIQUE_ID) < pl.col(f"{UNIQUE_ID}_r")
        )
        contradicts = (
            pl.col("date_of_birth").is_not_null()
            & pl.col("date_of_birth_r").is_not_null()
            & (pl.col("date_of_birth") != pl.col("date_of_birth_r"))
        ) | (
            pl.col("first_initial").is_not_null()
            & pl.col("first_initial_r").is_not_null()
            & (pl.col("first_initial") != pl.col("first_initial_r"))
        )
        found.append(
            pairs.filter(~contradicts).select(
                pl.col(UNIQUE_ID).alias("unique_id_l"),
                pl.col(f"{UNIQUE_ID}_r").alias("unique_id_r"),
                pl.lit(f"exact_{rule.removeprefix(IDENTIFIER_PREFIX)}").alias("rule"),
            )
        )
    if not found:
        return pl.DataFrame(schema={"unique_id_l": pl.String, "unique_id_r": pl.String,
                                    "rule": pl.String})
    return pl.concat(found).unique(["unique_id_l", "unique_id_r"], keep="first",
                                   maintain_order=True)


def read_overrides(path: Path, known_ids: pl.Series) -> pl.DataFrame:
    """Steward decisions as pairs (unique_id_l < unique_id_r, decision, decided_by, reason).

    A missing file means no overrides. Unknown decisions, missing who/why, or records that
    do not exist reject the whole file, naming the row: a steward's decision that silently
    does nothing is worse than a failed run.
    """
    schema = {"unique_id_l": pl.String, "unique_id_r": pl.String, "decision": pl.String,
              "decided_by": pl.String, "reason": pl.String, "decided_on": pl.String}
    raw = read_governed_csv(path, tuple(OVERRIDE_COLUMNS), ("decided_on",), OverrideFileError)
    if raw is None:
        return pl.DataFrame(schema=schema)
    frame = raw.with_columns(
        record_key(pl.col("source_l"), pl.col("source_record_id_l")).alias("a"),
        record_key(pl.col("source_r"), pl.col("source_record_id_r")).alias("b"),
    )
    problems = frame.with_columns(
        pl.when(pl.col("decision").is_null() | ~pl.col("decision").is_in(list(DECISIONS)))
        .then(pl.format("decision {} is not one of must_link, cannot_link",
                        pl.col("decision").fill_null("(empty)")))
        .when(pl.col("decided_by").is_null() | (pl.col("decided_by") == ""))
        .then(pl.lit("decided_by (who) is empty"))
        .when(pl.col("reason").is_null() | (pl.col("reason") == ""))
        .then(pl.lit("reason (why) is empty"))
        .when(pl.col("a") == pl.col("b"))
        .then(pl.lit("both sides are the same record"))
        .when(pl.col("a").is_null() | pl.col("b").is_null())
        .then(pl.lit("a source or record id is empty"))
        .when(~pl.col("a").is_in(known_ids.implode()))
        .then(pl.format("record {} is not in cleaned.customer_records", pl.col("a")))
        .when(~pl.col("b").is_in(known_ids.implode()))
        .then(pl.format("record {} is not in cleaned.customer_records", pl.col("b")))
        .alias("problem")
    ).filter(pl.col("problem").is_not_null())
    if problems.height:
        lines = [f"  - line {r['line']}: {r['problem']}" for r in problems.head(20).to_dicts()]
        raise OverrideFileError(f"{path}: {problems.height} unusable override(s):\n"
                                + "\n".join(lines))
    pairs = frame.select(
        pl.min_horizontal("a", "b").alias("unique_id_l"),
        pl.max_horizontal("a", "b").alias("unique_id_r"),
        "decision", "decided_by", "reason", "decided_on",
    )
    # The last line about a pair wins: stewards revise decisions by appending.
    pairs = pairs.unique(["unique_id_l", "unique_id_r"], keep="last", maintain_order=True)
    return pairs
