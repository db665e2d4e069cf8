"""Erasure (the right to be forgotten) and the suppression list that keeps it done.

A request names a person by email, phone or customer id. On the next run the pipeline finds
every record matched to that person (through the identity map, so a record with an old email
goes too), deletes those rows from every table of the warehouse and the analyst file,
removes files that may hold their values (saved models with term-frequency tables, reports,
exports), rewrites the DuckDB files so the bytes are gone, and records counts (never values)
in `governance.erasure_receipts`.

The suppression list holds keyed hashes of the person's record keys, emails and phones. Raw
loading drops any incoming row that matches, so a reload of the same files does not bring the
person back. Suppressed rows are counted, not quarantined: the quarantine keeps values.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl

from cdi_pipeline.lib.contracts import ColumnSpec, describe, empty_frame
from cdi_pipeline.lib.governance.files import read_governed_csv
from cdi_pipeline.lib.privacy import keyed_hash_sql
from cdi_pipeline.lib.published.analytics import STORAGE_VERSION
from cdi_pipeline.lib.registry import Registry, Source
from cdi_pipeline.lib.standardise import standardise_email, standardise_phone
from cdi_pipeline.lib.standardise.text import id_text
from cdi_pipeline.lib.storage import (
    PartitionWrite,
    quote_identifier,
    quote_literal,
    read_table,
    registered,
    table_exists,
    transaction,
    writer_lock,
)

REQUEST_COLUMNS = ("request_id", "identifier_type", "value", "requested_on")
IDENTIFIER_TYPES = ("email", "phone", "customer_id")

SUPPRESSION_COLUMNS: dict[str, ColumnSpec] = {
    "request_id": ColumnSpec(pl.String, "Erasure request that put the entry on the list."),
    "kind": ColumnSpec(pl.String, "What was hashed: record (source|record id), email or phone."),
    "value_hash": ColumnSpec(
        pl.String, "Keyed hash of the value (the value itself is never stored)."),
    "key_fingerprint": ColumnSpec(pl.String, "Fingerprint of the key the hash was made with."),
    "added_at": ColumnSpec(pl.Datetime("us"), "When the entry was added (UTC)."),
}

RECEIPT_COLUMNS: dict[str, ColumnSpec] = {
    "request_id": ColumnSpec(pl.String, "Erasure request the receipt belongs to."),
    "requested_on": ColumnSpec(pl.Date, "Date the request was made."),
    "identifier_type": ColumnSpec(
        pl.String, "How the request named the person: email, phone or customer_id."),
    "item": ColumnSpec(
        pl.String, "Table (schema.table, or file:name) from which data was removed."),
    "rows_removed": ColumnSpec(pl.Int64, "Rows (or files) removed from it."),
    "customers_erased": ColumnSpec(pl.Int64, "Customer ids the request resolved to."),
    "records_erased": ColumnSpec(pl.Int64, "Source records the request resolved to."),
    "processed_at": ColumnSpec(pl.Datetime("us"), "When the erasure ran (UTC)."),
    "run_id": ColumnSpec(pl.String, "Dagster run that carried it out."),
}


class ErasureRequestError(ValueError):
    """The erasure request file is not usable; the message names the line."""


@dataclass(frozen=True)
class ErasureTargets:
    """Everything to remove for a set of requests."""

    records: pl.DataFrame  # source, source_record_id
    events: pl.DataFrame  # source, event_id
    customer_ids: pl.DataFrame  # customer_id (every id ever issued to them)
    emails: pl.Series
    phones: pl.Series
    per_request: pl.DataFrame  # request_id, customers, records


def read_requests(path: Path) -> pl.DataFrame:
    """The requests, validated; an absent file means no requests."""
    schema = {c: pl.String for c in REQUEST_COLUMNS}
    frame = read_governed_csv(path, tuple(REQUEST_COLUMNS), (), ErasureRequestError)
    if frame is None:
        return pl.DataFrame(schema=schema)
    problems = frame.with_columns(
        pl.when(pl.col("request_id").is_null() | (pl.col("request_id") == ""))
        .then(pl.lit("request_id is empty"))
        .when(~pl.col("identifier_type").is_in(IDENTIFIER_TYPES))
        .then(pl.lit(f"identifier_type must be one of {', '.join(IDENTIFIER_TYPES)}"))
        .when(pl.col("value").is_null() | (pl.col("value") == ""))
        .then(pl.lit("value is empty"))
        .when(pl.col("requested_on").str.to_date("%Y-%m-%d", strict=False).is_null())
        .then(pl.lit("requested_on must be a date YYYY-MM-DD"))
        .when(pl.col("request_id").is_duplicated())
        .then(pl.lit("request_id is used on more than one line"))
        .alias("problem")
    ).filter(pl.col("problem").is_not_null())
    if not problems.is_empty():
        first = problems.row(0, named=True)
        raise ErasureRequestError(
            f"{path}, line {first['line']}: {first['problem']} "
            f"({problems.height} bad line(s) in all; nothing was erased)"
        )
    return frame.drop("line")


def normalised_identifiers(requests: pl.DataFrame) -> pl.DataFrame:
    """request_id, identifier_type and the value in the warehouse's canonical form."""
    emails = standardise_email(
        requests.filter(pl.col("identifier_type") == "email").select(
            "request_id", "identifier_type", pl.col("value").alias("email")
        )
    ).select("request_id", "identifier_type", pl.col("email").alias("value"))
    phones = standardise_phone(
        requests.filter(pl.col("identifier_type") == "phone").select(
            "request_id", "identifier_type", pl.col("value").alias("phone")
        ),
        default_region="NL",
    ).select("request_id", "identifier_type", pl.col("phone").alias("value"))
    ids = requests.filter(pl.col("identifier_type") == "customer_id").select(
        "request_id", "identifier_type", pl.col("value").str.to_uppercase()
    )
    return pl.concat([emails, phones, ids]).drop_nulls("value")


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {
        f"{s}.{t}"
        for s, t in con.sql(
            "SELECT schema_name, table_name FROM duckdb_tables() "
            "WHERE database_name = current_database()"
        ).fetchall()
    }


