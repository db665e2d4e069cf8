"""Incremental refresh: files dropped in `incoming/<source>/` are loaded, cleaned and matched
against the existing customers, and only the affected customers are rebuilt downstream."""

import hashlib
import shutil
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl

from cdi_pipeline.defs.cleaned.assets import ACTIVITIES, CUSTOMER_RECORDS, QUARANTINE
from cdi_pipeline.defs.golden.assets import (
    CUSTOMER_360,
    CUSTOMER_ENRICHMENT,
    CUSTOMER_FEATURES,
    CUSTOMER_SEGMENTS,
    CUSTOMERS,
    FIELD_LINEAGE,
)
from cdi_pipeline.defs.matching.assets import (
    CLUSTERS,
    ID_HISTORY,
    ID_MAP,
    PAIRS,
    REVIEW_QUEUE,
    XREF,
    backend_config,
    models_dir,
)
from cdi_pipeline.defs.shared.config import run_date
from cdi_pipeline.defs.shared.metadata import stored_table_metadata
from cdi_pipeline.defs.shared.resources import (
    WAREHOUSE_POOL,
    ReferenceResource,
    WarehouseResource,
)
from cdi_pipeline.instance_repair import repair
from cdi_pipeline.lib.cleaned.activities import clean_activity, empty_events
from cdi_pipeline.lib.cleaned.records import clean_source
from cdi_pipeline.lib.contracts import IDENTIFIER_PREFIX, QUARANTINE_COLUMNS, empty_frame
from cdi_pipeline.lib.enrichment.enrich import address_key, enrich_customers, quarter_of
from cdi_pipeline.lib.golden.customer_360 import build_customer_360
from cdi_pipeline.lib.golden.features import build_features
from cdi_pipeline.lib.golden.survivorship import GOLDEN_INPUT_COLUMNS, build_golden
from cdi_pipeline.lib.governance.erasure import drop_suppressed
from cdi_pipeline.lib.matching.backends import open_backend
from cdi_pipeline.lib.matching.blocking import pair_bounds
from cdi_pipeline.lib.matching.incremental import closure, identity_updates
from cdi_pipeline.lib.matching.input import RECORD_COLUMNS, UNIQUE_ID, prepare_input
from cdi_pipeline.lib.matching.linkers import linker_for
from cdi_pipeline.lib.matching.matching_pass import match
from cdi_pipeline.lib.matching.model_store import load_current_model
from cdi_pipeline.lib.matching.rules import read_overrides
from cdi_pipeline.lib.matching.scoring import score_pairs
from cdi_pipeline.lib.matching.spec import derive_spec
from cdi_pipeline.lib.privacy import pseudonym_key
from cdi_pipeline.lib.raw.sources import load_source
from cdi_pipeline.lib.registry import Registry
from cdi_pipeline.lib.segments.segments import build_segments
from cdi_pipeline.lib.storage import (
    RowWrite,
    quote_identifier,
    read_table,
    table_exists,
    write_all,
)
from cdi_pipeline.lib.timing import Stopwatch

