"""Person-name standardisation: display names, Dutch tussenvoegsels, initials and matching keys."""

from __future__ import annotations

import csv
import functools
import re
from pathlib import Path

import polars as pl

from cdi_pipeline.lib.standardise.text import (
    clean_text,
    derive_on_unique,
    display_case,
    ensure_utf8_columns,
    fold_accents,
    letters_key,
    normalise_punctuation,
    null_if_empty,
    squish,
)

MAX_NAME_LENGTH = 100
OUTPUT_COLUMNS = [
    "first_name",
    "last_name",
    "name_prefix",
    "full_name",
    "initials",
    "first_name_key",
    "first_name_canonical",
    "last_name_key",
    "name_issue",
]
_DATA_DIR = Path(__file__).parent / "data"
_TMP = "__nm_"
_F = _TMP + "f_"
_L = _TMP + "l_"
_U = _TMP + "u_"
_S = _TMP + "s_"

# --- tussenvoegsel grammar -------------------------------------------------------------------
# Location words only occur in front of an article ("in 't Veld", "op den Akker"); on their own
# they are far more likely to be part of a real name, so they are only accepted as a pair.
_COMBOS = r"(?:in|op|aan|bij|onder|uit|voor|over)\s+(?:den|der|de|het|'t)"
_DUTCH = r"vander|vanden|vande|van|von|vom|zum|zur|zu|der|den|dem|des|de|het|'t|'s|ten|ter|te"
# Romance and Arabic articles are recognised in front of a surname only: as a trailing word
# "Minh Le" or "Tom Da" is a surname, not a prefix written after it. "El Amrani" is a surname
# with its article, not the given name "El" ("Ben" stays out: it is a common given name).
_ROMANCE = r"della|dal|del|das|dos|les|la|le|du|di|da|el|al|abu"
_ABBR_DOT = r"v\.\s?d\.|v\.d\.|vd\.|v\."
_ABBR_NODOT = r"v\.d|v/d|vd"
_APOS = r"d'|l'"

_LEAD_SEQ = (
    rf"(?:(?:{_COMBOS}|{_DUTCH}|{_ROMANCE}|{_ABBR_NODOT})\s+|(?:{_ABBR_DOT})\s*|(?:{_APOS})\s*)+"
)
_TRAIL_WORD = rf"(?:{_COMBOS}|{_ABBR_DOT}|{_ABBR_NODOT}|{_DUTCH})"
_TRAIL_SEQ = rf"{_TRAIL_WORD}(?:\s+{_TRAIL_WORD})*"

_RE_LEAD = rf"(?i)^(?P<p>{_LEAD_SEQ})(?P<s>\p{{L}}.*)$"
_RE_TRAIL = rf"(?i)^(?P<s>.+?)[\s,]+(?P<p>{_TRAIL_SEQ})$"
_RE_MID = rf"(?i)^(?P<g>\S.*?)\s+(?P<p>{_LEAD_SEQ})(?P<s>\p{{L}}.*)$"
# Last-token split; "Jansen-de Vries" stays one surname because "-de" binds to the next token.
_RE_LAST_TOKEN = rf"(?i)^(?:(?P<g>.*?)\s+)??(?P<s>(?:\S+-{_TRAIL_SEQ}\s+)*\S+)$"
_RE_COMMA = r"^(?P<s>[^,]*[^,\s])\s*,\s*(?P<g>.*)$"
_RE_GIVEN_TRAIL = rf"(?i)^(?:(?P<g>.*?)\s+)??(?P<p>{_TRAIL_SEQ})$"

_PREFIX_TOKENS = {
    "v.d.": "van der",
    "v.d": "van der",
    "vd.": "van der",
    "vd": "van der",
    "v/d": "van der",
    "v.": "van",
    "vander": "van der",
    "vanden": "van den",
    "vande": "van de",
}

# Single letters with dots/spaces ("J.", "J.P.", "J P") or a short all-caps consonant run ("JP").
_RE_INITIALS = r"^(?:\p{L}(?:\.\s*|\s+))*\p{L}\.?$|^[\p{Lu}&&[^AEIOUY]]{1,3}$"


