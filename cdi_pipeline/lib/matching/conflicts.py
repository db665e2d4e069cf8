"""Conflicts and strong agreement: what says two records are two people, and what only one
person can share.

Household members share surname, address, landline and often an email; their birth dates
and given names tell them apart. A shared identifier (or the same email with the same birth
date) outweighs both.
"""

from __future__ import annotations

import polars as pl

from cdi_pipeline.lib.contracts import IDENTIFIER_PREFIX

NODE = "unique_id"


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


def conflict_fields(fields: pl.DataFrame) -> list[str]:
    """The columns of `fields` that conflicts and strong agreement are judged on."""
    return [c for c in fields.columns if c in CONFLICT_COLUMNS or c.startswith(STRONG_PREFIX)]


def member_conflicts(assignment: pl.DataFrame, member_fields: pl.DataFrame) -> pl.DataFrame:
    """Pairs inside one component whose records are two people (see `records_conflict`).

    A chain A-B-C can join A and C although nobody compared them; if their birth dates
    disagree, or their given names clearly do, they are different people, and the pair
    becomes a cannot-link. `member_fields` holds unique_id, any of CONFLICT_COLUMNS and any
    strong agreement keys.
    """
    cols = conflict_fields(member_fields)
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