def resolve_targets(con: duckdb.DuckDBPyConnection, requests: pl.DataFrame) -> ErasureTargets:
    """Every record, event and customer id the requests reach in the current warehouse."""
    wanted = normalised_identifiers(requests)
    tables = _tables(con)
    # With the request column even when empty: on a first run (no warehouse tables yet) the
    # per-request counts below group these by request.
    records = pl.DataFrame(schema={"source": pl.String, "source_record_id": pl.String,
                                   "request_id": pl.String})
    cleaned = pl.DataFrame(schema={"email": pl.String, "phone": pl.String})
    customers = pl.DataFrame(schema={"request_id": pl.String, "customer_id": pl.String})
    if {"cleaned.customer_records", "matching.customer_xref"} <= tables:
        with registered(con, "__erase_wanted", wanted):
            direct = con.sql(
                """
                SELECT w.request_id, x.customer_id
                FROM __erase_wanted w
                JOIN cleaned.customer_records r
                  ON (w.identifier_type = 'email' AND r.email = w.value)
                  OR (w.identifier_type = 'phone' AND r.phone = w.value)
                JOIN matching.customer_xref x USING (source, source_record_id)
                """
            ).pl()
            by_id = pl.DataFrame(schema={"request_id": pl.String, "customer_id": pl.String})
            if "matching.customer_id_map" in tables:
                by_id = con.sql(
                    """
                    SELECT w.request_id, m.current_customer_id AS customer_id
                    FROM __erase_wanted w JOIN matching.customer_id_map m
                      ON w.identifier_type = 'customer_id' AND m.customer_id = w.value
                    WHERE m.current_customer_id IS NOT NULL
                    """
                ).pl()
        customers = pl.concat([direct, by_id]).unique()
        with registered(con, "__erase_customers", customers):
            records = con.sql(
                "SELECT DISTINCT x.source, x.source_record_id, c.request_id "
                "FROM matching.customer_xref x JOIN __erase_customers c USING (customer_id)"
            ).pl()
        with registered(con, "__erase_records", records):
            cleaned = con.sql(
                "SELECT r.email, r.phone FROM cleaned.customer_records r "
                "JOIN __erase_records e USING (source, source_record_id)"
            ).pl()
    events = pl.DataFrame(schema={"source": pl.String, "event_id": pl.String})
    if "cleaned.activities" in tables and records.height:
        with registered(con, "__erase_records", records):
            events = con.sql(
                "SELECT DISTINCT a.source, a.event_id FROM cleaned.activities a "
                "JOIN __erase_records e ON a.customer_source = e.source "
                "AND a.customer_record_id = e.source_record_id"
            ).pl()
    all_ids = customers.select("customer_id")
    if "matching.customer_id_map" in tables and customers.height:
        # Old ids that resolve to an erased customer go too: an old id must not lead back.
        with registered(con, "__erase_customers", customers):
            all_ids = con.sql(
                "SELECT DISTINCT m.customer_id FROM matching.customer_id_map m "
                "JOIN __erase_customers c ON m.current_customer_id = c.customer_id "
                "UNION SELECT customer_id FROM __erase_customers"
            ).pl()
    per_request = (
        requests.select("request_id")
        .join(customers.group_by("request_id").agg(pl.len().alias("customers")),
              on="request_id", how="left")
        .join(records.group_by("request_id").agg(pl.len().alias("records")),
              on="request_id", how="left")
        .with_columns(pl.col("customers", "records").fill_null(0).cast(pl.Int64))
    )
    requested = wanted.filter(pl.col("identifier_type") != "customer_id")
    def identifiers(kind: str) -> pl.Series:
        found = cleaned.get_column(kind) if cleaned.height else pl.Series([], dtype=pl.String)
        asked = requested.filter(pl.col("identifier_type") == kind).get_column("value")
        return pl.concat([found.cast(pl.String), asked]).drop_nulls().unique().alias("value")

    emails, phones = identifiers("email"), identifiers("phone")
    return ErasureTargets(
        records=records.select("source", "source_record_id").unique(),
        events=events,
        customer_ids=all_ids,
        emails=emails,
        phones=phones,
        per_request=per_request,
    )