INCREMENTAL_REFRESH = "incremental_refresh"
INCOMING_SENSOR = "incoming_files_sensor"
INCOMING_DIR = "incoming"
LOADED_DIR = "loaded"
# Tag naming the set of incoming files a run loads (a digest of their paths and times).
BATCH_TAG = "cdi/incoming_batch"
# Runs tried for one set of files before the sensor waits for someone to look at them.
MAX_ATTEMPTS = 3
_ENDED_BADLY = {dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
_FORMATS = {".csv": "csv", ".parquet": "parquet", ".jsonl": "jsonl"}


class IncomingConfig(dg.Config):
    """Files to load, as paths relative to the registry folder."""

    files: list[str]
    """e.g. incoming/crm_contacts/2026-12-01.csv; the folder names the source."""
    reference_date: str | None = None
    """ISO 'today' for features and enrichment; empty: registry, then the calendar."""


def incoming_files(registry: Registry) -> list[Path]:
    """Files waiting in incoming/<source>/ (not yet moved to loaded/), oldest first."""
    root = registry.base_dir / INCOMING_DIR
    names = {s.name for s in registry.sources}
    found = [
        p for p in root.glob("*/*")
        if p.is_file() and p.parent.name in names and p.suffix in _FORMATS
    ]
    return sorted(found, key=lambda p: (p.stat().st_mtime, str(p)))


def _source_of(registry: Registry, relative: str):
    path = (registry.base_dir / relative).resolve()
    if not path.is_relative_to((registry.base_dir / INCOMING_DIR).resolve()):
        raise ValueError(f"{relative} is not inside {registry.base_dir / INCOMING_DIR}")
    source = registry.source(path.parent.name)
    if _FORMATS.get(path.suffix) != source.format:
        raise ValueError(f"{path}: source {source.name!r} delivers {source.format} files")
    return source.model_copy(update={"path": path.relative_to(registry.base_dir)}), path


def build_incremental(registry: Registry):
    """The incremental job and the sensor that starts it."""
    cfg = registry.matching
    affected_keys = [CUSTOMER_RECORDS, ACTIVITIES, QUARANTINE, PAIRS, REVIEW_QUEUE, CLUSTERS,
                     XREF, ID_HISTORY, ID_MAP, CUSTOMERS, FIELD_LINEAGE, CUSTOMER_FEATURES,
                     CUSTOMER_SEGMENTS, CUSTOMER_ENRICHMENT, CUSTOMER_360]

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
    ):
        watch = Stopwatch(context.log, "incremental_match")
        run_id = context.run.run_id
        key = pseudonym_key(warehouse.root)
        loads = [_source_of(registry, f) for f in config.files]
        with warehouse.connect() as con:
            suppression = (read_table(con, "governance", "suppression_list")
                           if table_exists(con, "governance", "suppression_list") else None)
            raw_columns = {
                s.name: [r[0] for r in con.execute(
                    "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'raw' "
                    "AND table_name = ? ORDER BY column_index", [s.name]).fetchall()]
                for s in registry.sources
            }
        raw_writes, new_records, quarantine_rows, new_events = [], [], [], []
        for source, path in loads:
            frame = load_source(registry, source, run_id=run_id).frame
            frame = drop_suppressed(frame, source, suppression, key=lambda: key).frame
            final = path.parent / LOADED_DIR / path.name
            frame = frame.with_columns(pl.lit(str(final)).alias("_source_file"))
            known = raw_columns[source.name]
            raw_writes.append(RowWrite(
                "raw", source.name, frame.select([c for c in frame.columns if c in known]),
                (source.record_id,),
            ))
            if source.is_identity:
                result = clean_source(frame, source, run_id=run_id,
                                      gates=registry.gates_for(source))
                new_records.append(result.records)
                quarantine_rows.append(result.quarantine)
            if source.activity is not None:
                events = clean_activity(frame, source, run_id=run_id,
                                        earliest=registry.gates_for(source).event_date_earliest)
                new_events.append(events.events)
                quarantine_rows.append(events.quarantine)
            context.log.info(f"{path}: {frame.height:,} rows for {source.name}")
        watch.lap("load and clean the new files")

        with warehouse.connect() as con:
            # Matching needs a few columns of every record; the golden columns and the
            # events are read later, for the touched customers only.
            stored = [r[0] for r in con.sql(
                "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'cleaned' AND "
                "table_name = 'customer_records' ORDER BY column_index").fetchall()]
            match_columns = [*RECORD_COLUMNS,
                             *(c for c in stored if c.startswith(IDENTIFIER_PREFIX))]
            cleaned = con.sql(
                f"SELECT {', '.join(map(quote_identifier, match_columns))} "
                "FROM cleaned.customer_records").pl()
            no_records = con.sql("SELECT * FROM cleaned.customer_records LIMIT 0").pl()
            # Only what the batch needs: strong pairs (for one more hop), not every pair.
            previous = {
                "strong_pairs": con.sql(
                    "SELECT source_l, source_record_id_l, source_r, source_record_id_r "
                    "FROM matching.pairs WHERE match_probability >= $floor",
                    params={"floor": _floor(cfg)}).pl(),
                "xref": read_table(con, "golden", "customer_xref"),
                "id_map": read_table(con, "golden", "customer_id_map"),
            }
            features_before = read_table(con, "golden", "customer_features")
            golden_before = con.sql(
                "SELECT customer_id, email, phone, phone_type FROM golden.customers").pl()
            snapshots = (
                con.sql("SELECT * FROM golden.customer_snapshots WHERE quarter = (SELECT "
                        "max(quarter) FROM golden.customer_snapshots WHERE quarter < $q)",
                        params={"q": quarter_of(run_date(config, registry))}).pl()
                if table_exists(con, "golden", "customer_snapshots") else None
            )
        watch.lap("read the warehouse")
        fresh = (pl.concat(new_records, how="diagonal_relaxed") if new_records
                 else no_records)
        keys = ["source", "source_record_id"]
        changed = fresh.select(keys).join(cleaned.select(keys), on=keys, how="semi")
        identifiers = sorted({c for frame in (cleaned, fresh) for c in frame.columns
                              if c.startswith(IDENTIFIER_PREFIX)})
        records_all = pl.concat(
            [cleaned.join(changed, on=keys, how="anti"),
             fresh.select(c for c in (*RECORD_COLUMNS, *identifiers) if c in fresh.columns)],
            how="diagonal_relaxed",
        )
        del cleaned
        # Unsorted: the batch only looks records up; the closure is sorted before matching.
        prepared = prepare_input(records_all.select(*RECORD_COLUMNS, *identifiers),
                                 cfg.max_block_size, cfg.max_name_block_size, ordered=False)
        del records_all
        spec = derive_spec(prepared, cfg.training_rules)
        model = load_current_model(models_dir(warehouse))
        if model is None or model.spec_fingerprint != spec.fingerprint():
            raise RuntimeError(
                "the saved model does not fit the records with the new files (their fields "
                "differ); run full_refresh, which retrains"
            )
        watch.lap("prepare matching input")
        unique = pl.concat_str("source", pl.lit("|"), "source_record_id")
        new_ids = fresh.select(unique.alias(UNIQUE_ID)).get_column(UNIQUE_ID)
        changed_ids = changed.select(unique.alias(UNIQUE_ID)).get_column(UNIQUE_ID)
        updates = None
        if fresh.height:
            updates, found_candidates = _rematch(
                registry, warehouse, prepared, spec, model, new_ids, changed_ids, previous,
                run_id, watch,
            )
            xref_now, outcome_xref, touched = (updates.xref, updates.outcome.xref,
                                               updates.touched_ids)
            rematched = updates.closure_records.height
        else:
            found_candidates, rematched = 0, 0
            xref_now = previous["xref"]
            outcome_xref, touched = previous["xref"].clear(), previous["xref"].select(
                "customer_id").clear()
        # Customers the new events (orders, say) point at get new features as well.
        referenced = pl.concat(
            [e.select("customer_source", "customer_record_id") for e in new_events]
            or [empty_events().select("customer_source", "customer_record_id")]
        ).rename({"customer_source": "source", "customer_record_id": "source_record_id"})
        by_events = xref_now.join(referenced, on=keys, how="semi").select("customer_id")
        touched = pl.concat([touched, by_events]).unique()
        outcome_xref = pl.concat([
            outcome_xref,
            xref_now.join(by_events, on="customer_id", how="semi")
            .join(outcome_xref.select(keys), on=keys, how="anti"),
        ], how="diagonal_relaxed")
        # Golden records, features, segments and enrichment of the touched customers only.
        current = outcome_xref.select(*keys, "customer_id", "match_confidence")
        golden_records, events_all = _touched_rows(
            warehouse, current.select(keys),
            xref_now.join(touched, on="customer_id", how="semi").select(keys),
            fresh, changed, new_events,
        )
        own_events = events_all.filter(pl.col("customer_source") == pl.col("source"))
        golden = build_golden(golden_records.select(GOLDEN_INPUT_COLUMNS), current, own_events,
                              registry.golden)
        today = run_date(config, registry)
        features = build_features(golden.customers.select("customer_id"), events_all,
                                  xref_now, today).features
        features_all = pl.concat([
            features_before.join(touched, on="customer_id", how="anti"), features
        ], how="diagonal_relaxed")
        golden_all = pl.concat([
            golden_before.join(touched, on="customer_id", how="anti"), golden.customers
        ], how="diagonal_relaxed")
        # Scores are quantiles over all buyers; only the touched customers' rows are written.
        segments = build_segments(features_all, golden_all, registry.segments).join(
            golden.customers.select("customer_id"), on="customer_id", how="semi")
        previous_addresses = (
            snapshots.select("customer_id", "quarter", address_key().alias("address_key"))
            if snapshots is not None and snapshots.height else None
        )
        enrichment = enrich_customers(golden.customers, previous_addresses,
                                      reference.provider(), today)
        table_360 = build_customer_360(golden.customers, features, segments, enrichment)
        watch.lap("golden, features, segments, enrichment")
        by_customer = touched.select("customer_id")
        rows = [
            *raw_writes,
            RowWrite("cleaned", "customer_records", fresh, tuple(keys)),
            RowWrite("cleaned", "activities",
                     pl.concat(new_events, how="diagonal_relaxed") if new_events
                     else empty_events(), ("source", "event_id")),
            RowWrite("quality", "quarantine",
                     pl.concat(quarantine_rows, how="diagonal_relaxed") if quarantine_rows
                     else empty_frame(QUARANTINE_COLUMNS), ("source", "source_file")),
            RowWrite("golden", "customers", golden.customers, ("customer_id",), by_customer),
            RowWrite("golden", "field_lineage", golden.lineage, ("customer_id",), by_customer),
            RowWrite("golden", "customer_features", features, ("customer_id",), by_customer),
            RowWrite("segments", "customer_segments", segments, ("customer_id",), by_customer),
            RowWrite("enrichment", "customer_enrichment", enrichment, ("customer_id",),
                     by_customer),
            RowWrite("golden", "customer_360", table_360, ("customer_id",), by_customer),
        ]
        if updates is not None:
            rows += _identity_rows(updates, run_id)
        with warehouse.connect() as con:
            if updates is not None:
                # Pairs inside the closure are replaced; their keys come from the table.
                con.register("__closure", updates.closure_records.to_arrow())
                inside = (
                    "SELECT source_l, source_record_id_l, source_r, source_record_id_r FROM {t} "
                    "WHERE (source_l, source_record_id_l) IN (SELECT (source, "
                    "source_record_id) FROM __closure) AND (source_r, source_record_id_r) IN "
                    "(SELECT (source, source_record_id) FROM __closure)"
                )
                old_pairs = con.sql(inside.format(t="matching.pairs")).pl()
                old_review = con.sql(inside.format(t="matching.review_queue")).pl()
                con.unregister("__closure")
                rows += [
                    RowWrite("matching", "pairs", updates.outcome.pairs, _PAIR_KEY, old_pairs),
                    RowWrite("matching", "review_queue", updates.outcome.review_queue,
                             _PAIR_KEY, old_review),
                ]
            # A batch deletes a few rows in every row group of the big tables (lineage above
            # all); vacuuming them at this commit's checkpoint took half the write time. The
            # space comes back when the next full_refresh rewrites the tables (erasure rewrites
            # the whole file regardless).
            con.execute("SET max_vacuum_tasks = 0")
            try:
                write_all(con, (), rows)
            finally:
                con.execute("RESET max_vacuum_tasks")
        watch.lap("write (one transaction)")
        for _, path in loads:
            target = path.parent / LOADED_DIR / path.name
            target.parent.mkdir(exist_ok=True)
            shutil.move(str(path), target)
        seconds = watch.total
        stats = {
            "files": len(loads), "new_records": fresh.height, "changed_records": changed.height,
            "blocking_candidates": found_candidates, "records_rematched": rematched,
            "customers_touched": touched.height, "seconds": seconds,
        }
        context.log.info(f"incremental refresh: {stats}")
        phase_table = "| phase | seconds |\n|---|---|\n" + "\n".join(
            f"| {name} | {s:.2f} |" for name, s in watch.phases.items())
        batch = {**{k: dg.MetadataValue.int(v) if isinstance(v, int)
                    else dg.MetadataValue.float(float(v)) for k, v in stats.items()},
                 "files_loaded": dg.MetadataValue.text(", ".join(config.files)),
                 "seconds_by_phase": dg.MetadataValue.md(phase_table)}
        with warehouse.connect() as con:
            tables = {key: stored_table_metadata(con, key) for key in affected_keys}
        for asset_key in affected_keys:
            yield dg.AssetMaterialization(
                asset_key=asset_key,
                description="Updated by incremental_refresh for the affected customers.",
                metadata={**tables[asset_key], **batch},
            )

    @dg.job(name=INCREMENTAL_REFRESH, description="Match files dropped in incoming/<source>/ "
            "against existing customers; rebuild only the affected customers downstream.",
            tags={"cdi/job": INCREMENTAL_REFRESH},
            # One op: a child process per step would only add a Python start-up to each batch.
            executor_def=dg.in_process_executor)
    def incremental_refresh() -> None:
        incremental_match()

    @dg.sensor(job=incremental_refresh, name=INCOMING_SENSOR, minimum_interval_seconds=60,
               description="Starts incremental_refresh for files dropped in incoming/<source>/.")
    def incoming_files_sensor(context: dg.SensorEvaluationContext):
        waiting = incoming_files(registry)
        if not waiting:
            return dg.SkipReason(f"no files in {registry.base_dir / INCOMING_DIR}/<source>/")
        relative = [str(p.relative_to(registry.base_dir)) for p in waiting]
        stamp = ",".join(f"{r}@{p.stat().st_mtime_ns}" for r, p in zip(relative, waiting,
                                                                          strict=True))
        batch = hashlib.sha1(stamp.encode()).hexdigest()
        # A run killed hard stays 'started' with no process behind it: mark it failed (and
        # free its pool slot) so its batch is tried again instead of waiting for ever.
        repair(context.instance)
        runs = context.instance.get_runs(filters=dg.RunsFilter(tags={BATCH_TAG: batch}))
        busy = [r for r in runs if r.status not in _ENDED_BADLY]
        if busy:
            return dg.SkipReason(f"run {busy[0].run_id} already handles these files")
        if len(runs) >= MAX_ATTEMPTS:
            return dg.SkipReason(
                f"{len(runs)} runs for these files failed (last: {runs[0].run_id}); fix or "
                f"replace the files in {registry.base_dir / INCOMING_DIR} to try again"
            )
        # One run per distinct set of waiting files and attempt; a successful run moves the
        # files to loaded/, a failed one leaves them, and the next tick tries again.
        return dg.RunRequest(
            run_key=f"{batch}-{len(runs) + 1}",
            run_config={"ops": {"incremental_match": {"config": {"files": relative}}}},
            tags={BATCH_TAG: batch},
        )

    return incremental_refresh, incoming_files_sensor


