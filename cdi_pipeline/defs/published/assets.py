"""The published analyst file: analytics.duckdb, masked, commented, swapped in atomically."""

import dagster as dg
import duckdb

from cdi_pipeline.defs.keys import (
    ANALYTICS,
    CUSTOMER_360,
    CUSTOMER_SEGMENTS,
    CUSTOMER_SNAPSHOTS,
    ID_MAP,
    SEGMENT_SNAPSHOTS,
    SEGMENT_SUMMARY,
)
from cdi_pipeline.defs.shared.resources import WAREHOUSE_POOL, WarehouseResource
from cdi_pipeline.lib.privacy import UNMASKED_PATTERN, pseudonym_key
from cdi_pipeline.lib.published.analytics import (
    ANALYTICS_FILE,
    STORAGE_VERSION,
    build_analytics_file,
)
from cdi_pipeline.lib.storage import quote_identifier

NO_DIRECT_IDENTIFIERS = "no_direct_identifiers"


@dg.asset(
    key=ANALYTICS,
    group_name="published",
    deps=[CUSTOMER_360, CUSTOMER_SEGMENTS, SEGMENT_SUMMARY, CUSTOMER_SNAPSHOTS, SEGMENT_SNAPSHOTS,
          ID_MAP],
    kinds={"duckdb"},
    pool=WAREHOUSE_POOL,
    tags={"layer": "published"},
)
def analytics_file(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """analytics.duckdb for analysts: customers, segments, history and id map, with contact
    details masked or hashed and quasi-identifiers coarsened; rebuilt and swapped in
    atomically, readable by DuckDB 1.4+."""
    target = warehouse.root / ANALYTICS_FILE
    key = pseudonym_key(warehouse.root)
    with warehouse.connect() as con:
        counts = build_analytics_file(con, target, key, context.run.run_id)
    context.log.info(f"published {target} ({sum(counts.values()):,} rows)")
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(target)),
            "storage_version": dg.MetadataValue.text(STORAGE_VERSION),
            "rows_per_table": dg.MetadataValue.json(counts),
            "size_mb": dg.MetadataValue.float(round(target.stat().st_size / 1e6, 2)),
            "open_read_only": dg.MetadataValue.md(
                f"```python\nimport duckdb\ncon = duckdb.connect('{target}', read_only=True)\n"
                "con.sql('SELECT * FROM customers LIMIT 5')\n```"
            ),
        }
    )


@dg.asset_check(
    asset=ANALYTICS,
    name=NO_DIRECT_IDENTIFIERS,
    blocking=True,
    description="No text value in the analyst file looks like an unmasked email or phone "
    "number, and every table and column has a comment.",
)
def no_direct_identifiers(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    target = warehouse.root / ANALYTICS_FILE
    con = duckdb.connect(str(target), read_only=True)
    try:
        columns = con.sql(
            "SELECT table_name, column_name, comment FROM duckdb_columns() "
            "WHERE database_name = current_database() AND data_type = 'VARCHAR'"
        ).fetchall()
        leaks = {}
        for table, column, _ in columns:
            found = con.execute(
                f"SELECT count(*) FROM {quote_identifier(table)} "
                f"WHERE regexp_matches({quote_identifier(column)}, ?)",
                [UNMASKED_PATTERN],
            ).fetchall()[0][0]
            if found:
                leaks[f"{table}.{column}"] = found
        uncommented = con.sql(
            "SELECT table_name || '.' || column_name FROM duckdb_columns() "
            "WHERE database_name = current_database() AND coalesce(comment, '') = '' "
            "UNION ALL SELECT table_name FROM duckdb_tables() "
            "WHERE database_name = current_database() AND coalesce(comment, '') = ''"
        ).fetchall()
    finally:
        con.close()
    passed = not leaks and not uncommented
    return dg.AssetCheckResult(
        passed=passed,
        description="masked and described" if passed else
        f"unmasked values in {sorted(leaks)}; uncommented: {[u[0] for u in uncommented]}",
        metadata={"text_columns_scanned": len(columns), "leaking_columns": len(leaks),
                  "uncommented": len(uncommented)},
    )
