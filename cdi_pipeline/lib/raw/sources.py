"""Reading a source file as it is, with lineage, and rejecting files that cannot be trusted.

A file is rejected whole (nothing is written) when it is missing, empty or header-only,
undecodable, unparsable, has rows with the wrong number of fields, has unnamed or repeated
columns, lacks a mapped column, maps a nested (struct/list) column, or repeats a record id;
the error names the file, the column or line and what was expected. Row-level problems are
not decided here: they belong to the cleaned layer's quarantine.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl

from cdi_pipeline.lib.registry import Registry, Source
from cdi_pipeline.lib.standardise.text import id_text
from cdi_pipeline.lib.storage import registered

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


_UTF8_BOM = b"\xef\xbb\xbf"
# Ragged rows listed in an error message; the count says how many there are in all.
_EXAMPLES = 5


def _decode(source: Source, path: Path, data: bytes) -> str:
    encoding = source.options.encoding
    if data.startswith(_UTF8_BOM) and not encoding.startswith("utf-8"):
        # Decoded as Latin-1 the mark turns into 'ï»¿' glued to the first column name and
        # every accented letter into two characters: the file is UTF-8, whatever is declared.
        raise SourceFileError(
            f"source {source.name!r}: file {path} starts with a UTF-8 byte-order mark, so it "
            f"is UTF-8, but the registry declares options.encoding: {encoding}; expected "
            "options.encoding: utf-8"
        )
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SourceFileError(
            f"source {source.name!r}: file {path} is not valid {encoding} "
            f"(undecodable byte 0x{data[exc.start]:02x} on line {line}); expected the encoding "
            f"declared in the registry (options.encoding: {encoding})"
        ) from None


def _has_short_rows(source: Source, text: str) -> bool:
    """Whether some record has fewer fields than the first line, checked set-wise.

    polars pads such a row with nulls without saying so; DuckDB's strict CSV reader records
    it in its reject table. (It lets a row with extra empty trailing fields pass, but polars
    refuses those, so between them every ragged row is caught.)
    """
    con = duckdb.connect()
    try:
        # A lone carriage return is part of a field for polars; DuckDB would end the record
        # there. It never separates fields, so checking without it changes nothing.
        con.read_csv(
            io.BytesIO(text.replace("\r", "").encode("utf-8")),
            sep=source.options.delimiter,
            quotechar=source.options.quote_char or "",
            header=source.options.has_header,
            all_varchar=True,
            strict_mode=True,
            null_padding=False,
            store_rejects=True,
        ).aggregate("count(*)").fetchall()
        return bool(con.sql(
            "SELECT count(*) FROM reject_errors WHERE error_type = 'MISSING COLUMNS'"
        ).fetchall()[0][0])
    finally:
        con.close()


def _ragged_rows(source: Source, text: str) -> tuple[int, list[tuple[int, int]]]:
    """The first line's number of fields, and (line, fields) of every record that differs.

    Only for the message of a file being refused: Python's csv module reports each record's
    own field count, where polars and DuckDB stop at the first or miss some.
    """
    quoting = {"quoting": csv.QUOTE_NONE} if source.options.quote_char is None else {
        "quotechar": source.options.quote_char
    }
    # A lone carriage return is part of a field for polars; the csv module would end the
    # record there. It never separates fields, so counting without it changes nothing.
    reader = csv.reader(
        io.StringIO(text.replace("\r", ""), newline=""),
        delimiter=source.options.delimiter,
        **quoting,
    )
    # A 10,000-character value is junk the cleaned layer quarantines, not a reason to fail.
    csv.field_size_limit(max(csv.field_size_limit(), len(text)))
    expected, ragged = 0, []
    for record in reader:
        if not record:
            continue  # a blank line; polars reads it as an all-null row, which is quarantined
        if not expected:
            expected = len(record)
        elif len(record) != expected:
            ragged.append((reader.line_num, len(record)))
    return expected, ragged


def _ragged_error(source: Source, path: Path, expected: int, ragged: list) -> SourceFileError:
    examples = ", ".join(f"line {line} has {fields}" for line, fields in ragged[:_EXAMPLES])
    first_line = "header" if source.options.has_header else "first line"
    return SourceFileError(
        f"source {source.name!r}: file {path} is not a readable CSV with delimiter "
        f"{source.options.delimiter!r}: {len(ragged)} row(s) with the wrong number of fields, "
        f"{examples}; expected {expected} field(s) on every row, as on the {first_line} (a "
        "value holding the delimiter or a line break must be quoted)"
    )


def _header(source: Source, data: bytes) -> list[str | None]:
    """The header's names as written: polars renames a repeated name to name_duplicated_0."""
    return list(
        pl.read_csv(
            io.BytesIO(data),
            separator=source.options.delimiter,
            quote_char=source.options.quote_char,
            has_header=False,
            infer_schema=False,
            n_rows=1,
            truncate_ragged_lines=True,
        ).row(0)
    )


