"""Golden layer: golden records with field lineage, behavioural features, the customer 360."""

import time

import dagster as dg

from cdi_pipeline.defs.keys import (
    ACTIVITIES,
    CUSTOMER_360,
    CUSTOMER_ENRICHMENT,
    CUSTOMER_FEATURES,
    CUSTOMER_RECORDS,
    CUSTOMER_SEGMENTS,
    CUSTOMERS,
    FIELD_LINEAGE,
    XREF,
)
from cdi_pipeline.defs.shared.config import ReferenceDateConfig, run_date
from cdi_pipeline.defs.shared.metadata import table_metadata
from cdi_pipeline.defs.shared.resources import WAREHOUSE_POOL, WarehouseResource
from cdi_pipeline.lib.golden.customer_360 import build_customer_360, customer_360_descriptions
from cdi_pipeline.lib.golden.features import FEATURE_COLUMNS, build_features
from cdi_pipeline.lib.golden.passes import survivorship_rules, write_golden
from cdi_pipeline.lib.registry import Registry
from cdi_pipeline.lib.storage import TableWrite, frame_to_markdown, read_table, replace_tables


def build_golden_assets(registry: Registry) -> list[dg.AssetsDefinition]:
    """Golden customers with lineage, features and the customer 360 for one registry."""

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                CUSTOMERS,
                group_name="golden",
                deps=[XREF, CUSTOMER_RECORDS, ACTIVITIES],
                kinds={"duckdb", "polars"},
                tags={"layer": "golden"},
                description="One golden record per customer_id: each field chosen by the "
                "registry's survivorship rules, display values beside standardised ones, and "
                "how many records and sources contributed.",
            ),
            dg.AssetSpec(
                FIELD_LINEAGE,
                group_name="golden",
                deps=[XREF, CUSTOMER_RECORDS, ACTIVITIES],
                kinds={"duckdb", "polars"},
                tags={"layer": "golden"},
                description="Where every golden value came from: source record, the rule that "
                "chose it, the runner-up and the supplying record's match confidence.",
            ),
        ],
        pool=WAREHOUSE_POOL,
        name="golden_customers",
    )
    def golden_customers(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        started = time.monotonic()
        with warehouse.connect() as con:
            golden = write_golden(con, registry.golden, log=context.log.info)
        seconds = round(time.monotonic() - started, 2)
        summary = golden.summary
        yield dg.MaterializeResult(
            asset_key=CUSTOMERS,
            metadata={
                **table_metadata(golden.customers, rows=summary.customers),
                "seconds": dg.MetadataValue.float(seconds),
                "survivorship_passes": dg.MetadataValue.int(summary.passes),
                "multi_source_customers": dg.MetadataValue.int(summary.multi_source),
                "records_per_customer": dg.MetadataValue.md(
                    frame_to_markdown(summary.records_per_customer(), 30)),
                "filled_share": dg.MetadataValue.md(frame_to_markdown(summary.filled_share(), 40)),
                "survivorship_rules": dg.MetadataValue.json(survivorship_rules(registry.golden)),
                "preview": dg.MetadataValue.md(frame_to_markdown(summary.preview, 10)),
            },
        )
        yield dg.MaterializeResult(
            asset_key=FIELD_LINEAGE,
            metadata={
                **table_metadata(golden.lineage, rows=golden.lineage_rows),
                "deciding_rule_per_field": dg.MetadataValue.md(
                    frame_to_markdown(summary.deciding_rules())),
                "contested_values": dg.MetadataValue.int(golden.contested),
                "example_query": dg.MetadataValue.md(
                    "Why does a customer have this address?\n```sql\n"
                    "SELECT field, value, source, source_record_id, rule, runner_up_value\n"
                    "FROM golden.field_lineage\n"
                    "WHERE customer_id = 'CUS000000001' AND field_group = 'address';\n```"
                ),
            },
        )

    @dg.asset(
        key=CUSTOMER_FEATURES,
        group_name="golden",
        deps=[CUSTOMERS, ACTIVITIES, XREF],
        kinds={"duckdb", "polars"},
        pool=WAREHOUSE_POOL,
        tags={"layer": "golden"},
    )
    def customer_features(
        context: dg.AssetExecutionContext, config: ReferenceDateConfig, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        """Behavioural features per customer: orders, revenue, recency, tickets, last contact
        channel and marketing consent. Zero counts for customers without events."""
        as_of = run_date(config, registry)
        with warehouse.connect() as con:
            customers = con.sql("SELECT customer_id FROM golden.customers").pl()
            events = read_table(con, "cleaned", "activities")
            xref = con.sql(
                "SELECT source, source_record_id, customer_id FROM matching.customer_xref"
            ).pl()
        result = build_features(customers, events, xref, as_of)
        context.log.info(
            f"{result.events_linked:,} of {events.height:,} events linked to customers "
            f"(reference date {as_of})"
        )
        write = TableWrite("golden", "customer_features", result.features,
                           "Behavioural features per customer from orders, tickets and "
                           "sign-ups.", FEATURE_COLUMNS)
        with warehouse.connect() as con:
            replace_tables(con, [write])
        return dg.MaterializeResult(
            metadata={
                **table_metadata(write),
                "reference_date": dg.MetadataValue.text(as_of.isoformat()),
                "events_linked": dg.MetadataValue.int(result.events_linked),
                "events_without_customer": dg.MetadataValue.md(
                    frame_to_markdown(result.events_unlinked)
                    if not result.events_unlinked.is_empty()
                    else "none"
                ),
                "customers_with_orders": dg.MetadataValue.int(result.customers_with_orders),
                "total_revenue": dg.MetadataValue.float(result.total_revenue),
                "customers_with_consent": dg.MetadataValue.int(result.customers_with_consent),
            },
        )

    @dg.asset(
        key=CUSTOMER_360,
        group_name="golden",
        deps=[CUSTOMERS, CUSTOMER_FEATURES, CUSTOMER_SEGMENTS, CUSTOMER_ENRICHMENT],
        kinds={"duckdb", "polars"},
        pool=WAREHOUSE_POOL,
        tags={"layer": "golden"},
    )
    def customer_360(warehouse: WarehouseResource) -> dg.MaterializeResult:
        """The table analysts start from: golden record, behavioural features, segments and
        enrichment, one row per customer."""
        with warehouse.connect() as con:
            table = build_customer_360(
                read_table(con, "golden", "customers"),
                read_table(con, "golden", "customer_features"),
                read_table(con, "segments", "customer_segments"),
                read_table(con, "enrichment", "customer_enrichment"),
            )
            write = TableWrite("golden", "customer_360", table,
                               "Golden record, features, segments and enrichment: one row per "
                               "customer.",
                               customer_360_descriptions())
            replace_tables(con, [write])
        return dg.MaterializeResult(
            metadata={
                **table_metadata(write),
                "preview": dg.MetadataValue.md(frame_to_markdown(
                    table.select("customer_id", "records", "order_count", "revenue",
                                 "rfm_segment", "lifecycle_stage", "value_tier",
                                 "contactability", "region", "age_band"), 10)),
            }
        )

    return [golden_customers, customer_features, customer_360]
