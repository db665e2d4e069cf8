"""From a raw source table to canonical customer records plus quarantine rows.

Two kinds of reject, so nothing is lost silently:
- a *value* that fails its rule is nulled in the cleaned record and kept, as delivered, in the
  quarantine with the rule and a message; the record still goes on to matching;
- a *record* that cannot be used at all (no record id, nothing identifying left) is held back
  whole and quarantined with all its values.
Every raw row therefore ends up in exactly one place: the cleaned table, or the quarantine
with scope 'record'.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

from cdi_pipeline.lib.contracts import (
    CUSTOMER_RECORD_COLUMNS,
    IDENTIFIER_PREFIX,
    QUARANTINE_COLUMNS,
)
from cdi_pipeline.lib.registry import (
    CANONICAL_FIELDS,
    DEFAULT_BIRTH_DATE_EARLIEST,
    DEFAULT_IDENTIFIABLE_WHEN,
    Gates,
    Source,
)
from cdi_pipeline.lib.standardise import (
    parse_dates,
    standardise_address,
    standardise_country,
    standardise_email,
    standardise_gender,
    standardise_names,
    standardise_phone,
)
from cdi_pipeline.lib.standardise.text import id_text

DEFAULT_TRUST = 99
MAX_TEXT_LENGTH = 500

# What each rule means, for the quarantine's message column.
RULE_MESSAGES: dict[str, str] = {
    "email_invalid": "not a syntactically valid email address (expected local@domain.tld)",
    "phone_invalid": "not a valid phone number for the source's country (expected e.g. "
    "06-12345678 or +31 6 1234 5678)",
    "postcode_invalid": "not a valid Dutch postcode (expected 4 digits, not starting with 0, "
    "and 2 letters, e.g. 1234 AB)",
    "country_unknown": "not a known country name or ISO 3166 alpha-2 code",
    "gender_unknown_code": "not a known gender code (expected M/V/F/X or a word such as male)",
    "date_impossible": "not a real calendar date (e.g. 31 February)",
    "date_unparsable": "does not match the source's declared date format",
    "date_ambiguous": "the source declares no date format and the value is not ISO (YYYY-MM-DD), "
    "so day and month cannot be told apart",
    "date_out_of_range": "date of birth outside the valid range (registry keys "
    "gates.birth_date_earliest and gates.birth_date_latest; default 1600-01-01 to the run's "
    "date)",
    "name_no_letters": "a name without any letters",
    "name_too_long": "a name longer than 100 characters",
    "name_looks_like_code": "a name holding SQL or script text (injected, not a name)",
    "value_too_long": f"a value longer than {MAX_TEXT_LENGTH} characters",
    "record_id_missing": "the record has no record id, so it cannot be referenced or updated",
    "record_unidentifiable": "no identifying combination of values left (registry key "
    "gates.identifiable_when; default: an email, a phone, an identifier, a given name with a "
    "surname, or a name with a birth date, postcode, city or street)",
}

# Issue column produced by a standardiser -> canonical field(s) whose raw value it judges.
_ISSUE_FIELDS: dict[str, tuple[str, ...]] = {
    "email_issue": ("email",),
    "phone_issue": ("phone",),
    "postcode_issue": ("postcode",),
    "country_issue": ("country",),
    "gender_issue": ("gender",),
    "date_of_birth_issue": ("date_of_birth",),
    "name_issue": ("first_name", "last_name", "full_name"),
}

_TEXT_FIELDS = [f for f in CANONICAL_FIELDS if f != "date_of_birth"]


@dataclass(frozen=True)
class CleanResult:
    """Cleaned records of one source and its quarantine rows."""

    records: pl.DataFrame
    quarantine: pl.DataFrame
    raw_rows: int

    @property
    def rejected_records(self) -> int:
        """Records held back whole."""
        return self.quarantine.filter(pl.col("scope") == "record").height


def _utc_naive(dtype: pl.DataType) -> pl.Expr:
    # DuckDB hands time zones back under other names ('Etc/UTC'); naive UTC compares cleanly.
    column = pl.col("_loaded_at")
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        column = column.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    return column.cast(pl.Datetime("us"))


def _canonical_input(raw: pl.DataFrame, source: Source) -> pl.DataFrame:
    """Mapped source columns renamed to canonical names, as text (dates may stay dates)."""
    exprs: list[pl.Expr] = [
        id_text(pl.col(source.record_id)).alias("source_record_id"),
        pl.col("_row_number").alias("source_row_number"),
    ]
    for field in CANONICAL_FIELDS:
        column = source.fields.get(field)
        if column is None:
            dtype = pl.Date if field == "date_of_birth" else pl.String
            exprs.append(pl.lit(None, dtype=dtype).alias(field))
        elif field == "date_of_birth" and raw.schema[column] in (pl.Date, pl.Datetime):
            exprs.append(pl.col(column).cast(pl.Date).alias(field))
        else:
            exprs.append(id_text(pl.col(column)).alias(field))
    for name, column in source.identifiers.items():
        exprs.append(id_text(pl.col(column)).alias(f"{IDENTIFIER_PREFIX}{name}"))
    if source.attributes:
        exprs.append(
            pl.struct([id_text(pl.col(c)).alias(c) for c in source.attributes])
            .struct.json_encode()
            .alias("attributes")
        )
    else:
        exprs.append(pl.lit(None, dtype=pl.String).alias("attributes"))
    exprs += [
        pl.col("_source_file").alias("source_file"),
        pl.col("_file_hash").alias("file_hash"),
        _utc_naive(raw.schema["_loaded_at"]).alias("loaded_at"),
        pl.col("_run_id").alias("load_run_id"),
    ]
    return raw.select(exprs)


def _too_long(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Null over-long text values (they are junk, not data) and report them."""
    long_cols = [f for f in _TEXT_FIELDS if frame.schema[f] == pl.String]
    too_long = [pl.col(f).str.len_chars() > MAX_TEXT_LENGTH for f in long_cols]
    # Over-long values are rare: unpivoting only their rows saves copying every text value
    # of every row into the long format just to drop it again.
    pairs = list(zip(long_cols, too_long, strict=True))
    flags = frame.filter(pl.any_horizontal(too_long)).select(
        "source_record_id",
        "source_row_number",
        *[pl.when(long).then(pl.col(f)).alias(f) for f, long in pairs],
    )
    if flags.height:
        frame = frame.with_columns(
            pl.when(long).then(None).otherwise(pl.col(f)).alias(f) for f, long in pairs
        )
    issues = (
        flags.unpivot(
            index=["source_record_id", "source_row_number"],
            on=long_cols,
            variable_name="field",
            value_name="offending_value",
        )
        .drop_nulls("offending_value")
        .with_columns(pl.lit("value_too_long").alias("rule"))
    )
    return frame, issues


