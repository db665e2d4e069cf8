"""The published analyst file: analytics.duckdb, masked, commented, audited before it is swapped
in atomically."""

from collections.abc import Iterator

import dagster as dg

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
from cdi_pipeline.lib.privacy import pseudonym_key
from cdi_pipeline.lib.published.analytics import (
    ANALYTICS_FILE,
    STORAGE_VERSION,
    Audit,
    PublishRefused,
    build_analytics_file,
)

NO_DIRECT_IDENTIFIERS = "no_direct_identifiers"


@dg.asset(
    key=ANALYTICS,
    group_name="published",
    deps=[CUSTOMER_360, CUSTOMER_SEGMENTS, SEGMENT_SUMMARY, CUSTOMER_SNAPSHOTS, SEGMENT_SNAPSHOTS,
          ID_MAP],
    kinds={"duckdb"},
    pool=WAREHOUSE_POOL,
    tags={"layer": "published"},
    check_specs=[dg.AssetCheckSpec(
        NO_DIRECT_IDENTIFIERS, asset=ANALYTICS,
        description="The staged file holds no e-mail, phone, IBAN or address in any text "
        "value, name or comment, and every table and column is described; it is swapped in "
        "only then (a failure keeps the previous file).",
    )],
)
def analytics_file(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """analytics.duckdb for analysts: customers, segments, history and id map, with contact
    details masked or hashed and quasi-identifiers coarsened; built under a staging name,
    audited, then swapped in atomically, readable by DuckDB 1.4+."""
    target = warehouse.root / ANALYTICS_FILE
    key = pseudonym_key(warehouse.root)
    try:
        with warehouse.connect() as con:
            published = build_analytics_file(con, target, key, context.run.run_id)
    except PublishRefused as refused:
        yield _audit_result(refused.audit)
        raise dg.Failure(description=str(refused), metadata=_audit_metadata(refused.audit),
                         allow_retries=False) from None
    counts = published.counts
    context.log.info(f"published {target} ({sum(counts.values()):,} rows)")
    yield dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(target)),
            "storage_version": dg.MetadataValue.text(STORAGE_VERSION),
            "rows_per_table": dg.MetadataValue.json(counts),
            "size_mb": dg.MetadataValue.float(round(target.stat().st_size / 1e6, 2)),
            "open_read_only": dg.MetadataValue.md(
                f"```python\nimport duckdb\ncon = duckdb.connect('{target}', read_only=True)\n"
                "con.sql('SELECT * FROM customers LIMIT 5')\n```"
            ),
        },
        check_results=[_audit_result(published.audit)],
    )


def _audit_metadata(audit: Audit) -> dict[str, dg.MetadataValue]:
    return {"text_columns_scanned": dg.MetadataValue.int(audit.text_columns),
            "leaks": dg.MetadataValue.int(len(audit.leaks)),
            "uncommented": dg.MetadataValue.int(audit.uncommented)}


def _audit_result(audit: Audit) -> dg.AssetCheckResult:
    """The staged file's audit as the UI shows it: by place and kind, never the values."""
    return dg.AssetCheckResult(check_name=NO_DIRECT_IDENTIFIERS, passed=audit.passed,
                               description=audit.describe(), metadata=_audit_metadata(audit))
