"""Shared polars text helpers for the standardisers (accent folding, whitespace, casing)."""

from __future__ import annotations

import polars as pl

# Letters that Unicode decomposition does not split into base letter + combining mark.
_FOLD_MAP: dict[str, str] = {
    "ß": "ss",
    "ẞ": "SS",
    "æ": "ae",
    "Æ": "AE",
    "ø": "o",
    "Ø": "O",
    "ł": "l",
    "Ł": "L",
    "ı": "i",
    "đ": "d",
    "Đ": "D",
    "œ": "oe",
    "Œ": "OE",
    "þ": "th",
    "Þ": "TH",
    "ð": "d",
    "Ð": "D",
    "ħ": "h",
    "Ħ": "H",
}

_APOSTROPHES = {"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'", "\u00b4": "'", "\u2032": "'"}
_HYPHENS = {
    "\u2010": "-",
    "\u2011": "-",
    "\u2012": "-",
    "\u2013": "-",
    "\u2014": "-",
    "\u2212": "-",
}


def squish(expr: pl.Expr) -> pl.Expr:
    """Trim, collapse internal whitespace to one space and turn empty strings into null."""
    out = expr.str.replace_all(r"\s+", " ").str.strip_chars()
    return pl.when(out.str.len_bytes() > 0).then(out)


def strip_control_chars(expr: pl.Expr) -> pl.Expr:
    """Remove ASCII/Unicode control and format characters (whitespace controls become a space)."""
    # Tabs/newlines separate words; deleting them would glue "Jan\nJansen" into one token.
    return expr.str.replace_all(r"[\t\n\r\x0B\x0C\x85\u2028\u2029]", " ").str.replace_all(
        r"[\p{Cc}\p{Cf}]", ""
    )


def fold_accents(expr: pl.Expr) -> pl.Expr:
    """Fold accented/compatibility characters to their ASCII base (é->e, ß->ss, ﬁ->fi)."""
    # NFKD instead of plain NFD so ligatures, full-width and superscript forms fold as well.
    decomposed = expr.str.normalize("NFKD").str.replace_all(r"\p{M}", "")
    return decomposed.str.replace_many(_FOLD_MAP)


def normalise_punctuation(expr: pl.Expr) -> pl.Expr:
    """Map typographic apostrophes and dashes to ASCII ' and -."""
    return expr.str.replace_many({**_APOSTROPHES, **_HYPHENS})


def clean_text(expr: pl.Expr) -> pl.Expr:
    """Strip control chars, NFC-normalise and squish: the common first step for every input."""
    return squish(strip_control_chars(expr).str.normalize("NFC"))


def letters_key(expr: pl.Expr, *, digits: bool = False) -> pl.Expr:
    """Matching key: lowercase, accents folded, only letters (and optionally digits); '' -> null."""
    keep = r"[^\p{L}\p{N}]" if digits else r"[^\p{L}]"
    out = fold_accents(expr.str.to_lowercase()).str.to_lowercase().str.replace_all(keep, "")
    return pl.when(out.str.len_bytes() > 0).then(out)


def proper_case(expr: pl.Expr) -> pl.Expr:
    """Title-case values written entirely in upper or lower case; keep deliberate mixed case."""
    # "McDonald" or "DeShawn" carry information that title-casing would destroy.
    single_case = (expr == expr.str.to_uppercase()) | (expr == expr.str.to_lowercase())
    return pl.when(single_case).then(expr.str.to_titlecase()).otherwise(expr)


def ensure_utf8_columns(df: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """Add missing columns as all-null Utf8 and cast present ones to Utf8."""
    exprs = []
    for name in columns:
        if name not in df.columns:
            exprs.append(pl.lit(None, dtype=pl.Utf8).alias(name))
        elif df.schema[name] != pl.Utf8:
            exprs.append(pl.col(name).cast(pl.Utf8))
    return df.with_columns(exprs) if exprs else df


def keep_previous_issue(
    df: pl.DataFrame, value_col: str, issue_col: str, new_issue: pl.Expr
) -> pl.Expr:
    """Issue expression that keeps an earlier run's code for values that are null now."""
    # Re-running a standardiser on its own output sees null where it nulled a bad value;
    # keeping the old code there is what makes the issue columns idempotent too.
    if issue_col not in df.columns:
        return new_issue
    previous = pl.col(issue_col).cast(pl.Utf8)
    return pl.when(pl.col(value_col).is_null()).then(previous).otherwise(new_issue)
