"""Phone standardisation to E.164 with `phonenumbers`, evaluated once per distinct value."""

from __future__ import annotations

import phonenumbers
import polars as pl
from phonenumbers import (
    COUNTRY_CODE_TO_REGION_CODE,
    SUPPORTED_REGIONS,
    PhoneMetadata,
    PhoneNumberType,
    region_code_for_country_code,
)

from cdi_pipeline.lib.standardise.text import (
    ensure_utf8_columns,
    keep_previous_issue,
    null_if_empty,
)

_TMP = "__ph_"
# phonenumbers refuses longer input anyway; cutting early keeps junk values cheap.
MAX_PHONE_LENGTH = 64

_TYPE_NAMES = {
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE: "fixed_line",
}

# "020 123 4567 ext. 12", "x12", "toestel 12": the extension is not part of the E.164 number.
_EXTENSION_RE = r"(?i)\s*(?:ext\.?|extension|toestel|tst\.?|x|#)\s*[0-9]{1,6}\s*$"


def _parse_one(number: str, region: str) -> tuple[str | None, str | None]:
    """E.164 string and type name for one normalised number, (None, None) when invalid."""
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return None, None
    # number_type() is UNKNOWN exactly when is_valid_number() is False; calling only the
    # former halves the per-number cost.
    kind = phonenumbers.number_type(parsed)
    if kind == PhoneNumberType.UNKNOWN:
        return None, None
    nsn = phonenumbers.national_significant_number(parsed)
    return f"+{parsed.country_code}{nsn}", _TYPE_NAMES.get(kind, "other")


def _lookup_slow(keys: pl.DataFrame) -> pl.DataFrame:
    """Run phonenumbers itself over distinct (number, region) pairs."""
    results = [
        _parse_one(number, region)
        for number, region in zip(keys[_TMP + "num"], keys[_TMP + "region"], strict=True)
    ]
    return keys.select(_TMP + "num", _TMP + "region").with_columns(
        pl.Series(_TMP + "e164", [r[0] for r in results], dtype=pl.Utf8),
        pl.Series(_TMP + "type", [r[1] for r in results], dtype=pl.Utf8),
    )


# --- vectorised re-implementation of phonenumbers.parse + number_type -------------------------
# Calling phonenumbers once per distinct value is a Python call per value. The functions
# below evaluate the same metadata regexes with polars, group by group, for the common
# shapes; anything outside those shapes is handed to phonenumbers itself (_lookup_slow).
# test_standardise_contact.py checks both paths agree on many generated numbers.

_OTHER_DESCS = [
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
]
_NONE = pl.lit(None, dtype=pl.Utf8)


def _full(pattern: str) -> str:
    return f"^(?:{pattern})$"


def _matches_desc(nsn: pl.Expr, desc: object) -> pl.Expr:
    """phonenumbers._is_number_matching_desc: possible length and full pattern match."""
    pattern = getattr(desc, "national_number_pattern", None)
    if not pattern:
        return pl.lit(False)
    cond = nsn.str.contains(_full(pattern))
    lengths = list(desc.possible_length)  # type: ignore[attr-defined]
    if lengths:
        cond = nsn.str.len_chars().is_in(lengths) & cond
    return cond


def _type_expr(nsn: pl.Expr, md: PhoneMetadata) -> pl.Expr:
    """phonenumbers._number_type_helper mapped to mobile / fixed_line / other / null."""
    chain = pl.when(~_matches_desc(nsn, md.general_desc)).then(_NONE)
    for name in _OTHER_DESCS:
        chain = chain.when(_matches_desc(nsn, getattr(md, name))).then(pl.lit("other"))
    fixed, mobile = _matches_desc(nsn, md.fixed_line), _matches_desc(nsn, md.mobile)
    if md.same_mobile_and_fixed_line_pattern:
        return chain.when(fixed).then(pl.lit("other")).otherwise(_NONE)
    return (
        chain.when(fixed & mobile)
        .then(pl.lit("other"))
        .when(fixed)
        .then(pl.lit("fixed_line"))
        .when(mobile)
        .then(pl.lit("mobile"))
        .otherwise(_NONE)
    )


