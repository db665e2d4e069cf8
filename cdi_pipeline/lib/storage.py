"""DuckDB warehouse storage: all-or-nothing table replacement, comments, and reads.

Why not the stock DuckDB IO managers: they DELETE (autocommitted) and then INSERT by column
position, so a kill in between leaves an empty table and reordered columns swap values. Here
every write is `BEGIN; CREATE OR REPLACE TABLE ...; COMMIT`, several tables can share one
transaction, and a process-level file lock serialises writers so a second run waits instead of
failing on DuckDB's file lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa

WAREHOUSE_FILE = "cdi.duckdb"

# Rows a layer may hold before committing them as one insert into a staging table (see
# Staging): about 360 MB of cleaned records, far fewer commits than one per batch.
ROWS_PER_COMMIT = 1_000_000


def quote_identifier(name: str) -> str:
    """Quote a table or column name for DuckDB SQL, whatever characters it holds."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """Quote a string literal for DuckDB SQL."""
    return "'" + text.replace("'", "''") + "'"


@contextlib.contextmanager
def registered(
    con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame | pa.Table
) -> Iterator[str]:
    """`frame` visible to SQL on `con` as the view `name` for the `with` block only: a view
    left registered keeps its Arrow data alive for as long as the connection lives."""
    con.register(name, _arrow(frame) if isinstance(frame, pl.DataFrame) else frame)
    try:
        yield name
    finally:
        con.unregister(name)


@dataclass(frozen=True)
class TableWrite:
    """A table to (re)place: its rows, what it is, and what each column means."""

    schema: str
    name: str
    frame: pl.DataFrame
    description: str
    column_descriptions: Mapping[str, str] = field(default_factory=dict)
    # Further row batches with the frame's columns, appended in the same transaction: a large
    # table is then never whole in memory (e.g. field lineage, one batch per field).
    more: Iterable[pl.DataFrame] = ()

    @property
    def qualified(self) -> str:
        """`schema.table`, for messages and metadata."""
        return f"{self.schema}.{self.name}"


class WarehouseLockTimeout(RuntimeError):
    """Another writer held the warehouse longer than we are willing to wait."""


@contextlib.contextmanager
def writer_lock(lock_path: Path, timeout_s: float = 3600.0) -> Iterator[None]:
    """Hold an exclusive OS lock on the warehouse so concurrent runs queue, not crash."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise WarehouseLockTimeout(
                        f"waited {timeout_s:.0f}s for the warehouse lock {lock_path}; "
                        "another pipeline run is still writing"
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _arrow(frame: pl.DataFrame) -> pa.Table:
    """The frame as Arrow for DuckDB to scan. Newest compat level: strings stay string views
    (zero copy); the default converts every string to a large_string, which for millions of
    lineage rows took longer than DuckDB's own insert."""
    return frame.to_arrow(compat_level=pl.CompatLevel.newest())


def _comment(con: duckdb.DuckDBPyConnection, table: str, write: TableWrite | PartitionWrite):
    con.execute(f"COMMENT ON TABLE {table} IS {quote_literal(write.description)}")
    for column, text in write.column_descriptions.items():
        if column in write.frame.columns:
            con.execute(
                f"COMMENT ON COLUMN {table}.{quote_identifier(column)} IS {quote_literal(text)}"
            )


def replace_tables(
    con: duckdb.DuckDBPyConnection, writes: list[TableWrite],
    staged: Mapping[str, str] | None = None,
) -> None:
    """Replace all given tables in one transaction: readers see all old or all new tables."""
    write_all(con, writes, staged=staged)


