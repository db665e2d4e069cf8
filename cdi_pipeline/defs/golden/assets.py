"""Golden layer: golden records with field lineage, behavioural features, the customer 360."""

import time

import dagster as dg
import polars as pl

from cdi_pipeline.defs.cleaned.assets import ACTIVITIES, CUSTOMER_RECORDS
from cdi_pipeline.defs.matching.assets import XREF
from cdi_pipeline.defs.shared.config import ReferenceDateConfig, run_date
from cdi_pipeline.defs.shared.metadata import table_metadata
from cdi_pipeline.defs.shared.resources import WAREHOUSE_POOL, WarehouseResource
from cdi_pipeline.lib.golden.customer_360 import build_customer_360, customer_360_descriptions
from cdi_pipeline.lib.golden.features import FEATURE_COLUMNS, build_features
from cdi_pipeline.lib.golden.survivorship import (
    CUSTOMER_COLUMNS,
    FIELD_LINEAGE_COLUMNS,
    GOLDEN_INPUT_COLUMNS,
    build_golden,
)
from cdi_pipeline.lib.registry import Registry
from cdi_pipeline.lib.storage import (
    ROWS_PER_COMMIT,
    Staging,
    TableWrite,
    frame_to_markdown,
    quote_identifier,
    read_table,
    replace_tables,
)

