"""Data contracts (Pandera, polars backend): what each layer promises, column by column.

The column descriptions here are the single source for DuckDB `COMMENT ON COLUMN`, the Dagster
column schema and the docs: a column is described once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pandera.polars as pa
import polars as pl

from cdi_pipeline.lib.privacy import SHAPE_NOTE, value_shape
from cdi_pipeline.lib.registry import Source

IDENTIFIER_PREFIX = "id_"


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a contract: type, meaning, nullability and value checks."""

    dtype: type[pl.DataType] | pl.DataType
    description: str
    nullable: bool = True
    checks: tuple[pa.Check, ...] = ()


_NAME_KEY = pa.Check.str_matches(r"^[a-z]+$")
_MAX_TEXT = pa.Check.str_length(max_value=500)

CUSTOMER_RECORD_COLUMNS: dict[str, ColumnSpec] = {
    "source": ColumnSpec(pl.String, "Source system the record comes from.", nullable=False),
    "source_record_id": ColumnSpec(
        pl.String, "Record id within the source (as text).", nullable=False
    ),
    "trust": ColumnSpec(
        pl.Int32, "Survivorship rank of the source, 1 = most trusted.", nullable=False
    ),
    "first_name": ColumnSpec(
        pl.String, "Given name for display (proper case).", checks=(_MAX_TEXT,)
    ),
    "name_prefix": ColumnSpec(
        pl.String, "Dutch surname prefix (tussenvoegsel), lower case, e.g. 'van der'."
    ),
    "last_name": ColumnSpec(
        pl.String, "Surname for display, without the prefix.", checks=(_MAX_TEXT,)
    ),
    "full_name": ColumnSpec(
        pl.String, "Full name for display, built or split as needed.", checks=(_MAX_TEXT,)
    ),
    "initials": ColumnSpec(
        pl.String,
        "Initials of the given names, lower case, e.g. 'jp'.",
        checks=(pa.Check.str_matches(r"^[a-z]+$"),),
    ),
    "first_name_key": ColumnSpec(
        pl.String,
        "Given name match key: lower case, accents folded, letters only.",
        checks=(_NAME_KEY,),
    ),
    "first_name_canonical": ColumnSpec(
        pl.String, "Given name after the nickname table (hans -> johannes).", checks=(_NAME_KEY,)
    ),
    "last_name_key": ColumnSpec(
        pl.String,
        "Surname match key without prefix: lower case, accents folded, letters only.",
        checks=(_NAME_KEY,),
    ),
    "date_of_birth": ColumnSpec(
        pl.Date,
        "Date of birth, parsed with the source's declared format.",
        # Each source's range is its gates' (registry); the contract only refuses nonsense.
        checks=(pa.Check.in_range(date(1000, 1, 1), date(2100, 1, 1)),),
    ),
    "gender": ColumnSpec(pl.String, "Gender: F, M or X.", checks=(pa.Check.isin(["F", "M", "X"]),)),
    "email": ColumnSpec(
        pl.String,
        "Email address, lower case, obvious domain typos corrected.",
        checks=(pa.Check.str_matches(r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),),
    ),
    "email_domain": ColumnSpec(pl.String, "Domain part of the email address."),
    "email_original": ColumnSpec(
        pl.String, "The email as delivered, kept only when its domain was corrected."
    ),
    "phone": ColumnSpec(
        pl.String,
        "Phone number in E.164 (+31612345678).",
        checks=(pa.Check.str_matches(r"^\+[1-9][0-9]{6,14}$"),),
    ),
    "phone_type": ColumnSpec(pl.String, "Line type of the phone: mobile, fixed_line or other."),
    "street": ColumnSpec(pl.String, "Street name for display.", checks=(_MAX_TEXT,)),
    "street_key": ColumnSpec(pl.String, "Street match key: folded, abbreviations expanded."),
    "house_number": ColumnSpec(
        pl.String, "House number, digits only.", checks=(pa.Check.str_matches(r"^[0-9]+$"),)
    ),
    "house_number_addition": ColumnSpec(pl.String, "House number addition, e.g. A, 2, BIS."),
    "postcode": ColumnSpec(
        pl.String, "Postcode; NL as '1234 AB', other countries upper case as delivered."
    ),
    "city": ColumnSpec(pl.String, "City for display.", checks=(_MAX_TEXT,)),
    "city_key": ColumnSpec(pl.String, "City match key: lower case, accents folded."),
    "country": ColumnSpec(
        pl.String, "ISO 3166 alpha-2 country code.", checks=(pa.Check.str_matches(r"^[A-Z]{2}$"),)
    ),
    "attributes": ColumnSpec(pl.String, "JSON object of source attributes carried along."),
    "source_file": ColumnSpec(pl.String, "File the record was loaded from.", nullable=False),
    "file_hash": ColumnSpec(pl.String, "SHA-256 of that file.", nullable=False),
    "source_row_number": ColumnSpec(pl.Int64, "Row of the record in that file.", nullable=False),
    "loaded_at": ColumnSpec(pl.Datetime("us"), "When the file was loaded (UTC).", nullable=False),
    "load_run_id": ColumnSpec(pl.String, "Dagster run that loaded the file.", nullable=False),
    "cleaned_run_id": ColumnSpec(pl.String, "Dagster run that cleaned the record.", nullable=False),
}