def _rematch(
    registry: Registry, warehouse: WarehouseResource, prepared: pl.DataFrame, spec, model,
    new_ids: pl.Series, changed_ids: pl.Series, previous: dict, run_id: str,
    watch: Stopwatch,
):
    """Score the new records against their blocking candidates, widen to the affected
    customers, and run the full matching pass over that closure only."""
    cfg = registry.matching
    unique = pl.concat_str("source", pl.lit("|"), "source_record_id")
    floor = _floor(cfg)
    now = datetime.now(UTC).replace(tzinfo=None)
    with open_backend(backend_config(registry, warehouse)) as db_api:
        linkers = []

        def linker_over(frame: pl.DataFrame, link_to: pl.DataFrame | None = None):
            linkers.append(frame.height)
            return linker_for(db_api, frame, model.splink_settings,
                              model.term_frequencies, name_suffix=f"_{len(linkers)}",
                              link_to=link_to)

        found = closure(db_api, prepared, new_ids, changed_ids, previous["xref"], linker_over, spec,
                        floor=floor,
                        budget=cfg.max_comparisons_per_record * max(prepared.height, 1))
        watch.lap("score new records against their blocking candidates")
        # One more hop: an affected record's other strong pairs decide whether it may be
        # attached or linked, so their customers belong in the pass as well.
        members = found.records.get_column(UNIQUE_ID).implode()
        pair_key = {s: pl.concat_str(f"source_{s}", pl.lit("|"), f"source_record_id_{s}")
                    for s in ("l", "r")}
        strong = previous["strong_pairs"].select(
            pair_key["l"].alias("a"), pair_key["r"].alias("b"))
        neighbours = pl.concat([
            strong.filter(pl.col("a").is_in(members)).select(pl.col("b").alias(UNIQUE_ID)),
            strong.filter(pl.col("b").is_in(members)).select(pl.col("a").alias(UNIQUE_ID)),
        ])
        keyed_xref = previous["xref"].select(unique.alias(UNIQUE_ID), "customer_id")
        affected = pl.concat([
            found.affected_customers,
            keyed_xref.join(neighbours, on=UNIQUE_ID, how="semi").select("customer_id"),
        ]).unique()
        closure_ids = pl.concat([
            keyed_xref.join(affected, on="customer_id", how="semi").select(UNIQUE_ID),
            new_ids.to_frame(UNIQUE_ID),
        ]).unique()
        frame = prepared.join(closure_ids, on=UNIQUE_ID, how="semi").sort(UNIQUE_ID)
        overrides = read_overrides(registry.overrides_file(), prepared.get_column(UNIQUE_ID))
        scoring = score_pairs(
            db_api, linker_over(frame), spec, min_probability=cfg.min_pair_probability,
            budget=cfg.max_comparisons_per_record * max(frame.height, 1), charts_dir=None,
            bounds=pair_bounds(frame, spec.blocking_rules),
        )
    outcome = match(
        frame, scoring, overrides,
        previous["xref"].filter(unique.is_in(closure_ids.get_column(UNIQUE_ID).implode())),
        previous["id_map"], cfg, run_id=run_id, model_version=model.version, now=now,
    )
    updates = identity_updates(previous["xref"], previous["id_map"], outcome, closure_ids,
                               affected)
    watch.lap("re-match the affected customers")
    return updates, found.candidates