CUSTOMERS = dg.AssetKey(["golden", "customers"])
FIELD_LINEAGE = dg.AssetKey(["golden", "field_lineage"])
CUSTOMER_FEATURES = dg.AssetKey(["golden", "customer_features"])
CUSTOMER_360 = dg.AssetKey(["golden", "customer_360"])
CUSTOMER_SEGMENTS = dg.AssetKey(["segments", "customer_segments"])
CUSTOMER_ENRICHMENT = dg.AssetKey(["enrichment", "customer_enrichment"])


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
        wanted = ", ".join(f"c.{quote_identifier(c)}" for c in GOLDEN_INPUT_COLUMNS)
        per_pass = registry.golden.batch_customers
        with warehouse.connect() as con:
            # Passes over contiguous customer_id ranges: survivorship only ever looks inside
            # one customer, so the passes give what one pass would, in a fraction of memory.
            bounds = [r[0] for r in con.sql(
                "SELECT customer_id FROM (SELECT customer_id, row_number() OVER "
                "(ORDER BY customer_id) AS rn FROM (SELECT DISTINCT customer_id FROM "
                "golden.customer_xref)) WHERE (rn - 1) % $n = 0 ORDER BY customer_id",
                params={"n": per_pass}).fetchall()]
            # No customers at all still makes one (empty) pass: the tables get their columns.
            ranges = list(zip(bounds, [*bounds[1:], None], strict=True)) or [(None, None)]
            # About a million rows per commit: at 1M records 7 commits instead of 24 (one per
            # field and pass), which took 3 s off writing them. The price is the rows held
            # until then: a million and one batch at most (lineage is some 130 MB a million).
            customers_staging = Staging(con, "golden", "customers",
                                        rows_per_commit=ROWS_PER_COMMIT)
            lineage_staging = Staging(con, "golden", "field_lineage",
                                      rows_per_commit=ROWS_PER_COMMIT)
            pieces: dict[str, list[pl.DataFrame]] = {"sizes": [], "filled": [], "rules": []}
            customers_total, multi_source, preview = 0, 0, None
            templates: dict[str, pl.DataFrame] = {}
            try:
                for i, (low, high) in enumerate(ranges, start=1):
                    in_range = ("($low IS NULL OR x.customer_id >= $low) AND "
                                "($high IS NULL OR x.customer_id < $high)")
                    span = {"low": low, "high": high}
                    # One read: the records with their customer; the map is derived from it.
                    records = con.sql(
                        f"SELECT {wanted}, x.customer_id, x.match_confidence FROM "
                        "cleaned.customer_records c JOIN golden.customer_xref x "
                        f"USING (source, source_record_id) WHERE {in_range}", params=span).pl()
                    xref = records.select("source", "source_record_id", "customer_id",
                                          "match_confidence")
                    records = records.drop("customer_id", "match_confidence")
                    events = con.sql(
                        "SELECT a.source, a.event_id, a.customer_source, a.customer_record_id, "
                        "a.occurred_at FROM cleaned.activities a JOIN golden.customer_xref x "
                        "ON x.source = a.source AND x.source_record_id = a.event_id "
                        f"WHERE a.customer_source = a.source AND {in_range}", params=span).pl()
                    context.log.info(f"survivorship pass {i}/{len(ranges)}: "
                                     f"{records.height:,} records")
                    result = build_golden(records, xref, events, registry.golden)
                    del records, xref, events
                    customers = result.customers
                    customers_staging.append(customers)
                    for batch in result.lineage_batches():
                        lineage_staging.append(batch)
                        templates.setdefault("lineage", batch.clear())
                    # Lineage held over would sit in memory through the next pass's build.
                    lineage_staging.flush()
                    templates.setdefault("customers", customers.clear())
                    customers_total += customers.height
                    multi_source += customers.filter(pl.col("sources") > 1).height
                    pieces["sizes"].append(customers.group_by("records").len())
                    pieces["filled"].append(customers.select(
                        pl.col(c).is_not_null().sum() for c in customers.columns))
                    pieces["rules"].append(result.rule_counts)
                    if preview is None:
                        preview = customers.select("customer_id", "records", "sources",
                                                   "source_list", "gender", "country").head(10)
                    del result, customers
                customers_staging.flush()
                # The rows are staged; the frames only carry the columns to describe.
                writes = [
                    TableWrite("golden", "customers", templates["customers"],
                               "One golden record per customer (survivorship per field).",
                               CUSTOMER_COLUMNS),
                    TableWrite("golden", "field_lineage", templates["lineage"],
                               "Where every golden value came from and which rule chose it.",
                               FIELD_LINEAGE_COLUMNS),
                ]
                replace_tables(con, writes, staged={
                    "golden.customers": customers_staging.name,
                    "golden.field_lineage": lineage_staging.name,
                })
            except BaseException:
                customers_staging.drop()
                lineage_staging.drop()
                raise
            lineage_rows, contested = con.sql(
                "SELECT count(*), count(runner_up_source) FROM golden.field_lineage"
            ).fetchall()[0]
        seconds = round(time.monotonic() - started, 2)
        sizes = (pl.concat(pieces["sizes"]).group_by("records").agg(pl.col("len").sum()
                 .alias("customers")).sort("records"))
        filled = pl.concat(pieces["filled"]).sum().select(
            (pl.all() / max(customers_total, 1)).round(4)
        ).unpivot(variable_name="column", value_name="filled_share")
        rule_counts = (pl.concat(pieces["rules"], how="diagonal_relaxed").fill_null(0)
                       .group_by("field").sum().sort("field"))
        rules = {
            name: "\n".join(f"{i + 1}. {r}" for i, r in enumerate(registry.golden.rules_for(name)))
            for name in ("first_name", "last_name", "email", "phone", "address")
        }
        yield dg.MaterializeResult(
            asset_key=CUSTOMERS,
            metadata={
                **table_metadata(writes[0], rows=customers_total),
                "seconds": dg.MetadataValue.float(seconds),
                "survivorship_passes": dg.MetadataValue.int(len(ranges)),
                "multi_source_customers": dg.MetadataValue.int(multi_source),
                "records_per_customer": dg.MetadataValue.md(frame_to_markdown(sizes, 30)),
                "filled_share": dg.MetadataValue.md(frame_to_markdown(filled, 40)),
                "survivorship_rules": dg.MetadataValue.json(rules),
                # Ids and counts only: Dagster's event log is no place for personal data.
                "preview": dg.MetadataValue.md(frame_to_markdown(preview, 10)),
            },
        )
        yield dg.MaterializeResult(
            asset_key=FIELD_LINEAGE,
            metadata={
                **table_metadata(writes[1], rows=lineage_rows),
                "deciding_rule_per_field": dg.MetadataValue.md(frame_to_markdown(rule_counts)),
                "contested_values": dg.MetadataValue.int(contested),
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
                "SELECT source, source_record_id, customer_id FROM golden.customer_xref"
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
        f = result.features
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
                "customers_with_orders": dg.MetadataValue.int(
                    f.filter(pl.col("order_count") > 0).height
                ),
                "total_revenue": dg.MetadataValue.float(float(f.get_column("revenue").sum())),
                "customers_with_consent": dg.MetadataValue.int(
                    f.filter(pl.col("marketing_consent").fill_null(False)).height
                ),
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