@functools.cache
def nickname_map() -> dict[str, str]:
    """Nickname variant -> canonical given-name key, read once from data/nicknames.csv."""
    with (_DATA_DIR / "nicknames.csv").open(encoding="utf-8", newline="") as fh:
        return {
            row["variant"].strip(): row["canonical"].strip()
            for row in csv.DictReader(fh)
            if row["variant"].strip() and row["variant"].strip() != row["canonical"].strip()
        }


def _strip_name_chars(expr: pl.Expr) -> pl.Expr:
    """Keep letters, marks, spaces, hyphens, apostrophes, dots (and commas for parsing)."""
    out = normalise_punctuation(expr).str.replace_all(r"[^\p{L}\p{M}\s\-'.,]", "")
    out = (
        out.str.replace_all(r"\s*-[\s-]*", "-")
        .str.replace_all(r"(')'+|(\.)\.+", "$1$2")
        .str.replace_all(r"\s*,[\s,]*", ", ")
    )
    # Tokens left with only ' or . are debris of removed characters ("Robert'); DROP" ...).
    # Doubling the spaces gives each token its own delimiters, so adjacent debris tokens
    # are all removed in one pass (which keeps this idempotent).
    out = out.str.replace_all(" ", "  ").str.replace_all(r"(^| )['.]+( |$)", "$1$2")
    return squish(out.str.strip_chars(" -,"))


def _tidy_part(expr: pl.Expr) -> pl.Expr:
    """Final clean-up of an extracted name part: parsing commas go, the rest as on input."""
    return _strip_name_chars(expr.str.replace_all(",", " "))


def _canonical_prefix(raw: str) -> str | None:
    """Lowercase a raw tussenvoegsel and expand abbreviations: 'V.D.' -> 'van der'."""
    low = re.sub(r"v\.\s+d\.", "v.d.", " ".join(raw.lower().split()))
    out = " ".join(_PREFIX_TOKENS.get(token, token) for token in low.split())
    return out or None


def _with_canonical_prefix(lf: pl.LazyFrame, raw_col: str, out_col: str) -> pl.DataFrame:
    """Map raw prefixes to canonical form; the distinct raw values are a handful of strings."""
    df = lf.collect()
    raw = df[raw_col].drop_nulls().unique().to_list()
    mapping = {value: _canonical_prefix(value) for value in raw}
    return df.with_columns(
        pl.col(raw_col).replace_strict(mapping, default=None, return_dtype=pl.Utf8).alias(out_col)
    )


# Injected SQL or script text in a name field: quarantined, never matched on.
_CODE_PATTERN = (
    r"(?i)(;|--|=|\b(drop|delete|insert|update|select|truncate)\b\s+\w+|"
    r"<\s*script|'\s*or\s*')"
)
_SALUTATION_PATTERN = (
    r"(?i)^\s*(dhr|mevr|mevrouw|mw|mej|de heer|heer|fam|mr|mrs|ms|miss)(\.\s*|\s+)"
)


def _prepare(lf: pl.LazyFrame, src: str, value_col: str, issue_col: str) -> pl.LazyFrame:
    """Clean one name input into `value_col` (null when it has an issue) and `issue_col`."""
    cleaned = pl.col(_TMP + "clean")
    issue = (
        pl.when(cleaned.is_null())
        .then(None)
        .when(cleaned.str.len_chars() > MAX_NAME_LENGTH)
        .then(pl.lit("name_too_long"))
        .when(~cleaned.str.contains(r"\p{L}"))
        .then(pl.lit("name_no_letters"))
        .when(cleaned.str.contains(_CODE_PATTERN))
        .then(pl.lit("name_looks_like_code"))
    )
    # A salutation is not part of the name: "dhr. Broek" would otherwise get the given name
    # "dhr" and match every other "dhr." in the support desk.
    text = clean_text(pl.col(src)).str.replace(_SALUTATION_PATTERN, "")
    return (
        lf.with_columns(null_if_empty(text).alias(_TMP + "clean"))
        .with_columns(issue.alias(issue_col))
        .with_columns(
            pl.when(pl.col(issue_col).is_null()).then(_strip_name_chars(cleaned)).alias(value_col)
        )
        .drop(_TMP + "clean")
    )