_ID_COLUMNS = ("customer_id", "old_customer_id", "new_customer_id", "current_customer_id")


def _conditions(columns: set[str], raw_rows: bool) -> list[str]:
    """WHERE fragments that select an erased person's rows in a table with these columns."""
    out = []
    if {"source", "source_record_id"} <= columns:
        out.append("(source, source_record_id) IN (SELECT (source, source_record_id) "
                   "FROM __erase_records)")
    for side in ("l", "r"):
        if {f"source_{side}", f"source_record_id_{side}"} <= columns:
            out.append(f"(source_{side}, source_record_id_{side}) IN "
                       "(SELECT (source, source_record_id) FROM __erase_records)")
    if {"customer_source", "customer_record_id"} <= columns:
        out.append("(customer_source, customer_record_id) IN "
                   "(SELECT (source, source_record_id) FROM __erase_records)")
    if {"source", "event_id"} <= columns:
        out.append("(source, event_id) IN (SELECT (source, event_id) FROM __erase_events)")
    out += [f"{quote_identifier(c)} IN (SELECT customer_id FROM __erase_ids)"
            for c in _ID_COLUMNS if c in columns]
    if raw_rows:
        # Raw ids are compared as the cleaned layer writes them (see _raw_rowids).
        out.append("rowid IN (SELECT row_id FROM __erase_raw_rows)")
    return out


