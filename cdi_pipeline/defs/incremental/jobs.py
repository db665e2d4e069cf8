"""incremental_refresh: files dropped in incoming/<source>/ go through the same layer steps as
full_refresh (raw, cleaned, matching, golden, segments, enrichment), for the customers they
touch only, and are written in one transaction."""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

import dagster as dg
import polars as pl

from cdi_pipeline.defs.keys import (
    ACTIVITIES,
    CLUSTERS,
    CUSTOMER_360,
    CUSTOMER_ENRICHMENT,
    CUSTOMER_FEATURES,
    CUSTOMER_RECORDS,
    CUSTOMER_SEGMENTS,
    CUSTOMERS,
    FIELD_LINEAGE,
    ID_HISTORY,
    ID_MAP,
    PAIRS,
    QUARANTINE,
    REVIEW_QUEUE,
    XREF,
    raw_key,
)
from cdi_pipeline.defs.matching.assets import backend_config, models_dir
from cdi_pipeline.defs.shared.config import run_date
from cdi_pipeline.defs.shared.metadata import stored_table_metadata
from cdi_pipeline.defs.shared.resources import (
    WAREHOUSE_POOL,
    ReferenceResource,
    WarehouseResource,
)
from cdi_pipeline.lib.cleaned import gates as cleaned_gates
from cdi_pipeline.lib.cleaned.batch import CleanedBatch, clean_batch
from cdi_pipeline.lib.cleaned.gates import rejected_share_limits
from cdi_pipeline.lib.enrichment.enrich import enrich_customers, previous_addresses, quarter_of
from cdi_pipeline.lib.gates import GateResult, require
from cdi_pipeline.lib.golden import gates as golden_gates
from cdi_pipeline.lib.golden.customer_360 import build_customer_360
from cdi_pipeline.lib.golden.features import build_features
from cdi_pipeline.lib.golden.passes import read_batch_inputs
from cdi_pipeline.lib.golden.survivorship import GOLDEN_INPUT_COLUMNS, build_golden
from cdi_pipeline.lib.governance.erasure import read_suppression_list
from cdi_pipeline.lib.matching import gates as matching_gates
from cdi_pipeline.lib.matching.incremental import (
    KEYS,
    BatchMatch,
    identity_writes,
    match_batch,
    read_matching_state,
)
from cdi_pipeline.lib.matching.model_store import model_prior
from cdi_pipeline.lib.privacy import pseudonym_key
from cdi_pipeline.lib.raw.batch import prepare_raw_batch
from cdi_pipeline.lib.raw.incoming import incoming_source, loaded_path, move_to_loaded
from cdi_pipeline.lib.raw.sources import load_source
from cdi_pipeline.lib.registry import Registry
from cdi_pipeline.lib.segments import gates as segments_gates
from cdi_pipeline.lib.segments.segments import build_segments
from cdi_pipeline.lib.storage import RowWrite, read_table, write_all
from cdi_pipeline.lib.timing import Stopwatch

INCREMENTAL_REFRESH = "incremental_refresh"
# Every table a batch rewrites besides the raw tables of its files, in layer order.
REWRITTEN = [CUSTOMER_RECORDS, ACTIVITIES, QUARANTINE, PAIRS, REVIEW_QUEUE, CLUSTERS, XREF,
             ID_HISTORY, ID_MAP, CUSTOMERS, FIELD_LINEAGE, CUSTOMER_FEATURES, CUSTOMER_SEGMENTS,
             CUSTOMER_ENRICHMENT, CUSTOMER_360]


class IncomingConfig(dg.Config):
    """Files to load, as paths relative to the registry folder."""

    files: list[str]
    """e.g. incoming/crm_contacts/2026-12-01.csv; the folder names the source."""
    reference_date: str | None = None
    """ISO 'today' for the gates, features and enrichment; empty: registry, then the
    calendar."""


@dataclass(frozen=True)
class RawFiles:
    """The raw step's result for a batch: each file's rows, and the rows by source."""

    writes: list[RowWrite]
    by_source: dict[str, pl.DataFrame]