ACTIVITY_COLUMNS: dict[str, ColumnSpec] = {
    "source": ColumnSpec(pl.String, "Source system the event comes from.", False),
    "event_id": ColumnSpec(pl.String, "Record id of the event in its source.", False),
    "kind": ColumnSpec(
        pl.String, "What the event is: order, ticket or signup.", False,
        (pa.Check.isin(["order", "ticket", "signup"]),),
    ),
    "customer_source": ColumnSpec(
        pl.String, "Identity source of the record the event belongs to.", False
    ),
    "customer_record_id": ColumnSpec(
        pl.String, "Record id, in customer_source, of the record the event belongs to.", False
    ),
    "occurred_at": ColumnSpec(pl.Datetime("us"), "When the event happened (naive UTC).", False),
    "amount": ColumnSpec(pl.Float64, "Monetary amount of an order (null for other events)."),
    "channel": ColumnSpec(
        pl.String, "Sales or contact channel, lower case (web, app, phone, email, chat, ...)."
    ),
    "consent": ColumnSpec(
        pl.Boolean, "Marketing opt-in given with a sign-up (null when the event carries none)."
    ),
    "source_file": ColumnSpec(pl.String, "File the event was loaded from.", False),
    "source_row_number": ColumnSpec(pl.Int64, "Row of the event in that file.", False),
    "load_run_id": ColumnSpec(pl.String, "Dagster run that loaded the file.", False),
    "cleaned_run_id": ColumnSpec(pl.String, "Dagster run that cleaned the event.", False),
}

QUARANTINE_COLUMNS: dict[str, ColumnSpec] = {
    "source": ColumnSpec(pl.String, "Source system of the rejected value or record.", False),
    "source_record_id": ColumnSpec(pl.String, "Record id in the source (null if it had none)."),
    "source_row_number": ColumnSpec(pl.Int64, "Row of the record in the source file.", False),
    "scope": ColumnSpec(
        pl.String,
        "value: one value was nulled, the record went on; record: the whole identity record "
        "was held back; event: a behavioural event (order, ticket, sign-up) was held back.",
        False,
        (pa.Check.isin(["value", "record", "event"]),),
    ),
    "field": ColumnSpec(pl.String, "Canonical field the rule is about (null for record rules)."),
    "rule": ColumnSpec(pl.String, "Code of the rule that rejected it, e.g. email_invalid.", False),
    "message": ColumnSpec(pl.String, "What was wrong and what was expected.", False),
    "offending_value": ColumnSpec(pl.String, "The value(s) as delivered (JSON for records)."),
    "source_file": ColumnSpec(pl.String, "File the record was loaded from.", False),
    "run_id": ColumnSpec(pl.String, "Dagster run that quarantined it.", False),
}


def empty_frame(columns: dict[str, ColumnSpec]) -> pl.DataFrame:
    """A table of these columns with no rows (its schema, for an empty batch)."""
    return pl.DataFrame(schema={name: spec.dtype for name, spec in columns.items()})


