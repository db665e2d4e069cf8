"""The analyst file: what analysts may see, in a separate DuckDB file swapped in atomically.

Analysts never open the pipeline's own file (a read-only connection there would block every
writer, and DuckDB has no grants to hide columns). Each run builds a fresh file next to the
published one (write), audits it (audit) and only then `os.replace`s it (publish): a
connection already open keeps reading the old file to the end, a new connection sees the new
one, nobody sees a half-written state, and a file that fails its audit is never seen at all.

Direct identifiers are masked for reading (`j***@gmail.com`) or replaced by a keyed hash for
counting and joining; names, street addresses and exact birth dates are left out; postcodes
become four-digit areas and birth dates birth years. The file is written in DuckDB storage
version 1.4 so analyst tools embedding DuckDB 1.x can open it.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import duckdb

from cdi_pipeline.lib.leaks import Leak, describe, scan_database
from cdi_pipeline.lib.privacy import keyed_hash_sql, mask_email_sql, mask_phone_sql
from cdi_pipeline.lib.storage import quote_identifier, quote_literal

ANALYTICS_FILE = "analytics.duckdb"
# Readable by DuckDB 1.4 and later: analyst tools that embed DuckDB 1.x cannot open a file
# in 2.0's default storage version.
STORAGE_VERSION = "v1.4.0"


@dataclass(frozen=True)
class Column:
    """A published column: its SQL over the source table and what it means."""

    name: str
    sql: str
    description: str


@dataclass(frozen=True)
class PublishedTable:
    """A table of the analyst file built from one warehouse table."""

    name: str
    source: str
    description: str
    columns: tuple[Column, ...]


def _same(name: str, description: str) -> Column:
    return Column(name, quote_identifier(name), description)


def _published_tables(
    key: str, warehouse_columns: dict[str, dict[str, str]]
) -> list[PublishedTable]:
    """The analyst file's tables. Descriptions of copied columns come from the warehouse."""

    def copied(table: str, *skip: str) -> tuple[Column, ...]:
        return tuple(
            _same(name, text) for name, text in warehouse_columns[table].items() if name not in skip
        )

    person = (
        Column("email_masked", mask_email_sql("email"),
               "Email with all but its first character hidden, e.g. j***@gmail.com."),
        Column("email_key", keyed_hash_sql("email", key),
               "Keyed hash of the email: equal emails, equal keys; not reversible."),
        Column("phone_masked", mask_phone_sql("phone"),
               "Phone with all but the country code and last two digits hidden."),
        Column("phone_key", keyed_hash_sql("phone", key),
               "Keyed hash of the phone number (E.164)."),
        Column("birth_year", "year(date_of_birth)", "Year of birth (the exact date is not "
               "published)."),
    )
    c360 = warehouse_columns["golden.customer_360"]
    hidden_360 = {
        "first_name", "first_name_key", "name_prefix", "last_name", "last_name_key",
        "last_name_display", "email", "phone", "phone_display", "street", "house_number",
        "house_number_addition", "postcode", "postcode_key", "city", "date_of_birth",
        "consent_record_id",
    }
    customers = tuple(
        _same(name, text) for name, text in c360.items() if name not in hidden_360
    ) + person
    snapshot = (
        _same("quarter", "Quarter of the snapshot."),
        _same("model_version", "Matching model version of the snapshot."),
        _same("customer_id", "Customer id."),
        Column("postcode_area", "CASE WHEN country = 'NL' THEN left(postcode_key, 4) END",
               "Four-digit postcode area (NL)."),
        _same("country", "ISO 3166 alpha-2 country code."),
        _same("gender", "Gender: F, M or X."),
        Column("birth_year", "year(date_of_birth)", "Year of birth."),
        Column("email_key", keyed_hash_sql("email", key), "Keyed hash of the email."),
        Column("phone_key", keyed_hash_sql("phone", key), "Keyed hash of the phone."),
        _same("records", "Source records of the customer at the time."),
        _same("sources", "Sources holding a record of the customer at the time."),
    )
    return [
        PublishedTable("customers", "golden.customer_360",
                       "One row per customer: features, segments, enrichment and masked or "
                       "hashed contact details. Start here.", customers),
        PublishedTable("customer_segments", "segments.customer_segments",
                       "RFM, lifecycle, value tier and contactability per customer.",
                       copied("segments.customer_segments")),
        PublishedTable("segment_summary", "segments.segment_summary",
                       "Size, reach and revenue of every segment.",
                       copied("segments.segment_summary")),
        PublishedTable("segment_history", "enrichment.customer_segment_snapshots",
                       "Segments of every customer at each quarter (reproduce a past "
                       "selection).", copied("enrichment.customer_segment_snapshots",
                                             "snapshot_run_id")),
        PublishedTable("customer_history", "enrichment.customer_snapshots",
                       "Coarse customer facts at each quarter, to compare quarters.", snapshot),
        PublishedTable("customer_id_map", "matching.customer_id_map",
                       "Every customer id ever issued and the id it resolves to now.",
                       copied("matching.customer_id_map")),
    ]