def _given_features(lf: pl.LazyFrame, given_col: str, tag: str) -> pl.LazyFrame:
    """Add display first name, initials, key and canonical key derived from a given-name part."""
    given, is_initials = pl.col(tag + "g"), pl.col(tag + "isinit")
    first = pl.col(tag + "first")
    # Initials come from the folded display name, so re-reading "Ssa" (from "ßa") or "Ae"
    # gives the same initials as the first run.
    first_letters = fold_accents(first).str.replace_all(r"(\p{L})[\p{L}\p{M}']*", "$1")
    return (
        lf.with_columns(_tidy_part(pl.col(given_col)).alias(tag + "g"))
        .with_columns(given.str.contains(_RE_INITIALS).alias(tag + "isinit"))
        .with_columns(pl.when(~is_initials).then(display_case(given)).alias(tag + "first"))
        .with_columns(
            letters_key(pl.when(is_initials).then(given).otherwise(first_letters)).alias(
                tag + "initials"
            ),
            letters_key(first).alias(tag + "fkey"),
        )
        .with_columns(pl.col(tag + "fkey").replace(nickname_map()).alias(tag + "canon"))
    )


def _surname_features(
    lf: pl.LazyFrame, surname_col: str, prefix_col: str, tag: str
) -> pl.DataFrame:
    """Add display surname, surname key and canonical prefix from raw surname/prefix parts."""
    lf = lf.with_columns(_tidy_part(pl.col(surname_col)).alias(tag + "tidy"))
    lf = lf.with_columns(display_case(pl.col(tag + "tidy")).alias(tag + "last"))
    lf = lf.with_columns(letters_key(pl.col(tag + "last")).alias(tag + "lkey"))
    return _with_canonical_prefix(lf, prefix_col, tag + "prefix")


def _split_surname(lf: pl.LazyFrame, col: str, tag: str) -> pl.LazyFrame:
    """Split a surname field into tussenvoegsel (written before or after) and surname."""
    lead, trail = pl.col(tag + "lead"), pl.col(tag + "trail")
    return (
        lf.with_columns(_tidy_part(pl.col(col)).alias(tag + "tidy_src"))
        .with_columns(
            # The leading form is matched on the comma-free text that will be displayed, so
            # that re-reading our own output ("Da A" from "DA,A") finds the same prefix.
            pl.col(tag + "tidy_src").str.extract_groups(_RE_LEAD).alias(tag + "lead"),
            pl.col(col).str.extract_groups(_RE_TRAIL).alias(tag + "trail"),
        )
        .with_columns(
            pl.coalesce(lead.struct.field("p"), trail.struct.field("p")).alias(tag + "p"),
            pl.coalesce(lead.struct.field("s"), trail.struct.field("s"), pl.col(col)).alias(
                tag + "s"
            ),
        )
    )


_GIVEN_OUT = ["first", "initials", "fkey", "canon"]
_SURNAME_OUT = ["last", "lkey", "prefix"]


def _derive_first(df: pl.DataFrame) -> pl.DataFrame:
    """Given-name features for distinct first_name values."""
    lf = _prepare(df.lazy(), "first_name", _F + "given", _F + "issue")
    lf = _given_features(lf, _F + "given", _F)
    return lf.select("first_name", *[_F + c for c in ["given", "issue", *_GIVEN_OUT]]).collect()


def _derive_last(df: pl.DataFrame) -> pl.DataFrame:
    """Prefix/surname features for distinct last_name values."""
    lf = _prepare(df.lazy(), "last_name", _L + "value", _L + "issue")
    lf = _split_surname(lf, _L + "value", _L)
    out = _surname_features(lf, _L + "s", _L + "p", _L)
    return out.select("last_name", *[_L + c for c in ["value", "issue", *_SURNAME_OUT]])