def _type_for_country(nsn: pl.Expr, cc: int) -> pl.Expr:
    """number_type() including region selection for shared calling codes (+1, +44, +7...)."""
    regions = COUNTRY_CODE_TO_REGION_CODE.get(cc, ())
    if len(regions) == 1:
        md = PhoneMetadata.metadata_for_region_or_calling_code(cc, regions[0])
        return _type_expr(nsn, md) if md is not None else _NONE
    chain = None
    for region in regions:
        md = PhoneMetadata.metadata_for_region(region, None)
        if md is None:
            continue
        kind = _type_expr(nsn, md)
        if md.leading_digits is not None:
            selected = nsn.str.contains(f"^(?:{md.leading_digits})")
        else:
            selected = kind.is_not_null()
        chain = pl.when(selected).then(kind) if chain is None else chain.when(selected).then(kind)
    return _NONE if chain is None else chain.otherwise(_NONE)


def _strip_national_prefix(nr: pl.Expr, md: PhoneMetadata) -> pl.Expr | None:
    """parse()'s national-prefix stripping; None when the region needs a transform rule."""
    npfp = md.national_prefix_for_parsing
    if not npfp:
        return nr
    if md.national_prefix_transform_rule:
        return None
    general = md.general_desc
    lengths = list(general.possible_length)
    if not lengths:
        return None
    prefix = nr.str.extract(f"^((?:{npfp}))", 1)
    stripped = nr.str.slice(prefix.str.len_chars())
    viable_original = nr.str.contains(_full(general.national_number_pattern))
    viable_stripped = stripped.str.contains(_full(general.national_number_pattern))
    potential = (
        pl.when(prefix.is_not_null() & ~(viable_original & ~viable_stripped))
        .then(stripped)
        .otherwise(nr)
    )
    length = potential.str.len_chars()
    # _test_number_length() must not say TOO_SHORT, IS_POSSIBLE_LOCAL_ONLY or INVALID_LENGTH.
    accept = ~length.is_in(list(general.possible_length_local_only)) & (
        length.is_in(lengths) | (length > max(lengths))
    )
    return pl.when(accept).then(potential).otherwise(nr)


_COUNTRY_CODES = [str(cc) for cc in COUNTRY_CODE_TO_REGION_CODE]


