"""Print what the last run built: tables with row counts, file locations, how to look further."""

from __future__ import annotations

import duckdb

from cdi_pipeline import settings
from cdi_pipeline.lib.storage import WAREHOUSE_FILE, quote_identifier


def summarise() -> str:
    """A short human-readable summary of the warehouse."""
    root = settings.warehouse_dir()
    path = root / WAREHOUSE_FILE
    if not path.exists():
        return f"No warehouse at {path} yet: run `make run`."
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = con.sql(
            "SELECT schema_name, table_name, estimated_size, comment FROM duckdb_tables() "
            "ORDER BY schema_name, table_name"
        ).fetchall()
        lines = [f"Warehouse: {path}", "", f"{'table':<40} {'rows':>10}"]
        for schema, table, _, _ in tables:
            qualified = f"{quote_identifier(schema)}.{quote_identifier(table)}"
            count = con.sql(f"SELECT count(*) FROM {qualified}").fetchall()[0][0]
            lines.append(f"{schema + '.' + table:<40} {count:>10,}")
    finally:
        con.close()
    lines += [
        "",
        f"Files: {root}",
        f"  reports (HTML charts): {root / 'reports'}",
        f"  activation exports:    {root / 'exports' / 'activation'}",
        "Start from golden.customer_360; golden.field_lineage says where each value came from.",
        "Open the Dagster UI with `make ui` (http://127.0.0.1:3000).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarise())
