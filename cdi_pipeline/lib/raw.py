"""Reading a source file as it is, with lineage, and rejecting files that cannot be trusted.

A file is rejected whole (nothing is written) when it is missing, empty, undecodable,
unparsable, lacks a mapped column, or repeats a record id; the error names the file, the
column and what was expected. Row-level problems are not decided here: they belong to the
cleaned layer's quarantine.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from cdi_pipeline.lib.registry import Registry, Source

# Lineage columns added to every raw table.
LINEAGE_COLUMNS: dict[str, str] = {
    "_source_file": "Path of the file this row was read from.",
    "_file_hash": "SHA-256 of that file's bytes, to tell loads of different files apart.",
    "_row_number": "1-based position of the row in the file (data rows, header excluded).",
    "_loaded_at": "UTC time the file was loaded.",
    "_run_id": "Dagster run that loaded the file.",
}


class SourceFileError(ValueError):
    """A source file cannot be loaded as declared; nothing from it is written."""


@dataclass(frozen=True)
class RawLoad:
    """A loaded source file: its rows with lineage columns, and facts about the file."""

    frame: pl.DataFrame
    path: Path
    file_hash: str
    size_bytes: int


def _decode(source: Source, path: Path, data: bytes) -> str:
    encoding = source.options.encoding
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SourceFileError(
            f"source {source.name!r}: file {path} is not valid {encoding} "
            f"(undecodable byte 0x{data[exc.start]:02x} on line {line}); expected the encoding "
            f"declared in the registry (options.encoding: {encoding})"
        ) from None


def _read_csv(source: Source, path: Path, data: bytes) -> pl.DataFrame:
    text = _decode(source, path, data)
    if text.startswith("\ufeff"):
        # A byte-order mark would otherwise glue itself onto the first column name.
        text = text[1:]
    if not text.strip():
        raise SourceFileError(
            f"source {source.name!r}: file {path} is empty; expected a header line with "
            f"columns {source.mapped_columns()}"
        )
    try:
        # Every column as text: type inference silently swaps day/month and turns a column
        # with one bad date into strings (see FIELD_NOTES); the cleaned layer parses types.
        return pl.read_csv(
            io.BytesIO(text.encode("utf-8")),
            separator=source.options.delimiter,
            quote_char=source.options.quote_char,
            has_header=source.options.has_header,
            infer_schema=False,
            truncate_ragged_lines=False,
        )
    except (pl.exceptions.ComputeError, pl.exceptions.ShapeError, pl.exceptions.NoDataError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceFileError(
            f"source {source.name!r}: file {path} is not a readable CSV with delimiter "
            f"{source.options.delimiter!r} ({first}); expected every row to have the header's "
            "number of fields"
        ) from None


def _read_jsonl(source: Source, path: Path, data: bytes) -> pl.DataFrame:
    text = _decode(source, path, data)
    if not text.strip():
        raise SourceFileError(
            f"source {source.name!r}: file {path} is empty; expected one JSON object per line"
        )
    try:
        return pl.read_ndjson(io.BytesIO(text.encode("utf-8")), infer_schema_length=None)
    except (pl.exceptions.ComputeError, pl.exceptions.SchemaError) as exc:
        # Only on failure: find the first offending line so the message is actionable.
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as line_exc:
                raise SourceFileError(
                    f"source {source.name!r}: file {path} line {number} is not valid JSON "
                    f"({line_exc.msg}); expected one JSON object per line"
                ) from None
            if not isinstance(value, dict):
                raise SourceFileError(
                    f"source {source.name!r}: file {path} line {number} holds a "
                    f"{type(value).__name__}; expected a JSON object"
                ) from None
        raise SourceFileError(
            f"source {source.name!r}: file {path} could not be read as JSON lines ({exc})"
        ) from None


def _read_parquet(source: Source, path: Path, data: bytes) -> pl.DataFrame:
    try:
        return pl.read_parquet(io.BytesIO(data))
    except Exception as exc:  # polars/arrow raise several types for a damaged file
        raise SourceFileError(
            f"source {source.name!r}: file {path} is not a readable Parquet file ({exc})"
        ) from None


_READERS = {"csv": _read_csv, "jsonl": _read_jsonl, "parquet": _read_parquet}


def check_columns(source: Source, path: Path, frame: pl.DataFrame) -> None:
    """Fail when a column the registry maps is absent, or collides with a lineage column."""
    roles: dict[str, str] = {source.record_id: "record_id"}
    roles.update({col: f"fields.{field}" for field, col in source.fields.items()})
    roles.update({col: f"identifiers.{name}" for name, col in source.identifiers.items()})
    roles.update({col: "attributes" for col in source.attributes})
    if source.activity is not None:
        for col in source.activity.columns():
            roles.setdefault(col, "activity")
    missing = [col for col in source.mapped_columns() if col not in frame.columns]
    if missing:
        detail = ", ".join(f"{col!r} (mapped as {roles[col]})" for col in missing)
        raise SourceFileError(
            f"source {source.name!r}: file {path} has no column {detail}; "
            f"columns found: {frame.columns}"
        )
    clash = sorted(set(LINEAGE_COLUMNS) & set(frame.columns))
    if clash:
        raise SourceFileError(
            f"source {source.name!r}: file {path} has column(s) {clash}, which are reserved "
            "for lineage; rename them in the source"
        )


def check_record_ids(source: Source, path: Path, frame: pl.DataFrame) -> None:
    """Fail when a record id occurs more than once: records could no longer be told apart."""
    ids = frame.get_column(source.record_id).cast(pl.String).str.strip_chars()
    counts = (
        pl.DataFrame({"id": ids, "row": pl.int_range(1, frame.height + 1, eager=True)})
        .filter(pl.col("id").is_not_null() & (pl.col("id") != ""))
        .group_by("id")
        .agg(pl.len().alias("n"), pl.col("row").sort().head(3).alias("rows"))
        .filter(pl.col("n") > 1)
        .sort("id")
    )
    if counts.height:
        examples = "; ".join(
            f"{row['id']!r} on rows {row['rows']}" for row in counts.head(5).iter_rows(named=True)
        )
        raise SourceFileError(
            f"source {source.name!r}: file {path} column {source.record_id!r} must be unique "
            f"(it is the record_id), but {counts.height} value(s) repeat: {examples}"
        )


def file_sha256(data: bytes) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(data).hexdigest()


def load_source(
    registry: Registry, source: Source, run_id: str, loaded_at: datetime | None = None
) -> RawLoad:
    """Read one source file as declared, check it, and add lineage columns."""
    path = registry.file_of(source)
    if not path.is_file():
        raise SourceFileError(
            f"source {source.name!r}: file {path} does not exist "
            f"(key 'path' in {registry.registry_file})"
        )
    data = path.read_bytes()
    if not data:
        raise SourceFileError(
            f"source {source.name!r}: file {path} is empty (0 bytes); expected a {source.format} "
            f"file with columns {source.mapped_columns()}"
        )
    frame = _READERS[source.format](source, path, data)
    check_columns(source, path, frame)
    check_record_ids(source, path, frame)
    loaded_at = loaded_at or datetime.now(UTC)
    digest = file_sha256(data)
    frame = frame.with_columns(
        pl.lit(str(path)).alias("_source_file"),
        pl.lit(digest).alias("_file_hash"),
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("_row_number"),
        pl.lit(loaded_at).alias("_loaded_at"),
        pl.lit(run_id).alias("_run_id"),
    )
    return RawLoad(frame=frame, path=path, file_hash=digest, size_bytes=len(data))