def _lookup_fast(keys: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Vectorised parse of distinct (num, region); returns (results, rows needing phonenumbers)."""
    num, region = _TMP + "num", _TMP + "region"
    digits = pl.col(num).str.strip_prefix("+")
    done: list[pl.DataFrame] = []
    slow: list[pl.DataFrame] = []
    international = [
        keys.filter(pl.col(num).str.starts_with("+")).with_columns(
            digits.alias("d"), pl.lit(False).alias("idd")
        )
    ]
    staged: list[pl.DataFrame] = []

    def invalid(frame: pl.DataFrame) -> None:
        done.append(
            frame.select(num, region).with_columns(
                _NONE.alias(_TMP + "e164"), _NONE.alias(_TMP + "type")
            )
        )

    national = keys.filter(~pl.col(num).str.starts_with("+"))
    for (code,), group in national.partition_by(region, as_dict=True).items():
        md = PhoneMetadata.metadata_for_region(code, None) if code in SUPPORTED_REGIONS else None
        if md is None:
            invalid(group)
            continue
        idd = pl.col(num).str.extract(f"^((?:{md.international_prefix or 'NonMatch'}))", 1)
        rest = pl.col(num).str.slice(idd.str.len_chars())
        # Lazily, so the IDD regex that four of these columns refer to runs once.
        group = group.lazy().with_columns(
            (idd.is_not_null() & ~rest.str.starts_with("0")).alias("has_idd"),
            (idd.str.len_chars() == 0).fill_null(False).alias("empty_idd"),
            rest.alias("d"),
            pl.col(num).str.starts_with(str(md.country_code)).alias("starts_cc"),
        ).collect()
        slow.append(group.filter(pl.col("empty_idd")).select(num, region))
        group = group.filter(~pl.col("empty_idd"))
        international.append(
            group.filter(pl.col("has_idd")).select(num, region, "d", pl.lit(True).alias("idd"))
        )
        local = group.filter(~pl.col("has_idd"))
        # Without IDD or "+", a leading country code triggers a heuristic: leave it to
        # phonenumbers.
        slow.append(local.filter(pl.col("starts_cc")).select(num, region))
        local = local.filter(~pl.col("starts_cc"))
        staged.append(
            local.select(
                num,
                region,
                pl.lit(md.country_code).cast(pl.Int32).alias("cc"),
                pl.col(num).alias("nr"),
                pl.lit("R" + code).alias("mkey"),
            )
        )

    intl = pl.concat(international, how="diagonal_relaxed").select(num, region, "d", "idd")
    short = pl.col("d").str.len_chars() <= 2
    invalid(intl.filter(short))
    intl = intl.filter(~short)
    d = pl.col("d")
    cc = (
        pl.when(d.str.starts_with("0"))
        .then(_NONE)
        .when(d.str.slice(0, 1).is_in(_COUNTRY_CODES))
        .then(d.str.slice(0, 1))
        .when(d.str.slice(0, 2).is_in(_COUNTRY_CODES))
        .then(d.str.slice(0, 2))
        .when(d.str.slice(0, 3).is_in(_COUNTRY_CODES))
        .then(d.str.slice(0, 3))
    )
    intl = intl.with_columns(cc.alias("ccs"))
    no_cc = pl.col("ccs").is_null()
    # "+0612..." is retried by phonenumbers as a national number; an IDD one is just invalid.
    slow.append(intl.filter(no_cc & ~pl.col("idd")).select(num, region))
    invalid(intl.filter(no_cc & pl.col("idd")))
    staged.append(
        intl.filter(~no_cc).select(
            num,
            region,
            pl.col("ccs").cast(pl.Int32).alias("cc"),
            d.str.slice(pl.col("ccs").str.len_chars()).alias("nr"),
            (pl.lit("C") + pl.col("ccs")).alias("mkey"),
        )
    )

    parsed: list[pl.DataFrame] = []
    nr = pl.col("nr")
    for (mkey,), group in pl.concat(staged).partition_by("mkey", as_dict=True).items():
        if mkey.startswith("R"):
            md = PhoneMetadata.metadata_for_region(mkey[1:], None)
        else:
            code = int(mkey[1:])
            md = PhoneMetadata.metadata_for_region_or_calling_code(
                code, region_code_for_country_code(code)
            )
        too_short = nr.str.len_chars() < 2
        invalid(group.filter(too_short))
        group = group.filter(~too_short)
        nsn = _strip_national_prefix(nr, md) if md is not None else None
        if nsn is None:
            slow.append(group.select(num, region))
            continue
        # Lazily, so the prefix regexes that `nsn` refers to several times run once.
        group = group.lazy().with_columns(nsn.alias("nsn")).collect()
        bad_length = (pl.col("nsn").str.len_chars() < 2) | (pl.col("nsn").str.len_chars() > 17)
        invalid(group.filter(bad_length))
        parsed.append(group.filter(~bad_length))

    if parsed:
        for (code,), group in pl.concat(parsed).partition_by("cc", as_dict=True).items():
            kind = _type_for_country(pl.col("nsn"), int(code))
            # Lazily: the type chain tests the fixed-line and mobile patterns more than once.
            group = group.lazy().with_columns(kind.alias(_TMP + "type")).collect()
            done.append(
                group.select(
                    num,
                    region,
                    pl.when(pl.col(_TMP + "type").is_not_null())
                    .then(pl.concat_str([pl.lit("+"), pl.col("cc").cast(pl.Utf8), pl.col("nsn")]))
                    .alias(_TMP + "e164"),
                    pl.col(_TMP + "type"),
                )
            )
    empty = keys.clear().select(num, region)
    return pl.concat(
        [empty.with_columns(_NONE.alias(_TMP + "e164"), _NONE.alias(_TMP + "type")), *done]
    ), pl.concat([empty, *slow])


# Below this many distinct values the per-group overhead of the vectorised path is not worth it.
VECTORISE_MIN_KEYS = 200


def _lookup(keys: pl.DataFrame) -> pl.DataFrame:
    """E.164 and type for distinct (num, region) pairs: vectorised, phonenumbers as fallback."""
    if keys.height < VECTORISE_MIN_KEYS:
        return _lookup_slow(keys)
    fast, slow = _lookup_fast(keys)
    return pl.concat([fast, _lookup_slow(slow)])


def _keys(df: pl.DataFrame, default_region: str) -> pl.DataFrame:
    """Per row: cleaned raw text, normalised lookup number ("+316..." / "06...") and region."""
    region = pl.lit(default_region.strip().upper())
    if "phone_region" in df.columns:
        given = pl.col("phone_region").cast(pl.Utf8).str.strip_chars().str.to_uppercase()
        region = pl.coalesce(null_if_empty(given), region)
    raw = pl.col("phone").str.replace_all(r"[\p{Cc}\p{Cf}]", "").str.strip_chars()
    # Formatting characters carry no information for parsing; dropping them first merges
    # "06-12345678" and "06 1234 5678" into one distinct value to look up.
    # ASCII digits only: both lookup paths then see exactly the same input.
    digits = pl.col(_TMP + "raw").str.replace(_EXTENSION_RE, "").str.replace_all(r"[^0-9+]", "")
    normalised = pl.when(
        (pl.col(_TMP + "raw").str.len_chars() <= MAX_PHONE_LENGTH)
        & digits.str.contains(r"^\+?[0-9]+$")
    ).then(digits)
    return (
        df.lazy()
        .select(
            null_if_empty(raw).alias(_TMP + "raw"),
            region.alias(_TMP + "region"),
        )
        .with_columns(normalised.alias(_TMP + "num"))
        .with_columns(
            # The region is irrelevant for international numbers; dropping it dedupes better.
            pl.when(pl.col(_TMP + "num").str.starts_with("+"))
            .then(pl.lit("ZZ"))
            .otherwise(pl.col(_TMP + "region"))
            .alias(_TMP + "region")
        )
        .collect()
    )


def standardise_phone(df: pl.DataFrame, default_region: str = "NL") -> pl.DataFrame:
    """Parse `phone` (per-row `phone_region` or default_region) into E.164, type and issue."""
    df = ensure_utf8_columns(df, ["phone"])
    keyed = _keys(df, default_region)
    unique = keyed.select(_TMP + "num", _TMP + "region").drop_nulls().unique()
    joined = keyed.join(
        _lookup(unique),
        on=[_TMP + "num", _TMP + "region"],
        how="left",
        nulls_equal=True,
        maintain_order="left",
    )
    present = pl.col(_TMP + "raw").is_not_null()
    new_issue = pl.when(present & pl.col(_TMP + "e164").is_null()).then(pl.lit("phone_invalid"))
    issue = keep_previous_issue(df, "phone_issue", new_issue, ~present)
    out = df.with_columns(
        joined.select(_TMP + "raw", _TMP + "e164", _TMP + "type").get_columns()
    ).with_columns(
        pl.col(_TMP + "e164").alias("phone"),
        pl.col(_TMP + "type").alias("phone_type"),
        issue.alias("phone_issue"),
    )
    return out.drop([c for c in out.columns if c.startswith(_TMP)])


# Dutch geographic area codes of two digits (after the 0); all others have three.
_NL_TWO_DIGIT_AREAS = (
    "10", "13", "15", "20", "23", "24", "26", "30", "33", "35", "36", "38", "40", "43", "45",
    "46", "50", "53", "55", "58", "70", "71", "72", "73", "74", "75", "76", "77", "78", "79",
)
_ONE_DIGIT_CODES = tuple(str(c) for c in COUNTRY_CODE_TO_REGION_CODE if c < 10)
_TWO_DIGIT_CODES = tuple(str(c) for c in COUNTRY_CODE_TO_REGION_CODE if 10 <= c < 100)


def phone_display(e164: pl.Expr) -> pl.Expr:
    """An E.164 number grouped for people: '+31 6 1234 5678', '+31 20 123 4567', '+44 7911...'.

    Dutch numbers get their national grouping (mobile, two- and three-digit area codes);
    other countries get the country code split off, the rest as one block.
    """
    nl = e164.str.strip_prefix("+31")
    mobile = nl.str.starts_with("6") & (nl.str.len_chars() == 9)
    two = nl.str.slice(0, 2).is_in(_NL_TWO_DIGIT_AREAS) & (nl.str.len_chars() == 9)
    digits = e164.str.strip_prefix("+")
    code_length = (
        pl.when(digits.str.slice(0, 1).is_in(_ONE_DIGIT_CODES))
        .then(1)
        .when(digits.str.slice(0, 2).is_in(_TWO_DIGIT_CODES))
        .then(2)
        .otherwise(3)
    )
    generic = pl.concat_str(
        pl.lit("+"), digits.str.slice(0, code_length), pl.lit(" "), digits.str.slice(code_length)
    )
    dutch = e164.str.starts_with("+31") & (nl.str.len_chars() == 9)
    return (
        pl.when(e164.is_null())
        .then(None)
        .when(dutch & mobile)
        .then(pl.format("+31 6 {} {}", nl.str.slice(1, 4), nl.str.slice(5, 4)))
        .when(dutch & two)
        .then(pl.format("+31 {} {} {}", nl.str.slice(0, 2), nl.str.slice(2, 3), nl.str.slice(5)))
        .when(dutch)
        .then(pl.format("+31 {} {} {}", nl.str.slice(0, 3), nl.str.slice(3, 3), nl.str.slice(6)))
        .otherwise(generic)
    )