def _derive_full(df: pl.DataFrame) -> pl.DataFrame:
    """Split distinct full_name values into given name, prefix and surname features."""
    lf = _prepare(df.lazy(), "full_name", _U + "value", _U + "issue")
    full = pl.col(_U + "value")

    # "Surname, Given" form: surname part may carry a leading/trailing prefix, the given part
    # a trailing one ("Berg, J. van der").
    lf = lf.with_columns(full.str.extract_groups(_RE_COMMA).alias(_U + "comma"))
    lf = lf.with_columns(
        pl.col(_U + "comma").struct.field("s").alias(_U + "cs"),
        pl.col(_U + "comma").struct.field("g").alias(_U + "cg"),
    )
    lf = _split_surname(lf, _U + "cs", _U + "k")

    # Plain "Given [prefix] Surname" form.
    plain = pl.col(_U + "plain")
    lf = lf.with_columns(pl.when(pl.col(_U + "cs").is_null()).then(full).alias(_U + "plain"))
    lf = lf.with_columns(
        pl.col(_U + "cg").str.extract_groups(_RE_GIVEN_TRAIL).alias(_U + "gtrail"),
        plain.str.extract_groups(_RE_LEAD).alias(_U + "lead"),
        plain.str.extract_groups(_RE_TRAIL).alias(_U + "trail"),
        plain.str.extract_groups(_RE_MID).alias(_U + "mid"),
    )
    given_trail, lead = pl.col(_U + "gtrail"), pl.col(_U + "lead")
    trail, mid = pl.col(_U + "trail"), pl.col(_U + "mid")
    lf = lf.with_columns(
        pl.coalesce(trail.struct.field("s"), plain)
        .str.extract_groups(_RE_LAST_TOKEN)
        .alias(_U + "lastok")
    )
    last_token = pl.col(_U + "lastok")

    has_comma = pl.col(_U + "cs").is_not_null()
    has_lead = lead.struct.field("p").is_not_null()
    # A full name of dotted initials only ("J.P.") is a given-name part, not a surname.
    only_initials = full.str.contains(r"^(?:\p{L}\.\s*)+$")
    # A prefix written after everything ("Berg van der") wins over one in the middle.
    use_last_token = trail.struct.field("p").is_not_null() | mid.struct.field("p").is_null()
    given = (
        pl.when(only_initials)
        .then(full)
        .when(has_comma)
        .then(
            pl.when(given_trail.struct.field("p").is_not_null())
            .then(given_trail.struct.field("g"))
            .otherwise(pl.col(_U + "cg"))
        )
        .when(has_lead)
        .then(None)
        .when(use_last_token)
        .then(last_token.struct.field("g"))
        .otherwise(mid.struct.field("g"))
    )
    surname = (
        pl.when(only_initials)
        .then(None)
        .when(has_comma)
        .then(pl.col(_U + "ks"))
        .when(has_lead)
        .then(lead.struct.field("s"))
        .when(use_last_token)
        .then(last_token.struct.field("s"))
        .otherwise(mid.struct.field("s"))
    )
    prefix = (
        pl.when(has_comma)
        .then(pl.coalesce(pl.col(_U + "kp"), given_trail.struct.field("p")))
        .otherwise(
            pl.coalesce(lead.struct.field("p"), trail.struct.field("p"), mid.struct.field("p"))
        )
    )
    split = lf.select(
        "full_name",
        _U + "value",
        _U + "issue",
        given.alias(_U + "given"),
        surname.alias(_U + "surname"),
        prefix.alias(_U + "p"),
    ).collect()
    # Whole names are nearly all distinct, their given names and surnames are not: the
    # features of each part are derived once per distinct part.
    split = derive_on_unique(
        split,
        [_U + "given"],
        lambda d: _given_features(d.lazy(), _U + "given", _U)
        .select(_U + "given", *[_U + c for c in _GIVEN_OUT])
        .collect(),
    )
    split = derive_on_unique(
        split,
        [_U + "surname", _U + "p"],
        lambda d: _surname_features(d.lazy(), _U + "surname", _U + "p", _U).select(
            _U + "surname", _U + "p", *[_U + c for c in _SURNAME_OUT]
        ),
    )
    return split.select(
        "full_name", *[_U + c for c in ["value", "issue", *_GIVEN_OUT, *_SURNAME_OUT]]
    )


def _prefixed_surname(prefix: pl.Expr, surname: pl.Expr) -> pl.Expr:
    """Display 'van der Berg'; an elided article attaches without a space ("d'Ancona")."""
    joined = (
        pl.when(prefix.str.ends_with("'"))
        .then(pl.concat_str([prefix, surname]))
        .otherwise(pl.concat_str([prefix, surname], separator=" ", ignore_nulls=True))
    )
    return pl.when(surname.is_not_null()).then(joined)


