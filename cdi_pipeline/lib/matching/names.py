"""Name evidence a record does not state outright: the surname its e-mail spells, and given
names that look like misspellings of a more common one."""

from __future__ import annotations

import polars as pl

# Dutch surname prefixes as they run together in an e-mail local part ("annavanderveen").
MAIL_PREFIXES = r"^(?:van|von|de[nr]?|het|te[nr]?|in|op|uit|t)+"


def with_surname_from_email(
    frame: pl.DataFrame,
    *,
    local: str = "email_local",
    first_name: str = "first_name_key",
    canonical: str = "first_name_canonical",
    where: pl.Expr | None = None,
    alias: str = "surname_guess",
) -> pl.DataFrame:
    """`frame` plus `alias`: the surname its e-mail local part most likely spells.

    "jacobus.blom", "blom.jacobus", "jacobusblom78" and "j.blom" all give "blom": digits go,
    tokens equal to the given name (or its canonical form) or a single letter go, and a local
    part without separators loses the given name it starts or ends with (the longer name
    first, then the given name before its canonical form; a prefix before a suffix) when at
    least 3 characters remain. The longest token left is the guess, the first of equally long
    ones; null when the record has no given name to tell the parts apart, or outside `where`.
    Set-wise: the tokens are exploded to one row each and grouped back per record.
    """
    row, tok, pos, size = "__row", "__token", "__pos", "__size"
    name_a, name_b = "__name_a", "__name_b"
    framed = frame.with_row_index(row)
    tokens = (
        pl.col(local).str.replace_all(r"[0-9]+", "")
        .str.replace_all(r"[._+\-]+", " ")
        .str.strip_chars()
        .str.split(" ")
        .list.eval(pl.element().filter(pl.element().str.len_chars() >= 2))
    )
    first = pl.col(first_name)
    # Names in the order they are tried: the longer first, the given name on a tie; an empty
    # canonical form is no name.
    canon = pl.when(pl.col(canonical) != "").then(pl.col(canonical))
    canon_longer = canon.str.len_chars() > first.str.len_chars()
    # Lazy, so only the rows in `where` and the columns the guess needs are ever copied: an
    # eager filter would copy every column of the frame first.
    candidates = (framed.lazy() if where is None else framed.lazy().filter(where)).select(
        row,
        tokens.alias(tok),
        first.alias(first_name),
        pl.when(canon_longer).then(canon).otherwise(first).alias(name_a),
        pl.when(canon_longer).then(first).otherwise(canon).alias(name_b),
    ).collect()
    candidates = candidates.filter(
        (pl.col(first_name) != "").fill_null(False) & (pl.col(tok).list.len() > 0).fill_null(False)
    ).with_columns(pl.col(tok).list.len().alias(size))

    t = pl.col(tok)
    length = t.str.len_chars()

    def strip(name: str, otherwise: pl.Expr) -> pl.Expr:
        n = pl.col(name)
        n_len = n.str.len_chars()
        room = (length - n_len >= 3).fill_null(False)
        return (
            pl.when(room & t.str.starts_with(n).fill_null(False)).then(t.str.slice(n_len))
            .when(room & t.str.ends_with(n).fill_null(False)).then(t.str.slice(0, length - n_len))
            .otherwise(otherwise)
        )

    guesses = (
        candidates.explode(tok)
        .with_columns(pl.int_range(pl.len()).over(row).alias(pos))
        .filter((t != pl.col(name_a)) & (t != pl.col(name_b)).fill_null(True))
        # A lone token that is not the given name itself may still have it run into it.
        .with_columns(
            pl.when(pl.col(size) == 1).then(strip(name_a, strip(name_b, t))).otherwise(t).alias(tok)
        )
        .group_by(row)
        .agg(t.sort_by(length, pl.col(pos), descending=[True, False]).first().alias(alias))
    )
    # Only the guess column is aligned back: joining the whole frame would copy every column
    # to add one.
    aligned = framed.select(row).join(guesses, on=row, how="left", maintain_order="left")
    return frame.with_columns(aligned.get_column(alias))


# A given name one edit away from a name at least this many times as common in the input is
# taken for a misspelling of it.
TYPO_FREQUENCY_RATIO = 3


def misspelt_values(frame: pl.DataFrame, column: str,
                    ratio: float = TYPO_FREQUENCY_RATIO) -> pl.Series:
    """The values of `column` that look like misspellings of a more common value.

    A value is one edit (a letter replaced, dropped, added, or two neighbours swapped) from
    a value held by at least `ratio` times as many rows: "cornlis" next to "cornelis",
    "priua" next to "priya". Found set-wise on the distinct values (symmetric deletion: two
    values one edit apart share a key made by deleting at most one letter of each), so the
    cost grows with the number of distinct names, not of records. A rare real name next to
    a common one ("anne" beside "anna") is caught too: such a name only loses the weight
    of a conflict, never makes one.
    """
    counts = frame.lazy().select(column).drop_nulls().group_by(column).len().collect()
    length = pl.col(column).str.len_chars()
    longest = int(counts.select(length.max()).item() or 0)
    keys = pl.concat([
        counts.with_columns(pl.col(column).alias("__key")),
        *[
            counts.filter(length > i).with_columns(
                (pl.col(column).str.slice(0, i) + pl.col(column).str.slice(i + 1))
                .alias("__key")
            )
            for i in range(longest)
        ],
    ]).unique([column, "__key"])
    near = keys.join(keys, on="__key", suffix="_o").filter(
        (pl.col(column) != pl.col(f"{column}_o")) & (pl.col("len_o") >= ratio * pl.col("len"))
    )
    return near.select(column).unique().get_column(column)