def _raw_rowids(
    con: duckdb.DuckDBPyConnection, schema: str, name: str, targets: ErasureTargets,
    registry: Registry | None,
) -> pl.DataFrame | None:
    """Row ids of a raw source table whose record id (or, for events, the customer record
    they point at) is erased; None for tables that are not a registered source's raw table.

    Raw tables keep ids as delivered (" C0001 ", say) while every other layer stores them
    as `id_text` makes them, so the ids are compared after the same polars cleaning; an SQL
    cast would leave such a row, and the person's data, in the raw table.
    """
    if schema != "raw" or registry is None:
        return None
    try:
        source = registry.source(name)
    except KeyError:
        return None
    reference = source.activity.customer if source.activity else None
    columns = [source.record_id, *([reference.column] if reference else [])]
    rows = con.sql(
        "SELECT rowid AS row_id, "
        # Cast in polars, not SQL: the cleaned layer's ids are polars casts of these columns.
        + ", ".join(f"{quote_identifier(c)} AS c{i}" for i, c in enumerate(columns))
        + f" FROM {quote_identifier(schema)}.{quote_identifier(name)}"
    ).pl()

    def of(frame: pl.DataFrame, column: str, owner: str) -> pl.Series:
        return frame.filter(pl.col("source") == owner).get_column(column).implode()

    own_id = id_text(pl.col("c0"))
    hit = (own_id.is_in(of(targets.records, "source_record_id", source.name))
           | own_id.is_in(of(targets.events, "event_id", source.name)))
    if reference is not None:
        hit = hit | id_text(pl.col("c1")).is_in(
            of(targets.records, "source_record_id", reference.source))
    return rows.filter(hit.fill_null(False)).select("row_id")


def purge_rows(
    con: duckdb.DuckDBPyConnection, targets: ErasureTargets, registry: Registry | None,
    *, own_transaction: bool = True,
) -> dict[str, int]:
    """Delete the targets' rows from every table of the connected database, in one
    transaction (or in the caller's, which then commits the purge with its receipts).
    Returns rows removed per table (tables with none are left out)."""
    removed: dict[str, int] = {}
    with (
        registered(con, "__erase_records", targets.records),
        registered(con, "__erase_events", targets.events),
        registered(con, "__erase_ids", targets.customer_ids),
        transaction(con) if own_transaction else contextlib.nullcontext(),
    ):
        for table in sorted(_tables(con)):
            schema, name = table.split(".", 1)
            columns = {
                r[0] for r in con.execute(
                    "SELECT column_name FROM duckdb_columns() WHERE database_name = "
                    "current_database() AND schema_name = ? AND table_name = ?",
                    [schema, name],
                ).fetchall()
            }
            raw_rows = _raw_rowids(con, schema, name, targets, registry)
            raw_hit = raw_rows is not None and raw_rows.height > 0
            conditions = _conditions(columns, raw_hit)
            if not conditions:
                continue
            qualified = f"{quote_identifier(schema)}.{quote_identifier(name)}"
            with (registered(con, "__erase_raw_rows", raw_rows) if raw_hit
                  else contextlib.nullcontext()):
                count = con.execute(
                    f"DELETE FROM {qualified} WHERE " + " OR ".join(conditions)
                ).fetchall()[0][0]
            if count:
                removed[table] = int(count)
    return removed


# A file beside the warehouse while purged rows' bytes may still sit in its free blocks: made
# before the purge commits, removed once the file is rewritten, so a run killed in between
# does the rewrite next time.
REWRITE_OWED = ".erasure_rewrite_owed"


