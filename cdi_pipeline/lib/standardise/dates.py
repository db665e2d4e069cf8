"""Strict date parsing: an explicit format, no silent day/month swaps, range checks."""

from __future__ import annotations

import re
from datetime import date

import polars as pl

from cdi_pipeline.lib.standardise.text import (
    clean_text,
    derive_on_unique,
    keep_previous_issue,
)

_TMP = "__dt_"

# strftime directive -> regex for the *shape* of the text it accepts. A value that has the
# shape but does not parse is "impossible" (31-02-1980); one without the shape "unparsable".
# Numeric fields accept one or two digits because polars/chrono parse "1980-3-5" with
# "%Y-%m-%d" as well; the field order still comes from the format, so nothing is guessed.
_DIRECTIVE_SHAPES: dict[str, str] = {
    "Y": r"[0-9]{4}",
    "y": r"[0-9]{2}",
    "C": r"[0-9]{2}",
    "m": r"[0-9]{1,2}",
    "d": r"[0-9]{1,2}",
    "e": r"\s?[0-9]{1,2}",
    "j": r"[0-9]{1,3}",
    "H": r"[0-9]{1,2}",
    "k": r"\s?[0-9]{1,2}",
    "I": r"[0-9]{1,2}",
    "l": r"\s?[0-9]{1,2}",
    "M": r"[0-9]{1,2}",
    "S": r"[0-9]{1,2}",
    "f": r"[0-9]{1,9}",
    "b": r"\p{L}{3,4}\.?",
    "h": r"\p{L}{3,4}\.?",
    "B": r"\p{L}+",
    "a": r"\p{L}{2,3}\.?",
    "A": r"\p{L}+",
    "p": r"(?i:[ap]\.?m\.?)",
    "P": r"(?i:[ap]\.?m\.?)",
    "z": r"(?:[+-][0-9]{2}:?[0-9]{2}|Z)",
    "Z": r"\p{L}+",
    "F": r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}",
    "D": r"[0-9]{1,2}/[0-9]{1,2}/[0-9]{2}",
    "T": r"[0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}",
    "R": r"[0-9]{1,2}:[0-9]{1,2}",
    "%": "%",
}
_TIME_DIRECTIVES = set("HkIlMSfpPzTRZ")

_ISO_RE = (
    r"^(?P<date>[0-9]{4}-[0-9]{1,2}-[0-9]{1,2})"
    r"(?:[T ](?P<h>[0-9]{1,2}):(?P<mi>[0-9]{2})(?::(?P<s>[0-9]{2})(?:[.,][0-9]+)?)?"
    r"\s?(?:Z|[+-][0-9]{2}:?[0-9]{2})?)?$"
)
# Two or three numeric fields with separators but not ISO: day and month order is unknown.
_DATE_LIKE_RE = r"^[0-9]{1,4}[-/. ][0-9]{1,2}[-/. ][0-9]{1,4}(?:[T ].*)?$"


def format_shape(fmt: str) -> str:
    """Anchored regex for the text shape `fmt` accepts ("%d-%m-%Y" -> "^[0-9]{1,2}\\-...$")."""
    parts: list[str] = []
    tokens = re.finditer(r"%[-_0^#]?(?:\.?\d*f|:?z|[A-Za-z%])|\s+|.", fmt)
    for token in tokens:
        text = token.group()
        if text.startswith("%") and len(text) > 1:
            directive = text[-1]
            if directive == "f" and ".f" in text:
                parts.append(r"(?:\.[0-9]{1,9})?")
            else:
                parts.append(_DIRECTIVE_SHAPES.get(directive, r".+?"))
        elif text.isspace():
            parts.append(r"\s*")
        else:
            parts.append(re.escape(text))
    return "^" + "".join(parts) + "$"


def _has_time(fmt: str) -> bool:
    return any(f"%{d}" in fmt for d in _TIME_DIRECTIVES)