def build_incremental_job(registry: Registry) -> dg.JobDefinition:
    """The incremental refresh job for one source registry."""

    @dg.op(
        name="incremental_match",
        out={},
        pool=WAREHOUSE_POOL,
        description="Load, clean and match new files against the existing customers; rebuild "
        "golden records, features, segments and enrichment of the affected customers only.",
    )
    def incremental_match(
        context: dg.OpExecutionContext, config: IncomingConfig, warehouse: WarehouseResource,
        reference: ReferenceResource,
    ) -> Iterator[dg.AssetMaterialization]:
        watch = Stopwatch(context.log, "incremental_match")
        run_id = context.run.run_id
        loads = [incoming_source(registry, f) for f in config.files]
        raw = _raw_step(registry, warehouse, loads, run_id)
        cleaning_day = date.fromisoformat(config.reference_date) if config.reference_date else None
        cleaned = clean_batch(raw.by_source, registry, run_id, cleaning_day)
        # The batch's own share of held-back records, judged before anything is matched.
        require([cleaned_gates.rejected_share(cleaned.records, cleaned.quarantine,
                                              rejected_share_limits(registry))])
        watch.lap("load and clean the new files")
        with warehouse.connect() as con:
            state = read_matching_state(con, registry.matching)
        watch.lap("read the warehouse")
        matched = match_batch(
            state, cleaned.records, registry.matching, backend_config(registry, warehouse),
            models_dir=models_dir(warehouse), overrides_file=registry.overrides_file(),
            run_id=run_id, watch=watch,
        )
        del state
        customers, touched = _customer_steps(registry, warehouse, reference,
                                             run_date(config, registry), cleaned, matched)
        watch.lap("golden, features, segments, enrichment")
        with warehouse.connect() as con:
            identity = identity_writes(con, matched.updates, run_id) if matched.updates else []
            passed = _write(con, [*raw.writes, *_cleaned_writes(cleaned), *customers, *identity],
                            lambda con: require(batch_gates(con, registry, warehouse)))
        watch.lap("write (one transaction)")
        context.log.info("gates passed: " + "; ".join(f"{g.name}: {g.description}"
                                                      for g in passed))
        move_to_loaded([path for _, path in loads])
        stats = {"files": len(loads), "new_records": cleaned.records.height,
                 "changed_records": matched.changed, "blocking_candidates": matched.candidates,
                 "records_rematched": matched.rematched_xref.height,
                 "customers_touched": touched, "seconds": watch.total}
        context.log.info(f"incremental refresh: {stats}")
        raw = [raw_key(name) for name in sorted({source.name for source, _ in loads})]
        yield from _materializations(warehouse, [*raw, *REWRITTEN], stats, config.files,
                                     watch.phases)

    @dg.job(name=INCREMENTAL_REFRESH, description="Match files dropped in incoming/<source>/ "
            "against existing customers; rebuild only the affected customers downstream.",
            tags={"cdi/job": INCREMENTAL_REFRESH},
            # One op: a child process per step would only add a Python start-up to each batch.
            executor_def=dg.in_process_executor)
    def incremental_refresh() -> None:
        incremental_match()

    return incremental_refresh


def _raw_step(registry: Registry, warehouse: WarehouseResource, loads: list,
              run_id: str) -> RawFiles:
    """The raw assets' step for each incoming file (raw contract, erased persons dropped),
    its lineage pointing at where the file is kept once loaded."""
    with warehouse.connect() as con:
        suppression = read_suppression_list(con)
        stored = {s.name: [r[0] for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'raw' "
            "AND table_name = ? ORDER BY column_index", [s.name]).fetchall()]
            for s in registry.sources}
    writes, frames = [], {}
    for source, path in loads:
        batch = prepare_raw_batch(load_source(registry, source, run_id=run_id), source,
                                  suppression, key=lambda: pseudonym_key(warehouse.root))
        frame = batch.frame.with_columns(pl.lit(str(loaded_path(path))).alias("_source_file"))
        writes.append(RowWrite("raw", source.name, frame.select(
            c for c in frame.columns if c in stored[source.name]), (source.record_id,)))
        frames.setdefault(source.name, []).append(frame)
    return RawFiles(writes, {name: pl.concat(parts, how="diagonal_relaxed")
                             for name, parts in frames.items()})


def _cleaned_writes(cleaned: CleanedBatch) -> list[RowWrite]:
    """The batch's cleaned rows: re-delivered records and events replace the stored ones."""
    return [
        RowWrite("cleaned", "customer_records", cleaned.records, tuple(KEYS)),
        RowWrite("cleaned", "activities", cleaned.events, ("source", "event_id")),
        RowWrite("cleaned", "quarantine", cleaned.quarantine, ("source", "source_file")),
    ]