def _text(source: Source, path: Path, data: bytes, expected: str) -> str:
    """The file's text without a byte-order mark (editors on Windows write one: it would glue
    itself onto the first CSV column name, and JSON refuses it); an empty file is refused,
    saying what was `expected`."""
    text = _decode(source, path, data).removeprefix("\ufeff")
    if not text.strip():
        raise SourceFileError(f"source {source.name!r}: file {path} is empty; expected {expected}")
    return text


def _read_csv(source: Source, path: Path, data: bytes) -> pl.DataFrame:
    text = _text(source, path, data, f"a header line with columns {source.mapped_columns()}")
    utf8 = text.encode("utf-8")
    header = None
    try:
        if source.options.has_header:
            header = _header(source, utf8)
            check_column_names(source, path, header)
        # Every column as text: type inference silently swaps day/month and turns a column
        # with one bad date into strings ("05/01/2024" read day-first without a word, one
        # "01/13/2024" turning the column to text); the cleaned layer parses types.
        frame = pl.read_csv(
            io.BytesIO(utf8),
            separator=source.options.delimiter,
            quote_char=source.options.quote_char,
            has_header=source.options.has_header,
            infer_schema=False,
            truncate_ragged_lines=False,
        )
    except (pl.exceptions.ComputeError, pl.exceptions.ShapeError, pl.exceptions.NoDataError) as exc:
        expected, ragged = _ragged_rows(source, text)
        if ragged:
            raise _ragged_error(source, path, expected, ragged) from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceFileError(
            f"source {source.name!r}: file {path} is not a readable CSV with delimiter "
            f"{source.options.delimiter!r} ({first}); expected every row to have the header's "
            "number of fields"
        ) from None
    # polars fills a row with too few fields with nulls; such a row leaves the last column
    # null, so only then is the file counted field by field.
    if (frame.width and frame.get_column(frame.columns[-1]).null_count()
            and _has_short_rows(source, text)):
        expected, ragged = _ragged_rows(source, text)
        if ragged:  # where the two readers disagree on quoting, polars' reading stands
            raise _ragged_error(source, path, expected, ragged)
    if header is not None and len(header) == frame.width:
        # polars leaves a doubled quote in a quoted header name as two ('"a""b"' -> 'a""b'),
        # though it unescapes the same text in a data row; the names are taken from there.
        frame.columns = header
    return frame


def _read_jsonl(source: Source, path: Path, data: bytes) -> pl.DataFrame:
    text = _text(source, path, data, "one JSON object per line")
    try:
        frame = pl.read_ndjson(io.BytesIO(text.encode("utf-8")), infer_schema_length=None)
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
    repeated = _repeated_key(text)
    if repeated is not None:
        number, key = repeated
        raise SourceFileError(
            f"source {source.name!r}: file {path} line {number} has the key {key!r} twice; "
            "expected each key once per object (which value holds is undefined)"
        )
    return frame


def _repeated_key(text: str) -> tuple[int, str] | None:
    """The first line (1-based) whose object repeats a top-level key, and the key.

    polars keeps the first of two values and Python's json the last, silently: a line
    {"email": "a@x.nl", "email": "b@y.nl"} would lose one address unseen. DuckDB's
    json_keys lists every key as written, so one set-wise query finds such lines.
    """
    lines = pl.DataFrame({"line": text.splitlines()}).with_row_index("number", offset=1)
    con = duckdb.connect()
    try:
        with registered(con, "lines", lines):
            found = con.sql(
                "SELECT number, keys FROM (SELECT number, json_keys(line) AS keys FROM lines "
                "WHERE trim(line) <> '') WHERE len(list_distinct(keys)) < len(keys) "
                "ORDER BY number LIMIT 1"
            ).fetchall()
    finally:
        con.close()
    if not found:
        return None
    number, keys = found[0]
    return number, next(key for key in keys if keys.count(key) > 1)


def _read_parquet(source: Source, path: Path, data: bytes) -> pl.DataFrame:
    try:
        return pl.read_parquet(io.BytesIO(data))
    except Exception as exc:  # polars/arrow raise several types for a damaged file
        raise SourceFileError(
            f"source {source.name!r}: file {path} is not a readable Parquet file ({exc})"
        ) from None


_READERS = {"csv": _read_csv, "jsonl": _read_jsonl, "parquet": _read_parquet}


def _roles(source: Source) -> dict[str, str]:
    """Mapped column -> the registry key that maps it, for messages."""
    roles: dict[str, str] = {source.record_id: "record_id"}
    roles.update({col: f"fields.{field}" for field, col in source.fields.items()})
    roles.update({col: f"identifiers.{name}" for name, col in source.identifiers.items()})
    roles.update({col: "attributes" for col in source.attributes})
    if source.activity is not None:
        if source.activity.customer is not None:
            roles.setdefault(source.activity.customer.column, "activity.customer.column")
        for col in source.activity.columns():
            roles.setdefault(col, "activity")
    return roles