@dataclass(frozen=True)
class PartitionWrite:
    """Rows that replace one partition (e.g. one quarter) of a table kept across runs."""

    schema: str
    name: str
    frame: pl.DataFrame
    partition_column: str
    description: str
    column_descriptions: Mapping[str, str] = field(default_factory=dict)

    @property
    def qualified(self) -> str:
        """`schema.table`, for messages and metadata."""
        return f"{self.schema}.{self.name}"


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """BEGIN ... COMMIT around the block, ROLLBACK when it raises. A process killed inside
    never commits: DuckDB replays only committed transactions from its log."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def replace_partitions(con: duckdb.DuckDBPyConnection, writes: list[PartitionWrite]) -> None:
    """Replace one partition of each table in one transaction, keeping the other partitions.

    A table is created from the first batch; a column added later is added to the table (older
    partitions hold NULL there), so a snapshot table survives a schema change.
    """
    with transaction(con):
        write_partitions(con, writes)


def write_partitions(con: duckdb.DuckDBPyConnection, writes: list[PartitionWrite]) -> None:
    """`replace_partitions` inside the caller's transaction (which then commits it together
    with its own changes)."""
    for i, write in enumerate(writes):
        view = f"__cdi_partition_{i}"
        with registered(con, view, write.frame):
            schema = quote_identifier(write.schema)
            table = f"{schema}.{quote_identifier(write.name)}"
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM {view} LIMIT 0")
            existing = {
                r[0] for r in con.execute(
                    "SELECT column_name FROM duckdb_columns() WHERE schema_name = ? "
                    "AND table_name = ? AND database_name = current_database()",
                    [write.schema, write.name],
                ).fetchall()
            }
            for column, dtype, *_ in con.sql(f"DESCRIBE {view}").fetchall():
                if column not in existing:
                    con.execute(
                        f"ALTER TABLE {table} ADD COLUMN {quote_identifier(column)} {dtype}"
                    )
            keys = write.frame.get_column(write.partition_column).unique().to_list()
            con.execute(
                f"DELETE FROM {table} WHERE {quote_identifier(write.partition_column)} "
                f"IN (SELECT UNNEST(?))",
                [keys],
            )
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {view}")
        _comment(con, table, write)


@dataclass(frozen=True)
class RowWrite:
    """Rows of an existing table replaced by key: the rows whose key is in `delete_keys`
    (default: the keys of `frame`) go, the rows of `frame` come in."""

    schema: str
    name: str
    frame: pl.DataFrame
    key_columns: tuple[str, ...]
    delete_keys: pl.DataFrame | None = None

    @property
    def qualified(self) -> str:
        """`schema.table`, for messages and metadata."""
        return f"{self.schema}.{self.name}"


def write_all(
    con: duckdb.DuckDBPyConnection,
    tables: list[TableWrite] | tuple = (),
    rows: list[RowWrite] | tuple = (),
    *,
    staged: Mapping[str, str] | None = None,
    audit: Callable[[duckdb.DuckDBPyConnection], object] | None = None,
) -> None:
    """Whole-table replacements and keyed row replacements in one transaction.

    `audit`, if given, runs inside the transaction after every write, on the tables as they
    would be committed; when it raises, the transaction is rolled back and nothing of it is
    ever seen (write, audit, then publish).

    A table written in batches (`TableWrite.more`) is first built as a staging table, one
    committed batch at a time, and renamed into place inside the transaction: DuckDB keeps
    a transaction's uncommitted rows in memory (about 100 bytes a row), which for millions
    of lineage rows was a gigabyte. Readers still see the old table or the new one, never
    a part; a run killed while staging leaves the old table and a staging table that the
    next write drops. `staged` names tables the caller staged already (`stage_table`),
    by qualified name.
    """
    staged = dict(staged or {})
    for write in tables:
        if write.qualified not in staged and _streamed(write):
            staged[write.qualified] = stage_table(con, write)
    con.execute("BEGIN TRANSACTION")
    try:
        for i, write in enumerate(tables):
            schema = quote_identifier(write.schema)
            table = f"{schema}.{quote_identifier(write.name)}"
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            if write.qualified in staged:
                con.execute(f"DROP TABLE IF EXISTS {table}")
                con.execute(f"ALTER TABLE {staged[write.qualified]} RENAME TO "
                            f"{quote_identifier(write.name)}")
            else:
                with registered(con, f"__cdi_incoming_{i}", write.frame) as view:
                    con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM {view}")
            _comment(con, table, write)
        for i, write in enumerate(rows):
            table = f"{quote_identifier(write.schema)}.{quote_identifier(write.name)}"
            keys = write.delete_keys if write.delete_keys is not None else write.frame
            columns = ", ".join(quote_identifier(c) for c in write.key_columns)
            with (registered(con, f"__cdi_keys_{i}", keys.select(write.key_columns).unique())
                  as key_view, registered(con, f"__cdi_rows_{i}", write.frame) as row_view):
                con.execute(f"DELETE FROM {table} WHERE ({columns}) IN "
                            f"(SELECT ({columns}) FROM {key_view})")
                if write.frame.height:
                    con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {row_view}")
        if audit is not None:
            audit(con)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        for staging in staged.values():
            con.execute(f"DROP TABLE IF EXISTS {staging}")
        raise


STAGING_PREFIX = "_staging_"


def _streamed(write: TableWrite) -> bool:
    """Whether the write has further batches (an iterator is never known to be empty)."""
    return not (isinstance(write.more, tuple | list) and not write.more)


class Staging:
    """A staging table beside its target, filled one committed batch at a time (so no
    transaction holds the rows in memory) and swapped in by `write_all(staged=...)`.
    Whoever fills it drops it when something fails before the swap.

    With `rows_per_commit`, batches are held until they add up to that many rows and then
    committed as one insert (`flush` commits what is held). Many small commits cost DuckDB
    far more than their rows: every insert leaves a part-filled row group that a checkpoint
    merges again, and an insert below a row group (122,880 rows) goes through the
    write-ahead log and makes its commit checkpoint. Held batches are memory, so the caller
    picks the trade."""

    def __init__(self, con: duckdb.DuckDBPyConnection, schema: str, name: str,
                 rows_per_commit: int = 0) -> None:
        self._con = con
        self.qualified_target = f"{schema}.{name}"
        self._name = f"{quote_identifier(schema)}.{quote_identifier(STAGING_PREFIX + name)}"
        self._created = False
        self._rows_per_commit = rows_per_commit
        self._held: list[pl.DataFrame] = []
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(schema)}")
        # What a killed run left behind is nobody's data any more.
        con.execute(f"DROP TABLE IF EXISTS {self._name}")

    @property
    def name(self) -> str:
        """Qualified name of the staging table (for `write_all(staged=...)`)."""
        if self._held:
            # Swapping in now would lose the held rows without a word.
            raise RuntimeError(f"staging of {self.qualified_target} holds rows: flush() first")
        return self._name

    def append(self, frame: pl.DataFrame) -> None:
        """Add one batch: committed on its own, or held until `rows_per_commit` rows are."""
        if self._held and frame.schema != self._held[0].schema:
            self.flush()  # one insert takes one schema; INSERT BY NAME reconciles the rest
        self._held.append(frame)
        if sum(f.height for f in self._held) >= self._rows_per_commit:
            self.flush()

    def flush(self) -> None:
        """Commit the held batches as one insert."""
        if not self._held:
            return
        frame = self._held[0] if len(self._held) == 1 else pl.concat(self._held)
        with registered(self._con, "__cdi_batch", frame):
            verb = (f"INSERT INTO {self._name} BY NAME SELECT * FROM __cdi_batch"
                    if self._created
                    else f"CREATE TABLE {self._name} AS SELECT * FROM __cdi_batch")
            self._con.execute(verb)
        self._created = True
        self._held = []

    def drop(self) -> None:
        """Remove the staging table and forget held rows (after a failure)."""
        self._held = []
        self._con.execute(f"DROP TABLE IF EXISTS {self._name}")


def stage_table(
    con: duckdb.DuckDBPyConnection, write: TableWrite, rows_per_commit: int = 0
) -> str:
    """Build `write` as a staging table next to its target, committing batch by batch (or
    `rows_per_commit` rows at a time, see `Staging`); return the staging table's qualified
    name (for `write_all(staged=...)`)."""
    staging = Staging(con, write.schema, write.name, rows_per_commit=rows_per_commit)
    try:
        staging.append(write.frame)
        for batch in write.more:
            staging.append(batch)
        staging.flush()
    except BaseException:
        staging.drop()
        raise
    return staging.name


# Tables an earlier version kept in another layer's schema, now in the schema of the layer
# whose step writes them: (old schema, new schema, table).
MOVED_TABLES = (
    ("golden", "matching", "customer_xref"),
    ("golden", "matching", "id_history"),
    ("golden", "matching", "customer_id_map"),
    ("golden", "enrichment", "customer_xref_snapshots"),
    ("golden", "enrichment", "customer_snapshots"),
    ("segments", "enrichment", "customer_segment_snapshots"),
    ("quality", "cleaned", "quarantine"),
)


def move_tables(con: duckdb.DuckDBPyConnection,
                moved: tuple[tuple[str, str, str], ...] = MOVED_TABLES) -> list[str]:
    """Move the tables `moved` names from their old schema to their new one, all in one
    transaction, where the old exists and the new does not: a warehouse built by an earlier
    version keeps its customer ids, id history and snapshots. Returns the tables moved."""
    present = {(s, t) for s, t in con.sql(
        "SELECT schema_name, table_name FROM duckdb_tables() "
        "WHERE database_name = current_database()").fetchall()}
    todo = [(old, new, t) for old, new, t in moved
            if (old, t) in present and (new, t) not in present]
    if not todo:
        return []
    with transaction(con):
        for old, new, table in todo:
            source = f"{quote_identifier(old)}.{quote_identifier(table)}"
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(new)}")
            con.execute(f"CREATE TABLE {quote_identifier(new)}.{quote_identifier(table)} AS "
                        f"SELECT * FROM {source}")
            con.execute(f"DROP TABLE {source}")
    return [f"{old}.{table} -> {new}.{table}" for old, new, table in todo]


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> bool:
    """Whether schema.name is a table of the connected database."""
    return bool(
        con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = ? "
            "AND database_name = current_database()",
            [schema, name],
        ).fetchall()[0][0]
    )


def read_table(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> pl.DataFrame:
    """Read a whole warehouse table into polars."""
    return con.sql(f"SELECT * FROM {quote_identifier(schema)}.{quote_identifier(name)}").pl()


def frame_to_markdown(frame: pl.DataFrame, max_rows: int = 20) -> str:
    """A small markdown rendering of a frame, for asset metadata."""
    head = frame.head(max_rows)
    cols = head.columns
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in head.iter_rows():
        cells = ["" if v is None else str(v).replace("|", "\\|").replace("\n", " ") for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
