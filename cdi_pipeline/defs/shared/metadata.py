"""Standard Dagster metadata for warehouse tables, so every asset shows the same facts."""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg
import polars as pl

from cdi_pipeline.lib.storage import TableWrite


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