def _value_issues(before: pl.DataFrame, after: pl.DataFrame) -> pl.DataFrame:
    """One quarantine row per failed value, with the value as delivered."""
    parts = []
    for issue_column, fields in _ISSUE_FIELDS.items():
        if issue_column not in after.columns:
            continue
        # Failed values are few: select their rows before building anything per row.
        failed = after.get_column(issue_column).is_not_null()
        rows = before.filter(failed)
        if len(fields) == 1:
            offending = rows.get_column(fields[0]).cast(pl.String)
        else:
            # Names fail as a whole set of parts: keep all parts as delivered.
            offending = rows.select(pl.struct(list(fields)).struct.json_encode()).to_series()
        part = pl.DataFrame(
            {
                "source_record_id": rows.get_column("source_record_id"),
                "source_row_number": rows.get_column("source_row_number"),
                "field": pl.repeat(
                    fields[0] if len(fields) == 1 else "name", rows.height, eager=True
                ),
                "rule": after.get_column(issue_column).filter(failed),
                "offending_value": offending,
            },
            schema_overrides={"field": pl.String, "rule": pl.String},
        )
        parts.append(part)
    if not parts:
        return pl.DataFrame(
            schema={
                "source_record_id": pl.String,
                "source_row_number": pl.Int64,
                "field": pl.String,
                "rule": pl.String,
                "offending_value": pl.String,
            }
        )
    return pl.concat(parts, how="vertical_relaxed")


# The cleaned column that carries each part `gates.identifiable_when` may name.
_IDENTIFYING_COLUMNS = {"last_name": "last_name_key", "street": "street_key", "city": "city_key"}


def _present(part: str, identifier_columns: list[str]) -> pl.Expr:
    if part == "first_name":
        # "M. Peters": an initial stands for the given name.
        return pl.col("first_name_key").is_not_null() | pl.col("initials").is_not_null()
    if part == "name":
        return pl.any_horizontal(pl.col(c).is_not_null()
                                 for c in ("first_name_key", "initials", "last_name_key"))
    if part == "identifier":
        return pl.any_horizontal([pl.lit(False), *(pl.col(c).is_not_null()
                                                   for c in identifier_columns)])
    if part == "full_name":
        return pl.col("first_name_key").is_not_null() | pl.col("last_name_key").is_not_null()
    return pl.col(_IDENTIFYING_COLUMNS.get(part, part)).is_not_null()


def _identifiable(identifier_columns: list[str],
                  when: tuple[tuple[str, ...], ...] = DEFAULT_IDENTIFIABLE_WHEN) -> pl.Expr:
    """True for a record holding every part of at least one entry of `when`."""
    return pl.any_horizontal(
        pl.all_horizontal(_present(part, identifier_columns) for part in entry)
        for entry in when
    )