def _touched_rows(
    warehouse: WarehouseResource, records: pl.DataFrame, event_owners: pl.DataFrame,
    fresh: pl.DataFrame, changed: pl.DataFrame, new_events: list[pl.DataFrame],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The golden columns of `records` and the events of `event_owners` (both: source,
    source_record_id), stored rows overlaid with the batch's."""
    keys = ["source", "source_record_id"]
    with warehouse.connect() as con:
        con.register("__records", records.to_arrow())
        con.register("__owners", event_owners.to_arrow())
        stored = con.sql(
            f"SELECT {', '.join('c.' + c for c in GOLDEN_INPUT_COLUMNS)} FROM "
            "cleaned.customer_records c SEMI JOIN __records USING (source, source_record_id)"
        ).pl()
        events = con.sql(
            "SELECT a.* FROM cleaned.activities a SEMI JOIN __owners o ON "
            "a.customer_source = o.source AND a.customer_record_id = o.source_record_id"
        ).pl()
        con.unregister("__records")
        con.unregister("__owners")
    golden_records = pl.concat([
        stored.join(changed, on=keys, how="anti"),
        fresh.join(records, on=keys, how="semi").select(GOLDEN_INPUT_COLUMNS),
    ], how="diagonal_relaxed")
    # A re-delivered event replaces the stored one (the batch's version comes last).
    events = pl.concat([events, *new_events], how="diagonal_relaxed").unique(
        ["source", "event_id"], keep="last", maintain_order=True)
    return golden_records, events


_PAIR_KEY = ("source_l", "source_record_id_l", "source_r", "source_record_id_r")


def _floor(cfg) -> float:
    """The lowest pair probability any matching step acts on (attach, review, link)."""
    return max(cfg.min_pair_probability, min(
        cfg.match_threshold, cfg.review_band[0], cfg.attach_min_probability or 1.0))


def _identity_rows(updates, run_id: str) -> list[RowWrite]:
    """The identity tables' rows a batch replaces (nothing outside the closure moves)."""
    outcome = updates.outcome
    touched = updates.touched_ids
    return [
        RowWrite("golden", "customer_xref", outcome.xref, ("source", "source_record_id"),
                 updates.closure_records),
        RowWrite("matching", "clusters", outcome.clusters, ("customer_id",), touched),
        RowWrite("golden", "id_history", outcome.ids.events, ("run_id",),
                 pl.DataFrame({"run_id": [run_id]})),
        RowWrite("golden", "customer_id_map", updates.id_map_rows, ("customer_id",),
                 updates.id_map_rows.select("customer_id")),
    ]
