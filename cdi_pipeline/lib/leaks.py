"""Direct identifiers anywhere in text: e-mail, phone, IBAN, postcode with house number.

What leaves the pipeline (the published analyst file, the activation exports) must not name a
person. Masking covers the columns we know hold contact details, but a person's details also
arrive inside free text ("questions to jan.jansen@example.com"), comments, column names and
manifest files. This module finds them there, wherever they sit inside a value.

The patterns avoid look-around and backreferences, so they run unchanged in DuckDB (RE2) and
polars (Rust regex): a database and a frame are scanned set-wise, with the same verdicts.
Word boundaries are emulated with groups such as `(^|[^0-9\\p{L}_])`, so a match includes the
character before and after it: the patterns answer "does this text contain one", and the few
places that extract matches (IBAN candidates) allow for that.

A finding (`Leak`) says where, what kind and in how many rows, never the matched text: the
report goes to logs and check results that erasure cannot reach. A table, column, file or
JSON key whose own name leaks is named by its position instead.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from cdi_pipeline.lib.storage import quote_identifier, quote_literal

# --- building blocks -------------------------------------------------------------------------

# Characters that make a number or code part of a longer word ("ID12345678901", "cust_0612...").
_WORD = r"0-9\p{L}_"
_START = r"(?:^|[^" + _WORD + r"])"
_END = r"(?:[^" + _WORD + r"]|$)"

# One separator between phone digits: a space, hyphen, dot or slash (maybe opening a
# parenthesis), a closing parenthesis (maybe followed by one of those), or an opening one.
_PHONE_SEPARATOR = r"(?:[ .\-/]\(?|\)[ .\-/]?|\()"

_IBAN_BODY = (
    r"[A-Z]{2}[0-9]{2}"
    r"(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?)"
)

_HOUSE_NUMBER = r"[1-9][0-9]{0,3}[A-Za-z]?(?:[-/][0-9A-Za-z]{1,4})?"
# Between a house number and a postcode: a comma, a line break or spaces.
_ADDRESS_GAP = r"[ \t,;\r\n]{1,4}"
_DUTCH_POSTCODE = r"[1-9][0-9]{3} ?[A-Z]{2}"
_UK_POSTCODE = r"[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}"
# Four or five digits are a postcode only with a city after them ("10115 Berlin").
_POSTCODE_AND_CITY = r"[0-9]{4,5} \p{Lu}\p{Ll}+"
# A street: a word ending in a street word ("Hauptstraße", "Kerkstraat", "Baker Street") or
# starting with one ("Via Roma", "Rue de Rivoli"). Bare four- or five-digit numbers are too
# common (years, counts) to count as a postcode without this.
_STREET = (
    r"(?:\p{L}*(?i:straße|strasse|straat|weg|gasse|platz|allee|laan|plein|gracht|kade|singel"
    r"|dijk|steeg|street|road|avenue|lane|drive|gatan|gade|vej|vägen|katu)\.?"
    r"|(?i:str|rd|ave|st)\."
    r"|(?i:via|viale|piazza|rue|avenue|boulevard|chemin|place|calle|avenida|rua|ulica))"
)
_WORDS_AFTER = r"(?: \p{L}+){0,3}"

# --- the patterns ----------------------------------------------------------------------------

EMAIL_PATTERN = r"[A-Za-z0-9._%+'\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"

# 9 to 15 digits joined by single separators, with an optional "+" and opening parenthesis.
# A run of more than 15 digits without separators is a hash or an id, not a phone: the end
# group then finds no non-digit after the 15th digit. A longer chain with separators still
# holds a phone-shaped part (the start group accepts a separator), which keeps two phones
# joined by a slash ("020-1234567/06-12345678") found, at the price of number lists such as
# "2021 2022 2023" reading as a phone too.
PHONE_PATTERN = (
    _START + r"\(?\+?\(?[0-9](?:" + _PHONE_SEPARATOR + r"?[0-9]){8,14}" + _END
)

# Shape only; `iban_checksum_ok` decides (DuckDB in SQL, polars on the few candidates).
IBAN_PATTERN = r"(?:^|[^0-9A-Za-z])" + _IBAN_BODY + r"(?:[^0-9A-Za-z]|$)"

# Kept as separate shapes and tried one by one: joined into one pattern, RE2's DFA outgrows its
# memory budget and DuckDB falls back to a matcher about a hundred times slower.
ADDRESS_SHAPES = (
    # "1234 AB 12", "1234AB, 12a"
    _START + _DUTCH_POSTCODE + _ADDRESS_GAP + _HOUSE_NUMBER + _END,
    # "Kerkstraat 12, 1234 AB Utrecht", "Lange Voorhout 5\n2514 EA"
    r"\p{L}{2,}\.? " + _HOUSE_NUMBER + _ADDRESS_GAP + _DUTCH_POSTCODE + _END,
    # "10 Downing Street, London SW1A 2AA"
    _START + _HOUSE_NUMBER + r" \p{L}+(?:[ ,'\-]{1,2}\p{L}+){0,6}" + _ADDRESS_GAP
    + _UK_POSTCODE + _END,
    # "Hauptstraße 5, 10115 Berlin", "Via Roma 12, 00184 Roma"
    _STREET + _WORDS_AFTER + " " + _HOUSE_NUMBER + _ADDRESS_GAP + _POSTCODE_AND_CITY,
    # "5 rue de Rivoli, 75001 Paris"
    _START + _HOUSE_NUMBER + r",? (?:\p{L}+ ){0,3}" + _STREET + _WORDS_AFTER + _ADDRESS_GAP
    + _POSTCODE_AND_CITY,
)
ADDRESS_PATTERN = "|".join(ADDRESS_SHAPES)

# Replaced by a space before PHONE_PATTERN is applied. Dates, times, uuids, large amounts and
# IBANs are digits joined by separators too: "2024-01-15 10:30" is ten digits joined by single
# separators, exactly a phone's shape. Erasing them first keeps the phone pattern simple (RE2
# has no look-around to exclude them) and is safe because each shape here is specific enough
# not to swallow a phone number's digits (dates need a plausible year, amounts groups of three
# followed by no digit).
PHONE_LOOKALIKE_PATTERN = "|".join([
    # uuids (run ids, record ids): their all-digit groups would read as a phone
    r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}",
    # 2024-01-15, 2024/01/15
    r"(?:19|20)[0-9]{2}[-/.](?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12][0-9]|3[01])",
    # 15-01-2024, 01/15/2024
    r"[0-3]?[0-9][-/.][0-3]?[0-9][-/.](?:19|20)[0-9]{2}",
    # 20240115103000, 20240115 1030
    r"(?:^|[^0-9])(?:19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[T ]?"
    r"[0-2][0-9][0-5][0-9](?:[0-5][0-9])?(?:[^0-9]|$)",
    # 10:30, 10:30:00.123456789 (fractional seconds are a long digit run after a dot)
    r"[0-2]?[0-9]:[0-5][0-9](?::[0-5][0-9](?:[.,][0-9]+)?)?",
    # 1.234.567.890,12 (dot-grouped thousands; not "06.123.456.78", whose groups go on)
    r"(?:^|[^0-9.,])[0-9]{1,3}(?:\.[0-9]{3}){2,}(?:,[0-9]{1,2})?"
    r"(?:[^0-9.,]|[.,](?:[^0-9]|$)|$)",
    IBAN_PATTERN,
])

LEAK_PATTERNS: dict[str, str] = {
    "email": EMAIL_PATTERN,
    "phone": PHONE_PATTERN,
    "iban": IBAN_PATTERN,
    "postcode_with_house_number": ADDRESS_PATTERN,
}
KINDS = tuple(LEAK_PATTERNS)

# What is stripped from an IBAN candidate (spaces, the boundary characters) before its
# checksum is computed.
_NOT_IBAN = r"[^0-9A-Z]"
# A grouped candidate may have taken a short capitalised word after the IBAN for its last
# group ("BE68 5390 0754 7034 EUR"), so the candidate without its last group is checked too.
_LAST_GROUP = r" [A-Z0-9]{1,4}[^0-9A-Z]*$"


@dataclass(frozen=True)
class Leak:
    """Where a kind of direct identifier was found, and in how many rows (never the value)."""

    location: str
    kind: str
    rows: int


def describe(leaks: Iterable[Leak]) -> str:
    """One line for a person: "email in segment_summary.description (1 row); ..."."""
    parts = [
        f"{leak.kind} in {leak.location} ({leak.rows:,} row{'' if leak.rows == 1 else 's'})"
        for leak in leaks
    ]
    return "; ".join(parts) if parts else "no direct identifiers found"


def iban_checksum_ok(candidate: str) -> bool:
    """ISO 13616 mod-97 check: the country and check digits moved to the end, letters as
    10..35, the number modulo 97 is 1. Random shapes pass one time in 97."""
    compact = re.sub(_NOT_IBAN, "", candidate)
    if len(compact) < 15:
        return False
    digits = "".join(str(int(char, 36)) for char in compact[4:] + compact[:4])
    return int(digits) % 97 == 1


# --- DuckDB ----------------------------------------------------------------------------------


def _sql_iban_ok(candidate_sql: str) -> str:
    """SQL for `iban_checksum_ok`, digit by digit so no number outgrows an integer."""
    compact = f"regexp_replace({candidate_sql}, {quote_literal(_NOT_IBAN)}, '', 'g')"
    rearranged = f"substr({compact}, 5) || substr({compact}, 1, 4)"
    values = (
        f"list_transform(string_split({rearranged}, ''), "
        "lambda ch: CASE WHEN ch < 'A' THEN ascii(ch) - 48 ELSE ascii(ch) - 55 END)"
    )
    return (
        f"(length({compact}) >= 15 AND list_reduce({values}, "
        "lambda acc, n: (acc * CASE WHEN n > 9 THEN 100 ELSE 10 END + n) % 97) = 1)"
    )


def _sql_iban_candidates(text_sql: str) -> str:
    """SQL for the IBAN-shaped strings in a text.

    A match takes the character after it as its closing boundary, so an IBAN one character
    after another candidate lacks its opening one; a second pass over the text with the first
    candidates blanked out finds it.
    """
    iban = quote_literal(IBAN_PATTERN)
    return (
        f"list_concat(regexp_extract_all({text_sql}, {iban}), "
        f"regexp_extract_all(regexp_replace({text_sql}, {iban}, ' ', 'g'), {iban}))"
    )


def leak_flags_sql(text_sql: str) -> dict[str, str]:
    """Per kind, a DuckDB boolean expression: does this text value contain one?"""
    iban = quote_literal(IBAN_PATTERN)
    without_last_group = f"regexp_replace(c, {quote_literal(_LAST_GROUP)}, '')"
    return {
        "email": f"regexp_matches({text_sql}, {quote_literal(EMAIL_PATTERN)})",
        "phone": (
            f"regexp_matches(regexp_replace({text_sql}, "
            f"{quote_literal(PHONE_LOOKALIKE_PATTERN)}, ' ', 'g'), "
            f"{quote_literal(PHONE_PATTERN)})"
        ),
        "iban": (
            f"(regexp_matches({text_sql}, {iban}) AND len(list_filter("
            f"{_sql_iban_candidates(text_sql)}, lambda c: {_sql_iban_ok('c')} "
            f"OR {_sql_iban_ok(without_last_group)})) > 0)"
        ),
        "postcode_with_house_number": "(" + " OR ".join(
            f"regexp_matches({text_sql}, {quote_literal(shape)})" for shape in ADDRESS_SHAPES
        ) + ")",
    }


def _sql_kinds(text_sql: str) -> str:
    """SQL for the list of kinds found in one text value (names and comments)."""
    cases = ", ".join(
        f"CASE WHEN {flag} THEN '{kind}' END" for kind, flag in leak_flags_sql(text_sql).items()
    )
    return f"list_filter([{cases}], lambda k: k IS NOT NULL)"


@dataclass(frozen=True)
class _Table:
    oid: int
    schema: str
    name: str
    label: str
    name_kinds: list[str]
    comment_kinds: list[str]


def _tables(con: duckdb.DuckDBPyConnection, database: str) -> list[_Table]:
    rows = con.sql(
        f"SELECT table_oid, schema_name, table_name, {_sql_kinds('table_name')}, "
        f"{_sql_kinds('comment')} FROM duckdb_tables() "
        "WHERE database_name = ? AND NOT internal ORDER BY schema_name, table_name",
        params=[database],
    ).fetchall()
    tables = []
    for position, (oid, schema, name, name_kinds, comment_kinds) in enumerate(rows, start=1):
        label = f"table {position}" if name_kinds else name
        if schema != "main":
            label = f"{schema}.{label}"
        tables.append(_Table(oid, schema, name, label, name_kinds, comment_kinds))
    return tables


def _is_text(data_type: str) -> bool:
    # Lists, structs and maps of text are scanned through their VARCHAR rendering.
    return "VARCHAR" in data_type or data_type == "JSON"


def _columns(con: duckdb.DuckDBPyConnection, database: str) -> dict[int, list[tuple]]:
    """Every column of the database by table oid, its name and comment judged (one query,
    so the patterns are compiled once)."""
    rows = con.sql(
        f"SELECT table_oid, column_index, column_name, data_type, {_sql_kinds('column_name')}, "
        f"{_sql_kinds('comment')} FROM duckdb_columns() WHERE database_name = ? "
        "ORDER BY table_oid, column_index",
        params=[database],
    ).fetchall()
    by_table: dict[int, list[tuple]] = {}
    for oid, *column in rows:
        by_table.setdefault(oid, []).append(tuple(column))
    return by_table


def _scan_table(
    con: duckdb.DuckDBPyConnection, database: str, table: _Table, columns: list[tuple]
) -> list[Leak]:
    leaks = [Leak(f"table name ({table.label})", kind, 1) for kind in table.name_kinds]
    leaks += [Leak(f"table {table.label} (comment)", kind, 1) for kind in table.comment_kinds]
    counted = []
    for index, name, data_type, name_kinds, comment_kinds in columns:
        label = f"{table.label}.{f'column {index}' if name_kinds else name}"
        leaks += [Leak(f"column name of {table.label} (column {index})", kind, 1)
                  for kind in name_kinds]
        leaks += [Leak(f"{label} (comment)", kind, 1) for kind in comment_kinds]
        if _is_text(data_type):
            text = quote_identifier(name)
            counted.append((label, text if data_type == "VARCHAR" else f"CAST({text} AS VARCHAR)"))
    return leaks + _count_table_rows(con, database, table, counted)


def _count_table_rows(
    con: duckdb.DuckDBPyConnection, database: str, table: _Table, columns: list[tuple[str, str]]
) -> list[Leak]:
    """One query per table: per text column and kind, the rows holding one.

    The text columns are unpivoted into one and each distinct value is judged once: the
    patterns are then compiled once per table instead of once per column, and a value
    repeated in many rows (a segment name, a region, a quarter's snapshot) costs one match.
    """
    if not columns:
        return []
    aliases = [f"c{i}" for i in range(len(columns))]
    selected = ", ".join(f"CAST({text} AS VARCHAR) AS {alias}"
                         for (_, text), alias in zip(columns, aliases, strict=True))
    counts = ", ".join(f"coalesce(sum(n) FILTER (WHERE {flag}), 0)"
                       for flag in leak_flags_sql("v").values())
    source = ".".join(map(quote_identifier, (database, table.schema, table.name)))
    found = con.sql(
        f"SELECT col, {counts} FROM (SELECT col, v, count(*) AS n FROM (UNPIVOT (SELECT "
        f"{selected} FROM {source}) ON {', '.join(aliases)} INTO NAME col VALUE v) "
        "GROUP BY ALL) GROUP BY col"
    ).fetchall()
    rows = {alias: per_kind for alias, *per_kind in found}
    return [
        Leak(label, kind, int(n))
        for (label, _), alias in zip(columns, aliases, strict=True)
        for kind, n in zip(KINDS, rows.get(alias, [0] * len(KINDS)), strict=True) if n
    ]


def scan_database(
    con: duckdb.DuckDBPyConnection, database: str | None = None
) -> list[Leak]:
    """Every table of a DuckDB database (default: the current one): text values, table and
    column names, table and column comments. Views are not scanned: they show table data."""
    if database is None:
        database = con.sql("SELECT current_database()").fetchall()[0][0]
    columns = _columns(con, database)
    return [leak for table in _tables(con, database)
            for leak in _scan_table(con, database, table, columns.get(table.oid, []))]


# --- polars ----------------------------------------------------------------------------------


def _iban_candidates(text: pl.Expr) -> pl.Expr:
    """The IBAN-shaped strings in a text (see `_sql_iban_candidates` for the second pass)."""
    return pl.concat_list(
        text.str.extract_all(IBAN_PATTERN),
        text.str.replace_all(IBAN_PATTERN, " ").str.extract_all(IBAN_PATTERN),
    )


def _iban_forms(candidate: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """A candidate as checked: compact, and compact without its last group."""
    return (
        candidate.str.replace_all(_NOT_IBAN, ""),
        candidate.str.replace(_LAST_GROUP, "").str.replace_all(_NOT_IBAN, ""),
    )


def _flag_exprs(text: pl.Expr, valid_ibans: Sequence[str]) -> dict[str, pl.Expr]:
    whole, shortened = _iban_forms(pl.element())
    valid = list(valid_ibans)
    return {
        "email": text.str.contains(EMAIL_PATTERN),
        "phone": text.str.replace_all(PHONE_LOOKALIKE_PATTERN, " ").str.contains(PHONE_PATTERN),
        "iban": _iban_candidates(text).list.eval(whole.is_in(valid) | shortened.is_in(valid))
        .list.any(),
        "postcode_with_house_number": pl.any_horizontal(
            text.str.contains(shape) for shape in ADDRESS_SHAPES
        ),
    }


def _valid_ibans(frame: pl.LazyFrame, texts: Sequence[pl.Expr]) -> list[str]:
    """The IBAN-shaped strings in these texts that pass the checksum.

    The shapes are found set-wise; only the distinct candidates (a handful) are checked in
    Python, as polars has no digit-by-digit reduce to do it in an expression.
    """
    found = frame.select(
        pl.concat_list(
            _iban_candidates(text).list.eval(form) for form in _iban_forms(pl.element())
        ).explode().drop_nulls().unique().implode().alias(str(position))
        for position, text in enumerate(texts)
    ).collect()
    candidates = {c for column in found.iter_columns() for c in column.explode().drop_nulls()}
    return sorted(c for c in candidates if iban_checksum_ok(c))


def leak_flags(values: pl.Series) -> pl.DataFrame:
    """Per value, one boolean column per kind: does it contain one? (The polars twin of
    `leak_flags_sql`.)"""
    frame = values.cast(pl.String).alias("text").to_frame()
    text = pl.col("text")
    valid = _valid_ibans(frame.lazy(), [text])
    return frame.select(flag.fill_null(False).alias(kind)
                        for kind, flag in _flag_exprs(text, valid).items())


def _kinds_per_text(texts: Sequence[str]) -> list[list[str]]:
    flags = leak_flags(pl.Series(texts, dtype=pl.String))
    return [[kind for kind in KINDS if row[kind]] for row in flags.iter_rows(named=True)]


def _scan_lazy(
    name: str, frame: pl.LazyFrame, allowed: Mapping[str, Collection[str]] | None = None
) -> list[Leak]:
    schema = frame.collect_schema()
    leaks: list[Leak] = []
    texts: dict[str, pl.Expr] = {}
    # Kinds a column holds by design (an export's e-mail column): not findings there.
    expected: dict[str, Collection[str]] = {}
    columns = schema.names()
    for position, (column, kinds) in enumerate(
        zip(columns, _kinds_per_text(columns), strict=True), start=1
    ):
        leaks += [Leak(f"column name of {name} (column {position})", kind, 1) for kind in kinds]
        if schema[column] in (pl.String, pl.Categorical):
            label = f"column {position}" if kinds else column
            texts[f"{name}:{label}"] = pl.col(column).cast(pl.String)
            expected[f"{name}:{label}"] = (allowed or {}).get(column, ())
    if not texts:
        return leaks
    valid = _valid_ibans(frame, list(texts.values()))
    counts = frame.select(
        flag.sum().alias(f"{position}/{kind}")
        for position, text in enumerate(texts.values())
        for kind, flag in _flag_exprs(text, valid).items()
    ).collect().row(0)
    labels = [(location, kind) for location in texts for kind in KINDS]
    return leaks + [Leak(location, kind, rows)
                    for (location, kind), rows in zip(labels, counts, strict=True)
                    if rows and kind not in expected[location]]


def scan_frame(
    name: str, frame: pl.DataFrame, allowed: Mapping[str, Collection[str]] | None = None
) -> list[Leak]:
    """Every text column of a polars frame, and its column names; locations `<name>:<column>`.

    `allowed` names the kinds a column holds by design (`{"email": {"email"}}` for an
    export's contact column): those are not findings there, any other kind still is.
    """
    return _scan_lazy(name, frame.lazy(), allowed)


# --- files -----------------------------------------------------------------------------------

_POSITION = "__position__"


def _json_values(path: Path) -> pl.DataFrame:
    """A JSON file as a frame: a column per key path ("files[].note"), its values as text.

    DuckDB's json_tree flattens the document set-wise, decoding escapes (a "\\n" before a phone
    number must become a line break again, or the number would read as glued to an "n").
    Container nodes get a column of nulls, so every key is scanned as a name.
    """
    with duckdb.connect() as con:
        values = con.sql(
            r"""
            SELECT regexp_replace(regexp_replace(t.fullkey, '\[[0-9]+\]', '[]', 'g'),
                                  '^\$\.?', '') AS path,
                   CASE WHEN t.type NOT IN ('OBJECT', 'ARRAY')
                        THEN json_extract_string(t.value, '$') END AS text
            FROM read_json_objects(?, format = 'unstructured') AS r, json_tree(r.json) AS t
            WHERE t.fullkey <> '$'
            """,
            params=[str(path)],
        ).pl()
    if values.is_empty():
        return pl.DataFrame()
    wide = (
        values.with_columns(pl.int_range(pl.len()).over("path").alias(_POSITION))
        .pivot(on="path", index=_POSITION, values="text")
        .drop(_POSITION)
    )
    # Key paths in sorted order, so a key reported by its position keeps that position.
    return wide.select(sorted(wide.columns))


_READERS = {
    # Every CSV cell as text: a phone number must not become an integer first.
    ".csv": lambda path: pl.scan_csv(path, infer_schema=False),
    ".parquet": pl.scan_parquet,
    ".json": lambda path: _json_values(path).lazy(),
}


def scan_folder(
    folder: Path, allowed: Mapping[str, Collection[str]] | None = None
) -> list[Leak]:
    """Every CSV, parquet and JSON file directly in a folder (an export, its manifest), and
    the file names; locations `<file>:<column>`. `allowed` as for `scan_frame`, by column
    name in every file."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _READERS)
    leaks: list[Leak] = []
    for position, (path, kinds) in enumerate(
        zip(files, _kinds_per_text([p.name for p in files]), strict=True), start=1
    ):
        leaks += [Leak(f"file name (file {position})", kind, 1) for kind in kinds]
        label = f"file {position}" if kinds else path.name
        leaks += _scan_lazy(label, _READERS[path.suffix.lower()](path), allowed)
    return leaks