def _given_before_surname(full: pl.Expr, surname_display: pl.Expr) -> pl.Expr:
    """Given-name part of a full name that ends with the known surname display, else null."""
    # Lets a last_name field anchor the split of a full_name field, instead of guessing
    # where the surname starts ("J.P. Berg van derman" with last_name "Berg van derman").
    full_low = full.str.to_lowercase()
    matches = full_low.str.ends_with(surname_display.str.to_lowercase()) & (
        full_low.str.len_chars() == full.str.len_chars()
    )
    head = full.str.head(full.str.len_chars() - surname_display.str.len_chars())
    # An empty head (full name is just the surname) is kept as "" so it still wins.
    return pl.when(matches).then(head.str.strip_chars(" ,"))


def standardise_names(df: pl.DataFrame) -> pl.DataFrame:
    """Standardise first/last/full name into display parts, tussenvoegsel, initials and keys."""
    df = ensure_utf8_columns(df, ["first_name", "last_name", "full_name"])
    # Work on a narrow frame: every join gathers all columns it carries.
    inputs = ["first_name", "last_name", "full_name"]
    if "name_issue" in df.columns:
        inputs.append("name_issue")
    out = derive_on_unique(df.select(inputs), ["first_name"], _derive_first)
    out = derive_on_unique(out, ["last_name"], _derive_last)
    out = derive_on_unique(out, ["full_name"], _derive_full)

    def f(name: str) -> pl.Expr:
        return pl.col(_F + name)

    def lc(name: str) -> pl.Expr:
        return pl.col(_L + name)

    def u(name: str) -> pl.Expr:
        return pl.col(_U + name)

    def s(name: str) -> pl.Expr:
        return pl.col(_S + name)

    # Separate first/last name fields win over what a full-name field says.
    use_first = f("given").is_not_null()
    use_last = lc("value").is_not_null()
    anchored = pl.when(~use_first & use_last).then(
        _given_before_surname(u("value"), _prefixed_surname(lc("prefix"), lc("last")))
    )
    out = out.lazy().with_columns(anchored.alias(_S + "raw")).collect()
    out = derive_on_unique(
        out,
        [_S + "raw"],
        lambda d: (
            _given_features(d.lazy(), _S + "raw", _S)
            .select(_S + "raw", *[_S + c for c in _GIVEN_OUT])
            .collect()
        ),
    ).with_columns(
        pl.when(use_first)
        .then(pl.lit("f"))
        .when(s("raw").is_not_null())
        .then(pl.lit("s"))
        .otherwise(pl.lit("u"))
        .alias(_TMP + "gsrc")
    )

    def given(name: str) -> pl.Expr:
        src = pl.col(_TMP + "gsrc")
        return pl.when(src == "f").then(f(name)).when(src == "s").then(s(name)).otherwise(u(name))

    # A full name that only repeats the first name ("Kees" / "Kees") holds no surname.
    full_is_first = (u("value").str.to_lowercase() == f("given").str.to_lowercase()).fill_null(
        False
    )

    def surname(name: str) -> pl.Expr:
        return pl.when(use_last).then(lc(name)).when(~full_is_first).then(u(name))

    issue = pl.coalesce(f("issue"), lc("issue"), u("issue"))
    if "name_issue" in df.columns:
        # Keep the code from an earlier run: the offending value is null in its output.
        issue = pl.coalesce(issue, pl.col("name_issue").cast(pl.Utf8))
    out = out.lazy().with_columns(
        given("first").alias("first_name"),
        given("initials").alias("initials"),
        given("fkey").alias("first_name_key"),
        given("canon").alias("first_name_canonical"),
        surname("last").alias("last_name"),
        surname("lkey").alias("last_name_key"),
        surname("prefix").alias("name_prefix"),
        issue.alias("name_issue"),
    )

    initials_display = pl.col("initials").str.to_uppercase().str.replace_all(r"(\p{L})", "$1.")
    full_display = pl.concat_str(
        [
            pl.coalesce(pl.col("first_name"), initials_display),
            _prefixed_surname(pl.col("name_prefix"), pl.col("last_name")),
        ],
        separator=" ",
        ignore_nulls=True,
    )
    out = out.with_columns(
        null_if_empty(full_display).alias("full_name")
    )
    result = out.select(OUTPUT_COLUMNS).collect()
    return df.with_columns(result.get_columns()).select(
        df.columns + [c for c in OUTPUT_COLUMNS if c not in df.columns]
    )