def describe(columns: dict[str, ColumnSpec], identifiers: list[str] = ()) -> dict[str, str]:
    """Column descriptions for comments and metadata, identifier columns included."""
    described = {name: spec.description for name, spec in columns.items()}
    for name in identifiers:
        described[f"{IDENTIFIER_PREFIX}{name}"] = f"Source identifier '{name}', as text."
    return described


def _schema(columns: dict[str, ColumnSpec], **kwargs) -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {
            name: pa.Column(
                spec.dtype,
                checks=list(spec.checks),
                nullable=spec.nullable,
                description=spec.description,
            )
            for name, spec in columns.items()
        },
        **kwargs,
    )


def customer_records_schema(identifiers: list[str] = ()) -> pa.DataFrameSchema:
    """Contract of cleaned.customer_records: canonical columns, identifiers, one row per record."""
    columns = dict(CUSTOMER_RECORD_COLUMNS)
    for name in identifiers:
        columns[f"{IDENTIFIER_PREFIX}{name}"] = ColumnSpec(
            pl.String, f"Source identifier '{name}', as text."
        )
    return _schema(
        columns,
        unique=["source", "source_record_id"],
        strict=True,
        name="cleaned.customer_records",
        description="Every usable identity record of every source in the canonical shape.",
    )


def activities_schema() -> pa.DataFrameSchema:
    """Contract of cleaned.activities: one row per (source, event_id)."""
    return _schema(
        ACTIVITY_COLUMNS, unique=["source", "event_id"], strict=True, name="cleaned.activities"
    )


def quarantine_schema() -> pa.DataFrameSchema:
    """Contract of cleaned.quarantine."""
    return _schema(QUARANTINE_COLUMNS, strict=True, name="cleaned.quarantine")


def raw_schema(source: Source) -> pa.DataFrameSchema:
    """Contract of raw.<source>: the registry's promised columns plus lineage."""
    columns = {
        col: pa.Column(nullable=True, description="Column promised by the registry.")
        for col in source.mapped_columns()
    }
    columns[source.record_id] = pa.Column(
        nullable=True, description=f"Record id of {source.name}; unique where present."
    )
    columns.update(
        {
            "_source_file": pa.Column(pl.String, nullable=False),
            "_file_hash": pa.Column(pl.String, nullable=False),
            "_row_number": pa.Column(pl.Int64, nullable=False, unique=True),
            "_run_id": pa.Column(pl.String, nullable=False),
        }
    )
    return pa.DataFrameSchema(columns, strict=False, name=f"raw.{source.name}")


# Columns that name a row rather than describe a person: failure examples show them as they are.
ROW_KEYS = frozenset({"source", "source_record_id", "source_row_number", "event_id",
                      "customer_source", "customer_record_id", "scope", "field", "rule"})


def failure_summary(
    error: pa.errors.SchemaErrors, examples: int = 10, visible: frozenset[str] = ROW_KEYS
) -> tuple[dict, str]:
    """Counts of failures per column and check, and a few examples, from a lazy validation.

    The examples end up in Dagster's event log (check metadata, error messages), where an
    erasure cannot reach them: failing values are shown by their shape (`value_shape`)
    unless their column is in `visible` (record ids, say). Schema failures (a missing column,
    a wrong dtype) name columns and types, not values, and are shown as they are.
    """
    # Failure cases can be lists or structs (e.g. a missing column); this is the error path
    # over a small frame, so a per-value str() is fine.
    cases = error.failure_cases.with_columns(
        pl.col("failure_case").map_elements(str, return_dtype=pl.String)
    ).with_columns(
        # Rows without an index are schema failures (a missing column, a dtype): names.
        pl.when(pl.col("index").is_null() | pl.col("column").is_in(sorted(visible)))
        .then(pl.col("failure_case"))
        .otherwise(value_shape(pl.col("failure_case")))
        .alias("failure_case")
    )
    counts = (
        cases.group_by("column", "check")
        .agg(pl.len().alias("failures"))
        .sort("failures", descending=True)
    )
    per_check = {
        f"{row['column'] or '(table)'}: {row['check']}": row["failures"]
        for row in counts.iter_rows(named=True)
    }
    sample = "\n".join([
        f"({SHAPE_NOTE})",
        *(f"- {row['column'] or '(table)'} / {row['check']}: {row['failure_case']}"
          for row in cases.head(examples).iter_rows(named=True)),
    ])
    return per_check, sample