def _customer_steps(
    registry: Registry, warehouse: WarehouseResource, reference: ReferenceResource,
    today: date, cleaned: CleanedBatch, matched: BatchMatch,
) -> tuple[list[RowWrite], int]:
    """Golden records, features, segments, enrichment and the 360 of the touched customers:
    those the batch re-matched and those its events (orders, say) point at."""
    referenced = cleaned.events.select(pl.col("customer_source").alias("source"),
                                       pl.col("customer_record_id").alias("source_record_id"))
    by_events = matched.xref.join(referenced, on=KEYS, how="semi").select("customer_id")
    touched = pl.concat([matched.touched, by_events]).unique()
    rebuilt = pl.concat([
        matched.rematched_xref,
        matched.xref.join(by_events, on="customer_id", how="semi")
        .join(matched.rematched_xref.select(KEYS), on=KEYS, how="anti"),
    ], how="diagonal_relaxed").select(*KEYS, "customer_id", "match_confidence")
    with warehouse.connect() as con:
        records, events = read_batch_inputs(
            con, rebuilt.select(KEYS),
            matched.xref.join(touched, on="customer_id", how="semi").select(KEYS),
            cleaned.records, cleaned.events)
        features_before = read_table(con, "golden", "customer_features")
        golden_before = con.sql(
            "SELECT customer_id, email, phone, phone_type FROM golden.customers").pl()
        previous = previous_addresses(con, quarter_of(today))
    own_events = events.filter(pl.col("customer_source") == pl.col("source"))
    golden = build_golden(records.select(GOLDEN_INPUT_COLUMNS), rebuilt, own_events,
                          registry.golden)
    features = build_features(golden.customers.select("customer_id"), events, matched.xref,
                              today).features
    # Scores are quantiles over all buyers; only the touched customers' rows are written.
    segments = build_segments(
        pl.concat([features_before.join(touched, on="customer_id", how="anti"), features],
                  how="diagonal_relaxed"),
        pl.concat([golden_before.join(touched, on="customer_id", how="anti"),
                   golden.customers], how="diagonal_relaxed"),
        registry.segments,
    ).join(golden.customers.select("customer_id"), on="customer_id", how="semi")
    enrichment = enrich_customers(golden.customers, previous, reference.provider(), today)
    rows = {
        CUSTOMERS: golden.customers, FIELD_LINEAGE: golden.lineage,
        CUSTOMER_FEATURES: features, CUSTOMER_SEGMENTS: segments,
        CUSTOMER_ENRICHMENT: enrichment,
        CUSTOMER_360: build_customer_360(golden.customers, features, segments, enrichment),
    }
    return [RowWrite(*key.path, frame, ("customer_id",), touched)
            for key, frame in rows.items()], touched.height


def batch_gates(con, registry: Registry, warehouse: WarehouseResource) -> list[GateResult]:
    """The full refresh's blocking gates, on the tables as the batch leaves them (inside
    its transaction): what fails would have stopped a full refresh at the same point.

    The cleaned contract and the batch's own conservation are checked by `clean_batch`
    before this; the model is the promoted one, which passed its sanity check then.
    """
    return [
        cleaned_gates.conservation(con, [s.name for s in registry.identity_sources]),
        matching_gates.every_record_mapped(con),
        matching_gates.cluster_size(con, registry.matching.max_cluster_size),
        matching_gates.linked_share(con, model_prior(models_dir(warehouse))),
        matching_gates.overrides_honoured(con, registry.overrides_file()),
        golden_gates.one_row_per_customer(con, "customers"),
        golden_gates.lineage_complete(con),
        segments_gates.every_customer_segmented(con),
        golden_gates.one_row_per_customer(con, "customer_360"),
    ]


def _write(con, rows: list[RowWrite], audit) -> list[GateResult]:
    """Every row of the batch in one transaction, committed only if `audit` (the gates)
    passes; returns the gates' results."""
    # A batch deletes a few rows in every row group of the big tables (lineage above all);
    # vacuuming them at this commit's checkpoint would double the write. The space comes
    # back when the next full_refresh rewrites the tables (erasure rewrites the whole file
    # regardless).
    results: list[GateResult] = []
    con.execute("SET max_vacuum_tasks = 0")
    try:
        write_all(con, (), rows, audit=lambda con: results.extend(audit(con)))
    finally:
        con.execute("RESET max_vacuum_tasks")
    return results


def _materializations(
    warehouse: WarehouseResource, keys: list[dg.AssetKey], stats: dict, files: list[str],
    phases: dict[str, float],
) -> Iterator[dg.AssetMaterialization]:
    """A materialization per rewritten table: its stored size and columns, and the batch's
    figures."""
    phase_table = "| phase | seconds |\n|---|---|\n" + "\n".join(
        f"| {name} | {s:.2f} |" for name, s in phases.items())
    batch = {**{k: dg.MetadataValue.int(v) if isinstance(v, int)
                else dg.MetadataValue.float(float(v)) for k, v in stats.items()},
             "files_loaded": dg.MetadataValue.text(", ".join(files)),
             "seconds_by_phase": dg.MetadataValue.md(phase_table)}
    with warehouse.connect() as con:
        tables = {key: stored_table_metadata(con, key) for key in keys}
    for key in keys:
        yield dg.AssetMaterialization(
            asset_key=key, description="Updated by incremental_refresh for the affected customers.",
            metadata={**tables[key], **batch})
