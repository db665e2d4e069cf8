"""Cleaned layer: canonical customer records and the quarantine, written in one transaction."""

from collections.abc import Iterator
from datetime import date

import dagster as dg
import polars as pl

from cdi_pipeline.defs.keys import ACTIVITIES, CUSTOMER_RECORDS, QUARANTINE, raw_key
from cdi_pipeline.defs.shared.metadata import table_metadata
from cdi_pipeline.defs.shared.resources import WAREHOUSE_POOL, WarehouseResource
from cdi_pipeline.lib.cleaned.batch import (
    CleanedBatch,
    CleanedRecords,
    assemble_batch,
    clean_events,
    clean_records,
    events_write,
    quarantine_write,
    records_write,
)
from cdi_pipeline.lib.registry import Registry
from cdi_pipeline.lib.storage import (
    ROWS_PER_COMMIT,
    TableWrite,
    frame_to_markdown,
    read_table,
    replace_tables,
    stage_table,
)


class CleaningConfig(dg.Config):
    """Run settings of the cleaned layer."""

    reference_date: str | None = None
    """ISO date treated as 'today' for date-of-birth range checks; empty means today."""


def _materializations(
    batch: CleanedBatch, writes: list[TableWrite]
) -> Iterator[dg.MaterializeResult]:
    yield dg.MaterializeResult(
        asset_key=CUSTOMER_RECORDS,
        metadata={
            **table_metadata(writes[0], rows=batch.records_cleaned),
            "records_per_source": dg.MetadataValue.md(frame_to_markdown(batch.record_balance)),
            "records_held_back": dg.MetadataValue.int(batch.records_held_back),
            "values_nulled": dg.MetadataValue.int(batch.values_nulled),
        },
    )
    yield dg.MaterializeResult(
        asset_key=ACTIVITIES,
        metadata={
            **table_metadata(writes[1]),
            "events_per_source": dg.MetadataValue.md(frame_to_markdown(batch.events_per_source())),
            "events_held_back": dg.MetadataValue.int(batch.events_held_back),
        },
    )
    yield dg.MaterializeResult(
        asset_key=QUARANTINE,
        metadata={
            **table_metadata(writes[2]),
            "rows_per_rule": dg.MetadataValue.md(
                frame_to_markdown(batch.rows_per_rule(), max_rows=60)
            ),
        },
    )


def build_cleaned_assets(registry: Registry) -> dg.AssetsDefinition:
    """The cleaned-layer multi-asset: identity records, behavioural events and quarantine."""
    identity = registry.identity_sources
    behaviour = [s for s in registry.sources if s.activity is not None]
    raw_keys = [raw_key(s.name) for s in registry.sources]

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                CUSTOMER_RECORDS,
                group_name="cleaned",
                deps=raw_keys,
                kinds={"duckdb", "polars", "pandera"},
                description="Every usable identity record of every source in the canonical "
                "shape: standardised names, email, phone, address and dates, one row per "
                "(source, source_record_id), with trust rank and load lineage. The single "
                "input to matching.",
                tags={"layer": "cleaned"},
            ),
            dg.AssetSpec(
                ACTIVITIES,
                group_name="cleaned",
                deps=raw_keys,
                kinds={"duckdb", "polars", "pandera"},
                description="Every usable behavioural event (order, ticket, sign-up) with the "
                "identity record it belongs to, its date, amount, channel and consent. Empty "
                "when the source set has no behavioural sources.",
                tags={"layer": "cleaned"},
            ),
            dg.AssetSpec(
                QUARANTINE,
                group_name="cleaned",
                deps=raw_keys,
                kinds={"duckdb", "polars"},
                description="Values nulled and records or events held back by the cleaning "
                "rules, with the rule, a message and the value as delivered.",
                tags={"layer": "cleaned"},
            ),
        ],
        pool=WAREHOUSE_POOL,
        name="cleaned_customer_records",
    )
    def cleaned_customer_records(
        context: dg.AssetExecutionContext, config: CleaningConfig, warehouse: WarehouseResource
    ):
        today = date.fromisoformat(config.reference_date) if config.reference_date else None
        run_id = context.run.run_id
        cleaned: list[CleanedRecords] = []
        with warehouse.connect() as con:

            def records_by_source() -> Iterator[pl.DataFrame]:
                # One source at a time, each checked on its own and staged before the next is
                # read: a source is held for a shared commit only while the held rows stay
                # under ROWS_PER_COMMIT (at ten million records each commits on its own), as
                # every commit leaves part-filled row groups that DuckDB merges again at the
                # checkpoint. Sorted by source then record id, as one table would be.
                for source in sorted(identity, key=lambda s: s.name):
                    result = clean_records(read_table(con, "raw", source.name), source,
                                           registry, run_id, today)
                    context.log.info(result.summary)
                    cleaned.append(result.without_records())
                    yield result.records

            records = records_write(registry, records_by_source())
            staged = {records.qualified: stage_table(con, records, ROWS_PER_COMMIT)}
            try:
                events = []
                for source in behaviour:
                    events.append(clean_events(read_table(con, "raw", source.name), source,
                                               registry, run_id))
                    context.log.info(events[-1].summary)
                batch = assemble_batch(cleaned, events, registry)
                writes = [records, events_write(batch), quarantine_write(batch)]
                replace_tables(con, writes, staged=staged)
            except BaseException:
                # The staged records never became the table; leave nothing of them behind.
                con.execute(f"DROP TABLE IF EXISTS {staged[records.qualified]}")
                raise
        yield from _materializations(batch, writes)

    return cleaned_customer_records
