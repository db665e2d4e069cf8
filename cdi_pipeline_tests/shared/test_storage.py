"""Whole-table writes: batched tables are staged and swapped in, all-or-nothing."""

from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl
import pytest

from cdi_pipeline.lib.storage import (
    STAGING_PREFIX,
    Staging,
    TableWrite,
    move_tables,
    registered,
    replace_tables,
    stage_table,
)


def _batches(values: list[int], fail_after: int | None = None) -> Iterator[pl.DataFrame]:
    for i, value in enumerate(values):
        if fail_after is not None and i == fail_after:
            raise RuntimeError("killed while writing")
        yield pl.DataFrame({"customer_id": [f"C{value}"], "n": [value]})


def _write(con, first: int, more, other: int) -> None:
    replace_tables(con, [
        TableWrite("golden", "customers", pl.DataFrame({"customer_id": [f"X{other}"]}),
                   "customers", {"customer_id": "the id"}),
        TableWrite("golden", "field_lineage",
                   pl.DataFrame({"customer_id": [f"C{first}"], "n": [first]}),
                   "lineage", {"n": "a number"}, more=more),
    ])


def _tables(con) -> set[str]:
    return {r[0] for r in con.sql("SELECT table_name FROM duckdb_tables()").fetchall()}


def test_batched_table_is_swapped_in_with_the_others(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    _write(con, 1, _batches([2, 3]), other=1)
    assert con.sql("SELECT n FROM golden.field_lineage ORDER BY n").fetchall() == [(1,), (2,),
                                                                                   (3,)]
    assert _tables(con) == {"customers", "field_lineage"}
    comment = con.sql("SELECT comment FROM duckdb_columns() WHERE table_name = 'field_lineage' "
                      "AND column_name = 'n'").fetchall()
    assert comment == [("a number",)]
    # A second write replaces it whole.
    _write(con, 7, _batches([8]), other=2)
    assert con.sql("SELECT n FROM golden.field_lineage ORDER BY n").fetchall() == [(7,), (8,)]


def test_failure_while_staging_leaves_every_old_table(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    _write(con, 1, _batches([2]), other=1)
    with pytest.raises(RuntimeError, match="killed while writing"):
        _write(con, 5, _batches([6, 7, 8], fail_after=2), other=2)
    assert con.sql("SELECT n FROM golden.field_lineage ORDER BY n").fetchall() == [(1,), (2,)]
    assert con.sql("SELECT customer_id FROM golden.customers").fetchall() == [("X1",)]
    assert _tables(con) == {"customers", "field_lineage"}


def test_staging_table_of_a_killed_run_is_dropped_by_the_next_write(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    _write(con, 1, _batches([2]), other=1)
    # What a kill between two staged batches leaves behind: rows nobody should ever read.
    con.execute(f"CREATE TABLE golden.{STAGING_PREFIX}field_lineage AS "
                "SELECT 'STALE' AS customer_id, 99 AS n")
    _write(con, 3, _batches([4]), other=2)
    assert con.sql("SELECT n FROM golden.field_lineage ORDER BY n").fetchall() == [(3,), (4,)]
    assert _tables(con) == {"customers", "field_lineage"}


def test_staging_holds_batches_until_rows_per_commit(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    staging = Staging(con, "golden", "field_lineage", rows_per_commit=3)
    staged = f"golden.{STAGING_PREFIX}field_lineage"
    staging.append(pl.DataFrame({"customer_id": ["C1", "C2"], "n": [1, 2]}))
    assert _tables(con) == set()  # held: nothing written yet
    staging.append(pl.DataFrame({"customer_id": ["C3"], "n": [3]}))
    assert con.sql(f"SELECT n FROM {staged}").fetchall() == [(1,), (2,), (3,)]
    staging.append(pl.DataFrame({"customer_id": ["C4"], "n": [4]}))
    # Held rows would be lost by a swap: the name is refused until they are flushed.
    with pytest.raises(RuntimeError, match="flush"):
        _ = staging.name
    staging.flush()
    replace_tables(con, [TableWrite("golden", "field_lineage", pl.DataFrame(
        {"customer_id": [], "n": []}, schema={"customer_id": pl.String, "n": pl.Int64}),
        "lineage")], staged={"golden.field_lineage": staging.name})
    assert con.sql("SELECT n FROM golden.field_lineage").fetchall() == [(1,), (2,), (3,), (4,)]
    assert _tables(con) == {"field_lineage"}


def test_staging_of_no_rows_still_creates_the_columns(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    staging = Staging(con, "golden", "customers", rows_per_commit=10)
    staging.append(pl.DataFrame(schema={"customer_id": pl.String, "n": pl.Int64}))
    staging.flush()
    assert con.sql(f"DESCRIBE {staging.name}").fetchall()[0][:2] == ("customer_id", "VARCHAR")


def test_stage_table_commits_held_batches_and_drops_them_on_failure(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    lineage = {"customer_id": "the id", "n": "a number"}
    first = pl.DataFrame({"customer_id": ["C1"], "n": [1]})
    # Four rows under a commit size of ten: all of them are held to the end, then committed.
    write = TableWrite("golden", "field_lineage", first, "lineage", lineage,
                       more=_batches([2, 3, 4]))
    staged = stage_table(con, write, rows_per_commit=10)
    assert con.sql(f"SELECT n FROM {staged} ORDER BY n").fetchall() == [(1,), (2,), (3,), (4,)]
    replace_tables(con, [write], staged={write.qualified: staged})
    assert con.sql("SELECT count(*) FROM golden.field_lineage").fetchall() == [(4,)]
    # A batch that fails while rows are held leaves no staging table and the old table whole.
    failing = TableWrite("golden", "field_lineage", first, "lineage", lineage,
                         more=_batches([5, 6], fail_after=1))
    with pytest.raises(RuntimeError, match="killed while writing"):
        stage_table(con, failing, rows_per_commit=10)
    assert _tables(con) == {"field_lineage"}
    assert con.sql("SELECT count(*) FROM golden.field_lineage").fetchall() == [(4,)]


def test_registered_view_is_gone_after_the_block_even_when_it_fails(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    frame = pl.DataFrame({"a": [1, 2, 3]})
    with registered(con, "__frame", frame) as name:
        assert con.sql(f"SELECT sum(a) FROM {name}").fetchall() == [(6,)]
    with pytest.raises(duckdb.CatalogException):
        con.sql("SELECT * FROM __frame").fetchall()
    with pytest.raises(RuntimeError), registered(con, "__frame", frame):
        raise RuntimeError("step failed")
    with pytest.raises(duckdb.CatalogException):
        con.sql("SELECT * FROM __frame").fetchall()


def test_tables_of_an_earlier_layout_move_to_their_layer_once_and_whole(tmp_path):
    """A warehouse built when the identity map lived in `golden` keeps its ids: the table
    moves to `matching` with its rows; a table already in its new place is left alone."""
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("CREATE SCHEMA golden; CREATE SCHEMA segments; CREATE SCHEMA enrichment")
    con.execute("CREATE TABLE golden.customer_xref AS SELECT 'crm' AS source, '1' AS "
                "source_record_id, 'CUS000000001' AS customer_id")
    con.execute("CREATE TABLE segments.customer_segment_snapshots AS SELECT 1 AS old")
    con.execute("CREATE TABLE enrichment.customer_segment_snapshots AS SELECT 2 AS new")
    moved = move_tables(con)
    assert moved == ["golden.customer_xref -> matching.customer_xref"]
    assert con.sql("SELECT customer_id FROM matching.customer_xref").fetchall() == [
        ("CUS000000001",)]
    assert con.sql("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'golden'"
                   ).fetchall() == [(0,)]
    assert con.sql("SELECT * FROM enrichment.customer_segment_snapshots").fetchall() == [(2,)]
    assert move_tables(con) == []
