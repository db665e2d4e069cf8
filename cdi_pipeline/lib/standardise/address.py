"""Address standardisation: street/house number split, postcode rules, display and keys."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from cdi_pipeline.lib.standardise.codes import country_expr
from cdi_pipeline.lib.standardise.text import (
    clean_text,
    derive_on_unique,
    display_case,
    ensure_utf8_columns,
    fold_accents,
    keep_previous_issue,
    letters_key,
    normalise_punctuation,
    null_if_empty,
    squish,
)

_TMP = "__ad_"
INPUT_COLUMNS = ["street", "house_number", "postcode", "city", "country"]
OUTPUT_COLUMNS = [
    "street",
    "street_key",
    "house_number",
    "house_number_addition",
    "postcode",
    "city",
    "city_key",
    "country",
    "postcode_issue",
]

# Countries that write the number before the street ("221B Baker Street", "12 rue ...").
_NUMBER_FIRST = ["GB", "US", "AU", "CA", "IE", "NZ", "FR", "ZA"]
_DUTCH_STYLE = ["NL", "BE"]
_GERMAN_STYLE = ["DE", "AT", "CH"]
_ENGLISH_STYLE = ["GB", "US", "AU", "CA", "IE", "NZ", "ZA"]

# Trailing "12", "12a", "12 A", "12-2", "12 bis", "12-hs", "12 h.s.", "12 A 3". A digit addition
# needs a "-" or "/" so that "Plein 1940-1945 3" keeps "1940-1945" in the street name.
_ADDITION = (
    r"(?:[-/]\s*[0-9]{1,3}\p{L}{0,3}"
    r"|\s*-?\s*\p{L}{1,4}\.?(?:\s*\p{L}{1,2}\.?)?(?:\s*[0-9]{1,3})?)"
)
_RE_STREET_NUMBER_LAST = (
    rf"^(?P<street>.*?\p{{L}}.*?)[\s,]+(?P<num>[0-9]{{1,6}})\s*(?P<add>{_ADDITION})?$"
)
_RE_STREET_NUMBER_FIRST = r"^(?P<num>[0-9]{1,6})(?P<add>\p{L})?,?\s+(?P<street>\p{L}.*)$"
_RE_HOUSE_NUMBER = r"^(?P<num>[0-9]{1,6})\s*[-/.,]?\s*(?P<add>[\p{L}[0-9]][\p{L}[0-9]\s./-]*)?$"

# (pattern, replacement) applied to the lowercase, folded street before removing spaces.
_DUTCH_ABBREVIATIONS = [
    (r"str\b\.?", "straat"),
    (r"pln\b\.?", "plein"),
    (r"ln\b\.?", "laan"),
    (r"wg\b\.?", "weg"),
    (r"gr\b\.?", "gracht"),
    (r"kd\b\.?", "kade"),
    (r"\bburg\.", "burgemeester "),
    (r"\bst\.", "sint "),
    (r"\bprof\.", "professor "),
]
_GERMAN_ABBREVIATIONS = [(r"str\b\.?", "strasse")]
_ENGLISH_ABBREVIATIONS = [
    (r"\bst\b\.?", "street"),
    (r"\brd\b\.?", "road"),
    (r"\bave?\b\.?", "avenue"),
    (r"\bln\b\.?", "lane"),
    (r"\bdr\b\.?", "drive"),
    (r"\bblvd\b\.?", "boulevard"),
]


def _expand(expr: pl.Expr, rules: list[tuple[str, str]]) -> pl.Expr:
    """Apply regex (pattern, replacement) rules in order."""
    for pattern, replacement in rules:
        expr = expr.str.replace_all(pattern, replacement)
    return expr


def _street_key(street: pl.Expr, country: pl.Expr) -> pl.Expr:
    """Folded lowercase letters/digits key with country-specific abbreviations expanded."""
    base = fold_accents(street.str.to_lowercase()).str.to_lowercase()
    expanded = (
        pl.when(country.is_in(_DUTCH_STYLE))
        .then(_expand(base, _DUTCH_ABBREVIATIONS))
        .when(country.is_in(_GERMAN_STYLE))
        .then(_expand(base, _GERMAN_ABBREVIATIONS))
        .when(country.is_in(_ENGLISH_STYLE))
        .then(_expand(base, _ENGLISH_ABBREVIATIONS))
        .otherwise(base)
    )
    key = expanded.str.replace_all(r"[^\p{L}\p{N}]", "")
    return null_if_empty(key)


def _addition(expr: pl.Expr) -> pl.Expr:
    """House-number addition without separators, uppercase: "h.s." -> "HS", "-2" -> "2"."""
    out = fold_accents(expr).str.replace_all(r"[^\p{L}\p{N}]", "").str.to_uppercase()
    return null_if_empty(out)


def _number(expr: pl.Expr) -> pl.Expr:
    """Digits without leading zeros ("012" -> "12"), keeping a lone "0"."""
    return expr.str.replace(r"^0+([0-9])", "$1")


def _derive_country(default_country: str) -> Callable[[pl.DataFrame], pl.DataFrame]:
    """Deriver mapping distinct country values to ISO-2, blanks to the default."""

    def derive(unique: pl.DataFrame) -> pl.DataFrame:
        cleaned = clean_text(pl.col("country")).str.to_uppercase()
        # An unrecognised value is kept (cleaned) rather than nulled: a null would be filled
        # with the default on the next run, and no country-specific rule is applied to it.
        code = (
            pl.when(cleaned.is_null())
            .then(pl.lit(default_country.strip().upper()))
            .otherwise(pl.coalesce(country_expr(pl.col("country")), cleaned))
        )
        return unique.with_columns(code.alias(_TMP + "country"))

    return derive


def _derive_street(unique: pl.DataFrame) -> pl.DataFrame:
    """Split a trailing/leading house number off the street (only when house_number is empty)."""
    street = pl.col(_TMP + "street_clean")
    country = pl.col(_TMP + "country")
    may_split = pl.col(_TMP + "hn_missing")
    last = pl.col(_TMP + "last")
    first = pl.col(_TMP + "first")
    lf = (
        unique.lazy()
        .with_columns(
            clean_text(normalise_punctuation(pl.col("street"))).alias(_TMP + "street_clean")
        )
        .with_columns(
            pl.when(may_split)
            .then(street.str.extract_groups(_RE_STREET_NUMBER_LAST))
            .alias(_TMP + "last"),
            pl.when(may_split & country.is_in(_NUMBER_FIRST))
            .then(street.str.extract_groups(_RE_STREET_NUMBER_FIRST))
            .alias(_TMP + "first"),
        )
        .with_columns(
            squish(
                pl.coalesce(
                    last.struct.field("street"), first.struct.field("street"), street
                ).str.strip_chars(" ,")
            ).alias(_TMP + "street_part"),
            pl.coalesce(last.struct.field("num"), first.struct.field("num")).alias(
                _TMP + "street_num"
            ),
            pl.when(last.struct.field("num").is_not_null())
            .then(last.struct.field("add"))
            .otherwise(first.struct.field("add"))
            .alias(_TMP + "street_add"),
        )
        .with_columns(
            display_case(pl.col(_TMP + "street_part")).alias(_TMP + "street"),
        )
        .with_columns(
            _street_key(pl.col(_TMP + "street"), country).alias(_TMP + "street_key"),
            _number(pl.col(_TMP + "street_num")).alias(_TMP + "street_num"),
            _addition(pl.col(_TMP + "street_add")).alias(_TMP + "street_add"),
        )
    )
    return lf.drop(
        _TMP + "street_clean", _TMP + "last", _TMP + "first", _TMP + "street_part"
    ).collect()


def _derive_house_number(unique: pl.DataFrame) -> pl.DataFrame:
    """Number and addition for distinct house_number values ("12-hs" -> "12", "HS")."""
    cleaned = clean_text(pl.col("house_number").str.replace(r"^([0-9]+)\.0+$", "$1"))
    parts = pl.col(_TMP + "hn_parts")
    return (
        unique.lazy()
        .with_columns(cleaned.alias(_TMP + "hn_clean"))
        .with_columns(
            pl.col(_TMP + "hn_clean").str.extract_groups(_RE_HOUSE_NUMBER).alias(_TMP + "hn_parts")
        )
        .with_columns(
            _number(parts.struct.field("num")).alias(_TMP + "hn_num"),
            _addition(parts.struct.field("add")).alias(_TMP + "hn_add"),
            # Also true for unusable values ("a", "?"): then the street may hold the number,
            # and re-running on our own output (house_number null) takes the same path.
            parts.struct.field("num").is_null().alias(_TMP + "hn_missing"),
        )
        .drop(_TMP + "hn_clean", _TMP + "hn_parts")
        .collect()
    )


def _derive_postcode(unique: pl.DataFrame) -> pl.DataFrame:
    """NL postcodes to "1234 AB" (or an issue); others only upper-cased and squished."""
    raw = clean_text(pl.col("postcode")).str.to_uppercase()
    compact = pl.col(_TMP + "pc_raw").str.replace_all(r"\s", "").str.replace(r"^NL-?", "")
    is_nl = pl.col(_TMP + "country") == "NL"
    nl_valid = compact.str.contains(r"^[1-9][0-9]{3}[A-Z]{2}$")
    nl_form = pl.concat_str([compact.str.slice(0, 4), pl.lit(" "), compact.str.slice(4, 2)])
    return (
        unique.lazy()
        .with_columns(raw.alias(_TMP + "pc_raw"))
        .with_columns(
            pl.when(is_nl)
            .then(pl.when(nl_valid).then(nl_form))
            .otherwise(pl.col(_TMP + "pc_raw"))
            .alias(_TMP + "postcode"),
            pl.when(is_nl & pl.col(_TMP + "pc_raw").is_not_null() & ~nl_valid)
            .then(pl.lit("postcode_invalid"))
            .alias(_TMP + "pc_issue"),
            pl.col(_TMP + "pc_raw").is_null().alias(_TMP + "pc_missing"),
        )
        .drop(_TMP + "pc_raw")
        .collect()
    )


def _derive_city(unique: pl.DataFrame) -> pl.DataFrame:
    """Display city and folded city key for distinct city values."""
    city = display_case(clean_text(normalise_punctuation(pl.col("city"))))
    return (
        unique.lazy()
        .with_columns(city.alias(_TMP + "city"))
        .with_columns(letters_key(pl.col(_TMP + "city"), digits=True).alias(_TMP + "city_key"))
        .collect()
    )


def _derive_explicit_addition(unique: pl.DataFrame) -> pl.DataFrame:
    """Normalise a separate house_number_addition field (or our own earlier output)."""
    return unique.with_columns(
        _addition(clean_text(pl.col("house_number_addition"))).alias(_TMP + "explicit_add")
    )


def standardise_address(df: pl.DataFrame, default_country: str = "NL") -> pl.DataFrame:
    """Standardise street, house number (+ addition), postcode, city and country."""
    df = ensure_utf8_columns(df, INPUT_COLUMNS)
    inputs = [*INPUT_COLUMNS]
    if "house_number_addition" in df.columns:
        # Either a separate source field or our own output from an earlier run.
        df = ensure_utf8_columns(df, ["house_number_addition"])
        inputs.append("house_number_addition")
    if "postcode_issue" in df.columns:
        inputs.append("postcode_issue")
    out = derive_on_unique(df.select(inputs), ["country"], _derive_country(default_country))
    out = derive_on_unique(out, ["house_number"], _derive_house_number)
    out = derive_on_unique(out, ["street", _TMP + "hn_missing", _TMP + "country"], _derive_street)
    out = derive_on_unique(out, ["postcode", _TMP + "country"], _derive_postcode)
    out = derive_on_unique(out, ["city"], _derive_city)
    if "house_number_addition" in out.columns:
        out = derive_on_unique(out, ["house_number_addition"], _derive_explicit_addition)
        explicit = pl.col(_TMP + "explicit_add")
    else:
        explicit = pl.lit(None, dtype=pl.Utf8)

    issue = keep_previous_issue(
        df, "postcode_issue", pl.col(_TMP + "pc_issue"), pl.col(_TMP + "pc_missing")
    )
    from_street = pl.col(_TMP + "hn_missing")
    result = out.lazy().select(
        pl.col(_TMP + "street").alias("street"),
        pl.col(_TMP + "street_key").alias("street_key"),
        pl.when(from_street)
        .then(pl.col(_TMP + "street_num"))
        .otherwise(pl.col(_TMP + "hn_num"))
        .alias("house_number"),
        pl.coalesce(
            pl.when(from_street)
            .then(pl.col(_TMP + "street_add"))
            .otherwise(pl.col(_TMP + "hn_add")),
            explicit,
        ).alias("house_number_addition"),
        pl.col(_TMP + "postcode").alias("postcode"),
        pl.col(_TMP + "city").alias("city"),
        pl.col(_TMP + "city_key").alias("city_key"),
        pl.col(_TMP + "country").alias("country"),
        issue.alias("postcode_issue"),
    )
    return df.with_columns(result.collect().get_columns()).select(
        df.columns + [c for c in OUTPUT_COLUMNS if c not in df.columns]
    )