def rewrite_database(
    path: Path, lock_path: Path | None = None, storage_version: str | None = None
) -> None:
    """Copy a DuckDB file into a fresh one and swap it in, so deleted rows' bytes are gone
    (DuckDB keeps them in free blocks until the file is rewritten)."""
    fresh = path.with_name(path.name + ".rewrite")
    fresh.unlink(missing_ok=True)
    with writer_lock(lock_path) if lock_path else contextlib.nullcontext():
        con = duckdb.connect(str(path))
        try:
            database = con.sql("SELECT current_database()").fetchall()[0][0]
            option = (
                f" (STORAGE_VERSION {quote_literal(storage_version)})" if storage_version else ""
            )
            con.execute(f"ATTACH {quote_literal(str(fresh))} AS __fresh{option}")
            con.execute(f"COPY FROM DATABASE {quote_identifier(database)} TO __fresh")
            con.execute("DETACH __fresh")
        finally:
            con.close()
        with open(fresh, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(fresh, path)
        Path(str(path) + ".wal").unlink(missing_ok=True)


def remove_derived_files(root: Path) -> dict[str, int]:
    """Files that may hold an erased person's values and are rebuilt by the run: saved models
    (their term-frequency tables list values), HTML reports (sampled record pairs), exports,
    and engine scratch folders. Returns files removed per folder."""
    removed = {}
    for folder in ("models", "reports", "exports", ".splink_tmp", ".duckdb_tmp"):
        path = root / folder
        if path.exists() or path.is_symlink():
            removed[f"file:{folder}"] = sum(1 for p in path.rglob("*") if p.is_file())
            shutil.rmtree(path, ignore_errors=True)
    return removed


def suppression_entries(
    targets: ErasureTargets, request_id: str, key: str, fingerprint: str, now: datetime
) -> pl.DataFrame:
    """The suppression rows (hashes only) for one request."""
    record_values = targets.records.select(
        pl.concat_str("source", pl.lit("|"), "source_record_id").alias("value"),
        pl.lit("record").alias("kind"),
    )
    values = pl.concat([
        record_values,
        targets.emails.to_frame().with_columns(pl.lit("email").alias("kind")),
        targets.phones.to_frame().with_columns(pl.lit("phone").alias("kind")),
    ]).unique()
    con = duckdb.connect()
    try:
        with registered(con, "v", values):
            hashed = con.sql(
                f"SELECT kind, {keyed_hash_sql('value', key)} AS value_hash FROM v").pl()
    finally:
        con.close()
    return hashed.with_columns(
        pl.lit(request_id).alias("request_id"),
        pl.lit(fingerprint).alias("key_fingerprint"),
        pl.lit(now).alias("added_at"),
    ).select(list(SUPPRESSION_COLUMNS))


def suppressed_rows(
    frame: pl.DataFrame, source_name: str, record_id: str, email: str | None,
    phone: str | None, country: str, suppression: pl.DataFrame, key: str,
) -> pl.Series:
    """Boolean mask of raw rows matching the suppression list (by record key, email, phone)."""
    probe = frame.select(
        # As the cleaned layer writes the id: the suppression list hashes that form.
        pl.concat_str(pl.lit(source_name + "|"), id_text(pl.col(record_id)))
        .alias("record_value"),
        (pl.col(email).cast(pl.String) if email else pl.lit(None, dtype=pl.String))
        .alias("email"),
        (pl.col(phone).cast(pl.String) if phone else pl.lit(None, dtype=pl.String))
        .alias("phone"),
    )
    probe = standardise_phone(standardise_email(probe), default_region=country)
    con = duckdb.connect()
    try:
        with (
            registered(con, "p", probe.select("record_value", "email", "phone")
                       .with_row_index("row")),
            registered(con, "s", suppression.select("kind", "value_hash")),
        ):
            mask = con.sql(
                f"""
                SELECT ({keyed_hash_sql('record_value', key)} IN
                            (SELECT value_hash FROM s WHERE kind = 'record'))
                    OR coalesce({keyed_hash_sql('email', key)} IN
                            (SELECT value_hash FROM s WHERE kind = 'email'), false)
                    OR coalesce({keyed_hash_sql('phone', key)} IN
                            (SELECT value_hash FROM s WHERE kind = 'phone'), false) AS hit
                FROM p ORDER BY row
                """
            ).pl().get_column("hit")
    finally:
        con.close()
    return mask.fill_null(False)


def read_suppression_list(con: duckdb.DuckDBPyConnection) -> pl.DataFrame | None:
    """governance.suppression_list, or None before any erasure run has created it."""
    if not table_exists(con, "governance", "suppression_list"):
        return None
    return read_table(con, "governance", "suppression_list")


@dataclass(frozen=True)
class SuppressionResult:
    """A raw source table without the rows of erased persons, and how many rows went."""

    frame: pl.DataFrame
    suppressed: int


def drop_suppressed(
    frame: pl.DataFrame, source: Source, suppression: pl.DataFrame | None,
    key: Callable[[], str],
) -> SuppressionResult:
    """`frame` (a source file as loaded, before it is stored) without the rows that match the
    suppression list by record key, email or phone (`suppressed_rows`); the rows are counted,
    not quarantined. `key` gives the pseudonymisation key the list was hashed with; it is asked
    for only when the list has entries (reading it may create the warehouse's key file)."""
    if suppression is None or not suppression.height:
        return SuppressionResult(frame, 0)
    hit = suppressed_rows(
        frame, source.name, source.record_id, source.fields.get("email"),
        source.fields.get("phone"), source.country or "NL", suppression, key(),
    )
    return SuppressionResult(frame.filter(~hit), int(hit.sum()))


def requests_file(registry: Registry) -> Path:
    """governance/erasure_requests.csv, in the folder of the steward overrides file."""
    return registry.overrides_file().parent / "erasure_requests.csv"


def purge_published_file(analytics: Path, resolved: list[ErasureTargets]) -> None:
    """The analyst file is rebuilt at the end of the run; until then it must not hold the
    person either. Done before the warehouse's purge commits, so a kill in between repeats
    it; the file is rewritten and swapped in whole."""
    if not analytics.exists():
        return
    published = duckdb.connect(str(analytics))
    try:
        for targets in resolved:
            purge_rows(published, targets, None)
    finally:
        published.close()
    rewrite_database(analytics, storage_version=STORAGE_VERSION)


def bookkeeping_writes(
    con: duckdb.DuckDBPyConnection, receipts: list[pl.DataFrame], entries: list[pl.DataFrame],
    files: dict[str, int], now: datetime, run_id: str,
) -> list[PartitionWrite]:
    """Receipts and suppression entries of this run's requests (empty tables on a first run
    without any)."""
    if not receipts:
        return [
            PartitionWrite("governance", name, empty_frame(columns), "request_id",
                           "Erasure bookkeeping.", describe(columns))
            for name, columns in (("erasure_receipts", RECEIPT_COLUMNS),
                                  ("suppression_list", SUPPRESSION_COLUMNS))
            if not table_exists(con, "governance", name)
        ]
    receipt_frame = pl.concat(receipts).with_columns(
        pl.col("rows_removed", "customers_erased", "records_erased").cast(pl.Int64),
        pl.col("requested_on").str.to_date(),
        pl.lit(now).alias("processed_at"),
        pl.lit(run_id).alias("run_id"),
    )
    file_rows = pl.DataFrame(
        {"item": list(files), "rows_removed": list(files.values())},
        schema={"item": pl.String, "rows_removed": pl.Int64},
    )
    first = receipt_frame.row(0, named=True)
    receipt_frame = pl.concat([
        receipt_frame,
        file_rows.with_columns(
            *(pl.lit(first[c]).alias(c) for c in RECEIPT_COLUMNS
              if c not in ("item", "rows_removed")),
        ).select(list(RECEIPT_COLUMNS)),
    ], how="vertical_relaxed").select(list(RECEIPT_COLUMNS))
    return [
        PartitionWrite("governance", "erasure_receipts", receipt_frame, "request_id",
                       "What each erasure removed (counts only).", describe(RECEIPT_COLUMNS)),
        PartitionWrite("governance", "suppression_list", pl.concat(entries), "request_id",
                       "Keyed hashes that keep erased persons out.", describe(SUPPRESSION_COLUMNS)),
    ]