def standardise_records(
    frame: pl.DataFrame, default_country: str, date_format: str | None, today: date,
    earliest: date = DEFAULT_BIRTH_DATE_EARLIEST,
) -> pl.DataFrame:
    """Apply every standardiser to a frame of canonical text columns; birth dates outside
    [earliest, today] are nulled with an issue."""
    out = standardise_names(frame)
    out = standardise_email(out)
    out = standardise_gender(out)
    out = standardise_country(out)
    # A national number is read in the record's own country when it has one: a source that
    # holds customers of several countries writes each number the way its country does.
    out = standardise_phone(out.with_columns(pl.col("country").alias("phone_region")),
                            default_region=default_country).drop("phone_region")
    out = standardise_address(out, default_country=default_country)
    return parse_dates(out, "date_of_birth", date_format, today=today, earliest=earliest)


def clean_source(
    raw: pl.DataFrame, source: Source, run_id: str, today: date | None = None,
    gates: Gates | None = None,
) -> CleanResult:
    """Turn one raw source table into canonical records and quarantine rows, under the
    source's `gates` (validity ranges, identifiability; `Registry.gates_for`)."""
    today = today or date.today()
    gates = gates or Gates()
    country = source.country or "NL"
    canonical = _canonical_input(raw, source)
    canonical, long_issues = _too_long(canonical)
    standardised = standardise_records(
        canonical, country, source.date_format, gates.birth_date_latest or today,
        gates.birth_date_earliest,
    )
    value_issues = pl.concat(
        [long_issues, _value_issues(canonical, standardised)], how="diagonal_relaxed"
    )

    identifier_columns = [f"{IDENTIFIER_PREFIX}{n}" for n in source.identifiers]
    judged = standardised.with_columns(
        pl.when(pl.col("source_record_id").is_null())
        .then(pl.lit("record_id_missing"))
        .when(~_identifiable(identifier_columns, gates.identifiable_when))
        .then(pl.lit("record_unidentifiable"))
        .alias("_record_rule")
    )
    rejected = judged.filter(pl.col("_record_rule").is_not_null())
    kept = judged.filter(pl.col("_record_rule").is_null())

    mapped = [f for f in CANONICAL_FIELDS if f in source.fields]
    record_rows = canonical.join(
        rejected.select("source_row_number", "_record_rule"), on="source_row_number"
    ).select(
        "source_record_id",
        "source_row_number",
        pl.lit(None, dtype=pl.String).alias("field"),
        pl.col("_record_rule").alias("rule"),
        pl.struct([pl.col(f).cast(pl.String) for f in mapped] or [pl.lit(None).alias("none")])
        .struct.json_encode()
        .alias("offending_value"),
    )
    value_rows = value_issues.join(
        kept.select("source_row_number"), on="source_row_number", how="semi"
    )
    source_file = raw.get_column("_source_file")[0] if raw.height else ""
    quarantine = (
        pl.concat([record_rows, value_rows], how="diagonal_relaxed")
        .with_columns(
            pl.lit(source.name).alias("source"),
            pl.when(pl.col("field").is_null())
            .then(pl.lit("record"))
            .otherwise(pl.lit("value"))
            .alias("scope"),
            pl.col("rule").replace_strict(RULE_MESSAGES, default=pl.col("rule")).alias("message"),
            pl.lit(source_file).alias("source_file"),
            pl.lit(run_id).alias("run_id"),
        )
        .select(list(QUARANTINE_COLUMNS))
        .sort("source_row_number", "field", "rule", nulls_last=False)
    )

    records = kept.with_columns(
        pl.lit(source.name).alias("source"),
        pl.lit(source.trust or DEFAULT_TRUST, dtype=pl.Int32).alias("trust"),
        pl.lit(run_id).alias("cleaned_run_id"),
    ).select([*CUSTOMER_RECORD_COLUMNS, *identifier_columns])
    return CleanResult(records=records, quarantine=quarantine, raw_rows=raw.height)


def balance(
    raw_counts: dict[str, int], kept_rows: pl.DataFrame, held_rows: pl.DataFrame, *,
    kept: str, held: str,
) -> pl.DataFrame:
    """Per source: raw rows, rows kept, rows held back, and whether they add up."""
    return (
        pl.DataFrame(
            {"source": list(raw_counts), "raw": list(raw_counts.values())},
            schema={"source": pl.String, "raw": pl.Int64},
        )
        .join(kept_rows.group_by("source").agg(pl.len().alias(kept)), on="source", how="left")
        .join(held_rows.group_by("source").agg(pl.len().alias(held)), on="source", how="left")
        .with_columns(pl.col(kept, held).fill_null(0).cast(pl.Int64))
        .with_columns((pl.col("raw") == pl.col(kept) + pl.col(held)).alias("holds"))
        .sort("source")
    )


def conservation(raw_counts: dict[str, int], records: pl.DataFrame, quarantine: pl.DataFrame):
    """Per source: raw rows, cleaned rows, records quarantined whole, and whether they add up."""
    return balance(raw_counts, records, quarantine.filter(pl.col("scope") == "record"),
                   kept="cleaned", held="quarantined")