def _parse_text(
    text: pl.Expr, fmt: str | None, dtype: type[pl.Date] | pl.Datetime
) -> tuple[pl.Expr, pl.Expr]:
    """(parsed value, issue code before range checks) for cleaned text."""
    want_date = dtype == pl.Date
    if fmt is None:
        parts = text.str.extract_groups(_ISO_RE)
        iso = parts.struct.field("date").is_not_null()
        if want_date:
            parsed = parts.struct.field("date").str.strptime(pl.Date, "%Y-%m-%d", strict=False)
        else:
            stamp = pl.concat_str(
                [
                    parts.struct.field("date"),
                    pl.lit(" "),
                    parts.struct.field("h").fill_null("0"),
                    pl.lit(":"),
                    parts.struct.field("mi").fill_null("00"),
                    pl.lit(":"),
                    parts.struct.field("s").fill_null("00"),
                ]
            )
            parsed = stamp.str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S", strict=False)
        issue = (
            pl.when(text.is_null())
            .then(None)
            .when(iso & parsed.is_null())
            .then(pl.lit("date_impossible"))
            .when(~iso & text.str.contains(_DATE_LIKE_RE))
            .then(pl.lit("date_ambiguous"))
            .when(~iso)
            .then(pl.lit("date_unparsable"))
        )
        return pl.when(iso).then(parsed), issue

    shaped = text.str.contains(format_shape(fmt))
    if _has_time(fmt):
        parsed = text.str.strptime(pl.Datetime("us"), fmt, strict=False)
        if "z" in fmt:
            # Offsets are applied (UTC) and then dropped: the output is naive like the rest.
            parsed = parsed.dt.replace_time_zone(None)
        if want_date:
            parsed = parsed.dt.date()
    else:
        parsed = text.str.strptime(pl.Date, fmt, strict=False)
        if not want_date:
            parsed = parsed.cast(pl.Datetime("us"))
    issue = (
        pl.when(text.is_null())
        .then(None)
        .when(~shaped)
        .then(pl.lit("date_unparsable"))
        .when(parsed.is_null())
        .then(pl.lit("date_impossible"))
    )
    return pl.when(shaped).then(parsed), issue


def _parse(
    df: pl.DataFrame,
    column: str,
    fmt: str | None,
    today: date | None,
    earliest: date,
    dtype: type[pl.Date] | pl.Datetime,
) -> pl.DataFrame:
    today = today or date.today()
    value, issue_col = _TMP + "value", _TMP + "issue"
    if column not in df.columns:
        df = df.with_columns(pl.lit(None, dtype=pl.Utf8).alias(column))
    source = df.schema[column]

    if source in (pl.Date, pl.Datetime) or isinstance(source, pl.Datetime):
        # Already typed upstream: nothing to parse, only the range rule applies.
        col = pl.col(column)
        if dtype == pl.Date:
            col = col.dt.date() if source != pl.Date else col
        elif source == pl.Date:
            col = col.cast(pl.Datetime("us"))
        elif isinstance(source, pl.Datetime) and source.time_zone is not None:
            col = col.dt.replace_time_zone(None)
        derived = df.select(
            col.alias(value),
            pl.lit(None, dtype=pl.Utf8).alias(issue_col),
            col.is_null().alias(_TMP + "was_null"),
        )
    else:

        def derive(unique: pl.DataFrame) -> pl.DataFrame:
            text = pl.col(_TMP + "text")
            parsed, issue = _parse_text(text, fmt, dtype)
            return (
                unique.lazy()
                .with_columns(clean_text(pl.col(column).cast(pl.Utf8)).alias(_TMP + "text"))
                .with_columns(
                    parsed.alias(value),
                    issue.alias(issue_col),
                    text.is_null().alias(_TMP + "was_null"),
                )
                .select(column, value, issue_col, _TMP + "was_null")
                .collect()
            )

        derived = derive_on_unique(df.select(column), [column], derive).drop(column)

    day = pl.col(value) if dtype == pl.Date else pl.col(value).dt.date()
    out_of_range = (day < earliest) | (day > today)
    issue = pl.coalesce(pl.col(issue_col), pl.when(out_of_range).then(pl.lit("date_out_of_range")))
    issue = keep_previous_issue(df, f"{column}_issue", issue, pl.col(_TMP + "was_null"))
    out = df.with_columns(derived.get_columns()).with_columns(
        pl.when(out_of_range.not_()).then(pl.col(value)).alias(column),
        issue.alias(f"{column}_issue"),
    )
    return out.drop([c for c in out.columns if c.startswith(_TMP)])


def parse_dates(
    df: pl.DataFrame,
    column: str,
    fmt: str | None,
    today: date | None = None,
    earliest: date = date(1900, 1, 1),
) -> pl.DataFrame:
    """Replace `column` by a strictly parsed pl.Date and add `<column>_issue`."""
    return _parse(df, column, fmt, today, earliest, pl.Date)


def parse_datetimes(
    df: pl.DataFrame,
    column: str,
    fmt: str | None,
    today: date | None = None,
    earliest: date = date(1900, 1, 1),
) -> pl.DataFrame:
    """Like parse_dates but keeps the time: `column` becomes a naive pl.Datetime("us")."""
    return _parse(df, column, fmt, today, earliest, pl.Datetime("us"))