def _warehouse_columns(con: duckdb.DuckDBPyConnection, tables: list[str]) -> dict:
    out: dict[str, dict[str, str]] = {}
    for qualified in tables:
        schema, table = qualified.split(".")
        rows = con.execute(
            "SELECT column_name, coalesce(comment, '') FROM duckdb_columns() "
            "WHERE database_name = current_database() AND schema_name = ? AND table_name = ? "
            "ORDER BY column_index",
            [schema, table],
        ).fetchall()
        if not rows:
            raise RuntimeError(f"{qualified} does not exist: materialise it before publishing")
        out[qualified] = dict(rows)
    return out


SOURCE_TABLES = [
    "golden.customer_360", "segments.customer_segments", "segments.segment_summary",
    "enrichment.customer_segment_snapshots", "enrichment.customer_snapshots",
    "matching.customer_id_map",
]


@dataclass(frozen=True)
class Audit:
    """What the audit of a staged analyst file found: direct identifiers anywhere in its text
    (values, names, comments), and tables or columns an analyst would find undescribed."""

    leaks: tuple[Leak, ...]
    uncommented: int
    text_columns: int

    @property
    def passed(self) -> bool:
        """Nothing found: the file may be published."""
        return not self.leaks and not self.uncommented

    def describe(self) -> str:
        """The findings by place and kind, never the values."""
        if self.passed:
            return f"no direct identifier in {self.text_columns} text columns; all described"
        parts = [f"direct identifiers: {describe(self.leaks)}"] if self.leaks else []
        if self.uncommented:
            parts.append(f"{self.uncommented} table(s) or column(s) without a description")
        return "; ".join(parts)


class PublishRefused(RuntimeError):
    """The staged analyst file failed its audit; the published one was left as it was."""

    def __init__(self, target: Path, audit: Audit) -> None:
        super().__init__(f"{target.name} not published, the previous version stays: "
                         f"{audit.describe()}")
        self.audit = audit


@dataclass(frozen=True)
class Published:
    """A published analyst file: rows per table, and the audit it passed."""

    counts: dict[str, int]
    audit: Audit


def audit_analytics_file(path: Path) -> Audit:
    """Audit an analyst file: every text value, name and comment scanned for direct
    identifiers, and every table and column described."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        leaks = scan_database(con)
        uncommented, text_columns = con.sql(
            "SELECT (SELECT count(*) FROM duckdb_columns() WHERE database_name = "
            "current_database() AND coalesce(comment, '') = '') + (SELECT count(*) FROM "
            "duckdb_tables() WHERE database_name = current_database() AND "
            "coalesce(comment, '') = ''), (SELECT count(*) FROM duckdb_columns() WHERE "
            "database_name = current_database() AND data_type = 'VARCHAR')"
        ).fetchall()[0]
    finally:
        con.close()
    return Audit(tuple(leaks), uncommented, text_columns)


def build_analytics_file(
    con: duckdb.DuckDBPyConnection, target: Path, key: str, run_id: str
) -> Published:
    """Write the analyst file from the warehouse connection `con` under a staging name,
    audit it, and swap it in only if the audit passed.

    Raises `PublishRefused` (the staged file deleted, `target` untouched) otherwise.
    """
    tables = _published_tables(key, _warehouse_columns(con, SOURCE_TABLES))
    staging = target.with_name(f".{target.name}.{run_id}.tmp")
    for leftover in target.parent.glob(f".{target.name}.*.tmp*"):
        leftover.unlink()
    counts = _write_staged(con, tables, staging)
    audit = audit_analytics_file(staging)
    if not audit.passed:
        staging.unlink()
        raise PublishRefused(target, audit)
    with open(staging, "rb") as handle:
        os.fsync(handle.fileno())
    # Atomic on POSIX: open connections keep the old inode, new ones get the new file.
    os.replace(staging, target)
    return Published(counts, audit)


def _write_staged(
    con: duckdb.DuckDBPyConnection, tables: list[PublishedTable], staging: Path
) -> dict[str, int]:
    """Write the analyst file's tables to `staging`; returns rows per table."""
    alias = "analytics_staging"
    con.execute(
        f"ATTACH {quote_literal(str(staging))} AS {alias} (STORAGE_VERSION '{STORAGE_VERSION}')"
    )
    counts: dict[str, int] = {}
    try:
        for table in tables:
            select = ", ".join(f"{c.sql} AS {quote_identifier(c.name)}" for c in table.columns)
            qualified = f"{alias}.main.{quote_identifier(table.name)}"
            schema, name = table.source.split(".")
            con.execute(
                f"CREATE TABLE {qualified} AS SELECT {select} "
                f"FROM {quote_identifier(schema)}.{quote_identifier(name)}"
            )
            con.execute(f"COMMENT ON TABLE {qualified} IS {quote_literal(table.description)}")
            for column in table.columns:
                con.execute(
                    f"COMMENT ON COLUMN {qualified}.{quote_identifier(column.name)} "
                    f"IS {quote_literal(column.description or column.name)}"
                )
            counts[table.name] = con.sql(f"SELECT count(*) FROM {qualified}").fetchall()[0][0]
        con.execute(f"DETACH {alias}")
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute(f"DETACH {alias}")
        staging.unlink(missing_ok=True)
        raise
    return counts
