"""Standard Dagster metadata for warehouse tables, so every asset shows the same facts."""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg
import duckdb
import polars as pl

from cdi_pipeline.lib.gates import GateResult
from cdi_pipeline.lib.storage import TableWrite, frame_to_markdown, quote_identifier


def column_schema(frame: pl.DataFrame, descriptions: Mapping[str, str]) -> dg.TableSchema:
    """A Dagster table schema with each column's type and description."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name=name, type=str(dtype), description=descriptions.get(name))
            for name, dtype in frame.schema.items()
        ]
    )


def table_metadata(write: TableWrite, rows: int | None = None) -> dict[str, object]:
    """Row count, table name and column schema of a written table (`rows`: the count of a
    table written in batches, whose frame is only the first)."""
    return {
        "dagster/row_count": dg.MetadataValue.int(write.frame.height if rows is None else rows),
        "dagster/table_name": dg.MetadataValue.text(f"cdi.{write.qualified}"),
        "dagster/column_schema": column_schema(write.frame, write.column_descriptions),
    }


def stored_table_metadata(con: duckdb.DuckDBPyConnection, key: dg.AssetKey) -> dict[str, object]:
    """Row count, table name and column schema of the table `key` names (schema, table) as
    it is stored now, with the column comments the write left: for a step that changed only
    some rows of a table and so holds no frame of the whole."""
    schema, table = key.path
    columns = con.execute(
        "SELECT column_name, data_type, comment FROM duckdb_columns() "
        "WHERE database_name = current_database() AND schema_name = ? AND table_name = ? "
        "ORDER BY column_index",
        [schema, table],
    ).fetchall()
    rows = con.sql(f"SELECT count(*) FROM {quote_identifier(schema)}.{quote_identifier(table)}")
    return {
        "dagster/row_count": dg.MetadataValue.int(rows.fetchall()[0][0]),
        "dagster/table_name": dg.MetadataValue.text(f"cdi.{schema}.{table}"),
        "dagster/column_schema": dg.TableSchema(columns=[
            dg.TableColumn(name=name, type=dtype, description=comment or None)
            for name, dtype, comment in columns
        ]),
    }


def check_result(gate: GateResult, *, warn: bool = False) -> dg.AssetCheckResult:
    """A gate's verdict as the asset check the UI shows (`warn`: a failure only warns)."""
    metadata: dict[str, dg.MetadataValue] = {
        **{k: dg.MetadataValue.int(v) if isinstance(v, int) else
           dg.MetadataValue.float(float(v)) if isinstance(v, float) else
           dg.MetadataValue.text(str(v)) for k, v in gate.figures.items()},
        **{k: dg.MetadataValue.md(frame_to_markdown(v, max_rows=50))
           for k, v in gate.tables.items()},
        **{k: dg.MetadataValue.md(v) for k, v in gate.notes.items()},
    }
    return dg.AssetCheckResult(
        passed=gate.passed, description=gate.description, metadata=metadata,
        severity=dg.AssetCheckSeverity.WARN if warn else dg.AssetCheckSeverity.ERROR,
    )
