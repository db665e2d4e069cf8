"""Shared polars text helpers for the standardisers (accent folding, whitespace, casing)."""

from __future__ import annotations

from collections.abc import Callable

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


def null_if_empty(expr: pl.Expr) -> pl.Expr:
    """The text, with empty strings as null."""
    # Not `when(x.str.len_bytes() > 0).then(x)`: an eager select evaluates `x` (a chain of
    # regexes) twice there, and the when/then copies every value once more.
    return expr.replace("", None)


def squish(expr: pl.Expr) -> pl.Expr:
    """Trim, collapse internal whitespace to one space and turn empty strings into null."""
    # Only runs and non-space whitespace are rewritten: most values have neither, and a
    # single space between words needs no work.
    return null_if_empty(expr.str.replace_all(r"\s{2,}|[^\S ]", " ").str.strip_chars())


def strip_control_chars(expr: pl.Expr) -> pl.Expr:
    """Remove ASCII/Unicode control and format characters (whitespace controls become a space)."""
    # Tabs/newlines separate words; deleting them would glue "Jan\nJansen" into one token.
    return expr.str.replace_all(r"[\t\n\r\x0B\x0C\x85\u2028\u2029]", " ").str.replace_all(
        r"[\p{Cc}\p{Cf}]", ""
    )


def squish_controls(expr: pl.Expr) -> pl.Expr:
    """`squish(strip_control_chars(expr))` in one regex pass fewer."""
    # The controls that are whitespace (tab, newline, NEL) are the ones strip_control_chars
    # turns into a space; squish turns them into a space anyway, so only the others need
    # removing first. Same result, a third less work on every raw text value.
    return squish(expr.str.replace_all(r"[[\p{Cc}\p{Cf}]--\s]", ""))


def id_text(expr: pl.Expr) -> pl.Expr:
    """A value as text with controls squished: record ids (the raw layer checks uniqueness on
    this) and the cleaned layer's plain text fields."""
    return squish_controls(expr.cast(pl.String))


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
    # Whitespace controls (tab, newline, ...) are left for squish, which turns them into spaces.
    no_controls = expr.str.replace_all(r"[[\p{Cc}\p{Cf}]--\s]", "")
    return squish(no_controls.str.normalize("NFC"))


def letters_key(expr: pl.Expr, *, digits: bool = False) -> pl.Expr:
    """Matching key: lowercase, accents folded, only letters (and optionally digits); '' -> null."""
    keep = r"[^\p{L}\p{N}]" if digits else r"[^\p{L}]"
    return null_if_empty(
        fold_accents(expr.str.to_lowercase()).str.to_lowercase().str.replace_all(keep, "")
    )


def proper_case(expr: pl.Expr, fix: Callable[[pl.Expr], pl.Expr] | None = None) -> pl.Expr:
    """Title-case values written entirely in upper or lower case; keep deliberate mixed case."""
    # "McDonald" or "DeShawn" carry information that title-casing would destroy.
    single_case = (expr == expr.str.to_uppercase()) | (expr == expr.str.to_lowercase())
    titled = expr.str.to_titlecase()
    return pl.when(single_case).then(fix(titled) if fix else titled).otherwise(expr)


_INNER_PREFIX_WORDS = [
    "Van",
    "Von",
    "Der",
    "Den",
    "De",
    "Het",
    "Ter",
    "Ten",
    "Te",
    "'T",
    "La",
    "Le",
]
_INNER_PREFIX_FIX = {
    f"{sep}{word} ": f"{sep}{word.lower()} " for sep in ("-", " ") for word in _INNER_PREFIX_WORDS
}


def fix_dutch_caps(expr: pl.Expr) -> pl.Expr:
    """Repair Dutch conventions that title-casing breaks: 's-, 't, IJ, 1e, inner 'van der'."""
    out = expr.str.replace_all(r"(^|[\s\-])Ij", "${1}IJ")
    out = out.str.replace_all(r"(^|\s)'S-", "${1}'s-").str.replace_all(r"(^|\s)'T\b", "${1}'t")
    out = out.str.replace_all(r"(^|\s)(\d+)E(\s|$)", "${1}${2}e${3}")
    # Applied twice because adjacent words ("-Van Der ") share the separating space.
    return out.str.replace_many(_INNER_PREFIX_FIX).str.replace_many(_INNER_PREFIX_FIX)


def display_case(expr: pl.Expr) -> pl.Expr:
    """Proper-case single-case text with Dutch fixes ("JANSEN-DE VRIES" -> "Jansen-de Vries")."""
    return proper_case(expr, fix=fix_dutch_caps)


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
    df: pl.DataFrame, issue_col: str, new_issue: pl.Expr, input_is_null: pl.Expr
) -> pl.Expr:
    """Issue expression that keeps an earlier run's code where the input value is null now."""
    # Re-running a standardiser on its own output sees null where it nulled a bad value;
    # keeping the old code there is what makes the issue columns idempotent too.
    if issue_col not in df.columns:
        return new_issue
    previous = pl.col(issue_col).cast(pl.Utf8)
    return pl.when(input_is_null).then(previous).otherwise(new_issue)


def derive_on_unique(
    df: pl.DataFrame,
    keys: list[str],
    derive: Callable[[pl.DataFrame], pl.DataFrame],
) -> pl.DataFrame:
    """Run `derive` on the distinct key rows only and join its new columns back onto `df`."""
    # Customer data repeats values heavily (cities, first names, domains); deriving once per
    # distinct value is what keeps the regex/Unicode work cheap at millions of rows. When
    # nearly every row is distinct the join costs more than it saves, so `derive` then runs
    # on all rows; it must therefore only add columns and keep row order.
    unique = df.select(keys).unique()
    if unique.height > 0.8 * df.height:
        derived = derive(df.select(keys))
        return df.hstack(derived.drop(keys).get_columns())
    derived = derive(unique)
    return df.join(derived, on=keys, how="left", nulls_equal=True, maintain_order="left")
