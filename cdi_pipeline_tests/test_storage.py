"""Whole-table writes: batched tables are staged and swapped in, all-or-nothing."""

from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl
import pytest

from cdi_pipeline.lib.storage import STAGING_PREFIX, TableWrite, replace_tables


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