def check_column_names(source: Source, path: Path, names: list[str | None]) -> None:
    """Fail on a column without a name, or two columns DuckDB cannot tell apart.

    DuckDB compares column names without regard to case and silently renames the second of
    'Email' and 'email' (and an unnamed column) on write: the raw table would then hold a
    column the file does not, and the mapped one could be the wrong one.
    """
    unnamed = [i for i, name in enumerate(names, start=1) if name is None or not name.strip()]
    if unnamed:
        raise SourceFileError(
            f"source {source.name!r}: file {path} has no name for column(s) at position "
            f"{unnamed} of {len(names)} (a delimiter at the end of the header?); expected "
            "every column to be named"
        )
    seen: dict[str, str] = {name.lower(): name for name in LINEAGE_COLUMNS}
    for name in names:
        other = seen.get(name.lower())
        if other in LINEAGE_COLUMNS:
            raise SourceFileError(
                f"source {source.name!r}: file {path} has column {name!r}, which is reserved "
                "for lineage; rename it in the source"
            )
        if other is not None:
            same = "twice" if other == name else f"and {other!r} (names differ only in case)"
            raise SourceFileError(
                f"source {source.name!r}: file {path} has column {name!r} {same}; expected "
                "unique column names, compared without regard to case"
            )
        seen[name.lower()] = name


def check_columns(source: Source, path: Path, frame: pl.DataFrame) -> None:
    """Fail when a mapped column is absent or nested, or a name collides (see above)."""
    roles = _roles(source)
    missing = [col for col in source.mapped_columns() if col not in frame.columns]
    if missing:
        detail = ", ".join(f"{col!r} (mapped as {roles[col]})" for col in missing)
        raise SourceFileError(
            f"source {source.name!r}: file {path} has no column {detail}; "
            f"columns found: {frame.columns}"
        )
    check_column_names(source, path, frame.columns)
    for col in source.mapped_columns():
        dtype = frame.schema[col]
        if dtype.is_nested() or dtype == pl.Object:
            # Cast to text, a struct becomes '{"a","b"}' and passes as a name or email.
            raise SourceFileError(
                f"source {source.name!r}: file {path} column {col!r} (mapped as {roles[col]}) "
                f"holds {dtype} values; expected text, numbers or dates"
            )


def _id_columns(source: Source) -> dict[str, str]:
    """Columns holding record ids or identifiers, with the registry key that maps them."""
    roles = _roles(source)
    columns = [source.record_id, *source.identifiers.values()]
    if source.activity is not None and source.activity.customer is not None:
        columns.append(source.activity.customer.column)
    return {col: roles[col] for col in dict.fromkeys(columns)}


def whole_number_ids(source: Source, path: Path, frame: pl.DataFrame) -> pl.DataFrame:
    """Id columns stored as floats (pandas turns an integer column with gaps into float64)
    become integers: as text, 10.0 would be '10.0' and never meet '10' from another file
    or an erasure request. An id with a fraction is refused."""
    for col, role in _id_columns(source).items():
        if not frame.schema[col].is_float():
            continue
        values = frame.get_column(col)
        values = values.filter(values.is_not_null() & values.is_not_nan())
        # Beyond 2**53 a float no longer holds every integer: the id is already damaged.
        bad = values.filter((values != values.round(0)) | (values.abs() >= 2**53))
        if bad.len():
            raise SourceFileError(
                f"source {source.name!r}: file {path} column {col!r} (mapped as {role}) holds "
                f"{bad.len()} decimal number(s) such as {bad[0]!r}; expected whole numbers "
                "or text"
            )
        frame = frame.with_columns(
            pl.when(pl.col(col).is_nan()).then(None).otherwise(pl.col(col))
            .cast(pl.Int64).alias(col)
        )
    return frame


def check_record_ids(source: Source, path: Path, frame: pl.DataFrame) -> None:
    """Fail when a record id occurs more than once: records could no longer be told apart."""
    # Compared as the cleaned layer will store them: 'C 9' and 'C  9' (or 'C9' and 'C9' with
    # a zero-width space) are one id there, and the cleaned contract would fail on it.
    ids = frame.select(
        id_text(pl.col(source.record_id)).alias("id"),
        pl.col(source.record_id).cast(pl.String).alias("delivered"),
        pl.int_range(1, pl.len() + 1).alias("row"),
    )
    counts = (
        ids.filter(pl.col("id").is_not_null())
        .group_by("id")
        .agg(
            pl.len().alias("n"),
            pl.col("row").sort().head(3).alias("rows"),
            pl.col("delivered").unique(maintain_order=True).head(3).alias("delivered"),
        )
        .filter(pl.col("n") > 1)
        .sort("id")
    )
    if counts.height:
        examples = "; ".join(
            f"{row['id']!r} on rows {row['rows']}"
            # Invisible differences (spaces, zero-width or control characters) are shown.
            + (f" (delivered as {row['delivered']})" if len(row["delivered"]) > 1 else "")
            for row in counts.head(5).iter_rows(named=True)
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
    if not frame.height:
        # Stored, an empty file would empty raw.<source> and drop every record of the source
        # downstream without a single quarantine row: an export that failed half-way.
        raise SourceFileError(
            f"source {source.name!r}: file {path} has columns but no data rows; expected at "
            "least one record (if the source really has none, leave it out of the registry)"
        )
    check_columns(source, path, frame)
    frame = whole_number_ids(source, path, frame)
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
