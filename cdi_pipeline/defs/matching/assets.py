"""Matching layer: the Splink model, and the pass that turns records into customers."""

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl

from cdi_pipeline.defs.cleaned.assets import CUSTOMER_RECORDS
from cdi_pipeline.defs.shared.metadata import table_metadata
from cdi_pipeline.defs.shared.resources import WAREHOUSE_POOL, WarehouseResource
from cdi_pipeline.lib.matching import engine
from cdi_pipeline.lib.matching.ids import HISTORY_SCHEMA, ID_MAP_SCHEMA
from cdi_pipeline.lib.matching.rules import read_overrides
from cdi_pipeline.lib.matching.run import match, match_fields, pair_bounds, score_pairs
from cdi_pipeline.lib.matching.sanity import (
    parameter_table,
    sanity_problems,
    training_warnings,
)
from cdi_pipeline.lib.matching.spec import derive_spec, prepare_input, read_records
from cdi_pipeline.lib.matching.tables import (
    CLUSTER_COLUMNS,
    HISTORY_COLUMNS,
    ID_MAP_COLUMNS,
    PAIR_COLUMNS,
    PARAMETER_COLUMNS,
    REVIEW_COLUMNS,
    XREF_COLUMNS,
    describe_columns,
)
from cdi_pipeline.lib.registry import Registry
from cdi_pipeline.lib.storage import (
    TableWrite,
    frame_to_markdown,
    replace_tables,
)

MODEL = dg.AssetKey(["matching", "model"])
PAIRS = dg.AssetKey(["matching", "pairs"])
REVIEW_QUEUE = dg.AssetKey(["matching", "review_queue"])
CLUSTERS = dg.AssetKey(["matching", "clusters"])
XREF = dg.AssetKey(["golden", "customer_xref"])
ID_HISTORY = dg.AssetKey(["golden", "id_history"])
ID_MAP = dg.AssetKey(["golden", "customer_id_map"])


@dataclass(frozen=True)
class MatchOutput:
    """One table the matching pass writes: its asset key, what it is, and its columns."""

    key: dg.AssetKey
    kinds: tuple[str, ...]
    description: str
    columns: Mapping[str, str]

    def table(self, frame: pl.DataFrame) -> TableWrite:
        """The table write for this output (schema and name from the asset key)."""
        schema, name = self.key.path
        return TableWrite(schema, name, frame, self.description,
                          describe_columns(self.columns, frame.columns))


MATCH_OUTPUTS = (
    MatchOutput(PAIRS, ("splink", "duckdb"), "Scored record pairs with per-comparison match "
                "weights and how each pair was decided (model, rule or steward).", PAIR_COLUMNS),
    MatchOutput(REVIEW_QUEUE, ("duckdb",), "Uncertain pairs for a data steward, closest to "
                "the threshold first, with both records side by side, the evidence and the "
                "suggested override.", REVIEW_COLUMNS),
    MatchOutput(CLUSTERS, ("duckdb",), "One row per customer cluster: size, sources and link "
                "strength.", CLUSTER_COLUMNS),
    MatchOutput(XREF, ("duckdb",), "The identity map: every source record and the customer_id "
                "it belongs to. Every later layer joins through it.", XREF_COLUMNS),
    MatchOutput(ID_HISTORY, ("duckdb",), "Every customer id event across runs: created, "
                "merged, split, moved, retired.", HISTORY_COLUMNS),
    MatchOutput(ID_MAP, ("duckdb",), "Every customer id ever issued and the id it resolves "
                "to now.", ID_MAP_COLUMNS),
)


class ModelRejected(RuntimeError):
    """A freshly trained model failed the sanity rules; it was not promoted."""


class MatchModelConfig(dg.Config):
    """Run settings of the matching model."""

    retrain: bool = False
    """Train a new model even when a saved one fits the data (otherwise it is reused)."""


def models_dir(warehouse: WarehouseResource) -> Path:
    """Folder of saved model files (model versions and `current.json`)."""
    return warehouse.root / "models"


def reports_dir(warehouse: WarehouseResource) -> Path:
    """Folder of the matching layer's HTML charts."""
    return warehouse.root / "reports" / "matching"


def backend_config(registry: Registry, warehouse: WarehouseResource) -> engine.BackendConfig:
    """Splink backend settings from the registry and the warehouse resource."""
    cfg = registry.matching
    return engine.BackendConfig(
        backend=cfg.backend,
        memory_limit=warehouse.memory_limit,
        threads=warehouse.threads,
        temp_directory=warehouse.root / ".splink_tmp",
        spark_master=cfg.spark_master,
        spark_driver_memory=cfg.spark_driver_memory,
    )


def _read_records(warehouse: WarehouseResource) -> pl.DataFrame:
    """The cleaned columns matching uses; lineage and attributes stay in the warehouse."""
    with warehouse.connect() as con:
        return read_records(con)


def _link(path: Path) -> dg.MetadataValue:
    return dg.MetadataValue.path(str(path))


def build_matching_assets(registry: Registry) -> list[dg.AssetsDefinition]:
    """The model asset and the matching pass for one registry."""
    cfg = registry.matching

    @dg.asset(
        key=MODEL,
        group_name="matching",
        deps=[CUSTOMER_RECORDS],
        kinds={"splink", "duckdb"},
        pool=WAREHOUSE_POOL,
        tags={"layer": "matching"},
    )
    def match_model(
        context: dg.AssetExecutionContext, config: MatchModelConfig, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        """The Splink model: comparisons chosen from populated fields, trained once, reused.

        Retrained when run config says `retrain: true` or the data's populated fields
        changed; a trained model that fails the sanity rules is rejected, not promoted.
        """
        frame = prepare_input(_read_records(warehouse), cfg.max_block_size, cfg.max_name_block_size)
        spec = derive_spec(frame, cfg.training_rules)
        folder = models_dir(warehouse)
        damaged = None
        try:
            current = engine.load_current_model(folder)
        except engine.ModelFileError as exc:
            # A damaged saved model is replaced, not trusted: retrain from the data.
            context.log.warning(str(exc))
            current, damaged = None, f"the saved model is unusable: {exc}"
        reason = None
        if damaged is not None:
            reason = damaged
        elif config.retrain:
            reason = "retraining requested in run config"
        elif current is None:
            reason = "no saved model yet"
        elif current.spec_fingerprint != spec.fingerprint():
            reason = "the populated fields changed since the saved model was trained"
        elif engine.trained_dialect(current.splink_settings) != cfg.backend:
            reason = (
                f"the saved model was trained on the "
                f"{engine.trained_dialect(current.splink_settings)} backend, "
                f"matching.backend is {cfg.backend}"
            )
        started = time.monotonic()
        if reason is None:
            model = current
            context.log.info(f"reusing model {model.version} trained {model.trained_at}")
        else:
            context.log.info(f"training a new model: {reason} ({frame.height:,} records)")
            with engine.open_backend(backend_config(registry, warehouse)) as db_api:
                settings, training = engine.train(
                    db_api, frame, spec, seed=cfg.seed, u_max_pairs=cfg.u_max_pairs,
                    em_max_pairs=cfg.em_max_pairs, em_max_iterations=cfg.em_max_iterations,
                    em_convergence=cfg.em_convergence,
                )
            for warning in training_warnings(training):
                context.log.warning(warning)
            problems = sanity_problems(settings)
            if problems:
                rejected = engine.save_model(folder, settings, spec, training, make_current=False)
                raise ModelRejected(
                    f"the trained model {rejected.version} is implausible and was not promoted "
                    f"(kept for inspection at {rejected.path}):\n  - "
                    + "\n  - ".join(problems)
                    + "\nThe previous model stays in use."
                )
            tf_tables = engine.term_frequencies(frame, engine.tf_columns(settings))
            # Saved now, promoted last: a run that fails below leaves the old model current.
            model = engine.save_model(
                folder, settings, spec, training, make_current=False, tf_tables=tf_tables
            )
        seconds = time.monotonic() - started

        params = parameter_table(model.splink_settings).with_columns(
            pl.lit(model.version).alias("model_version")
        )
        charts = write_model_charts(model, frame, reports_dir(warehouse))
        write = TableWrite(
            "matching",
            "model_parameters",
            params.select(list(PARAMETER_COLUMNS)),
            "m and u probabilities and match weight of every comparison level of the model "
            "in use.",
            describe_columns(PARAMETER_COLUMNS),
        )
        with warehouse.connect() as con:
            replace_tables(con, [write])
        if reason is not None:
            engine.promote_model(folder, model)
        return dg.MaterializeResult(
            metadata={
                **table_metadata(write),
                "model_version": dg.MetadataValue.text(model.version),
                "model_file": _link(model.path),
                "trained_at": dg.MetadataValue.text(model.trained_at),
                "retrained": dg.MetadataValue.bool(reason is not None),
                "retrain_reason": dg.MetadataValue.text(reason or "reused"),
                "training_seconds": dg.MetadataValue.float(round(seconds, 2)),
                "comparisons": dg.MetadataValue.text(", ".join(spec.comparisons)),
                "blocking_rules": dg.MetadataValue.md(
                    "\n".join(f"- `{', '.join(r)}`" for r in spec.blocking_rules)
                ),
                "em_sessions": dg.MetadataValue.md(
                    frame_to_markdown(pl.DataFrame(model.training).with_columns(
                        pl.col("blocking_rule").list.join(", ")
                    ))
                ),
                "parameters": dg.MetadataValue.md(frame_to_markdown(params, max_rows=80)),
                **{f"chart_{name}": _link(path) for name, path in charts.items()},
            },
            data_version=dg.DataVersion(model.version),
        )

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                out.key, group_name=out.key.path[0], deps=[CUSTOMER_RECORDS, MODEL],
                kinds=set(out.kinds), tags={"layer": out.key.path[0]},
                description=out.description,
            )
            for out in MATCH_OUTPUTS
        ],
        pool=WAREHOUSE_POOL,
        name="match_customers",
    )
    def match_customers(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        # The records are not kept: at ten million they are 4.4 GiB next to the prepared frame.
        frame = prepare_input(_read_records(warehouse), cfg.max_block_size, cfg.max_name_block_size)
        spec = derive_spec(frame, cfg.training_rules)
        model = engine.load_current_model(models_dir(warehouse))
        if model is None:
            raise RuntimeError("no trained model: materialise matching/model first")
        if model.spec_fingerprint != spec.fingerprint():
            raise RuntimeError(
                f"model {model.version} was trained for other fields than the data now has; "
                "materialise matching/model (it retrains automatically)"
            )
        overrides = read_overrides(registry.overrides_file(), frame.get_column("unique_id"))
        with warehouse.connect() as con:
            tables = {
                r[0] for r in con.sql(
                    "SELECT schema_name || '.' || table_name FROM duckdb_tables()"
                ).fetchall()
            }
            empty_xref = pl.DataFrame(schema={"source": pl.String,
                                              "source_record_id": pl.String,
                                              "customer_id": pl.String})
            previous_xref = (
                con.sql("SELECT source, source_record_id, customer_id "
                        "FROM golden.customer_xref").pl()
                if "golden.customer_xref" in tables else empty_xref
            )
            previous_map = (
                con.sql("SELECT * FROM golden.customer_id_map").pl()
                if "golden.customer_id_map" in tables else pl.DataFrame(schema=ID_MAP_SCHEMA)
            )
            previous_history = (
                con.sql("SELECT * FROM golden.id_history").pl()
                if "golden.id_history" in tables else pl.DataFrame(schema=HISTORY_SCHEMA)
            )
        started = time.monotonic()
        now = datetime.now(UTC).replace(tzinfo=None)
        with engine.open_backend(backend_config(registry, warehouse)) as db_api:
            linker = engine.linker_for(
                db_api, frame, model.splink_settings, model.term_frequencies
            )
            scoring = score_pairs(
                linker, spec, min_probability=cfg.min_pair_probability,
                budget=cfg.max_comparisons_per_record * max(frame.height, 1),
                charts_dir=reports_dir(warehouse),
                bounds=pair_bounds(frame, spec.blocking_rules),
            )
            # The linker holds the registered input (shares the frame's buffers).
            del linker
        # Only the columns clustering and the review queue read stay in memory from here.
        frame = match_fields(frame)
        outcome = match(
            frame, scoring, overrides, previous_xref, previous_map,
            threshold=cfg.match_threshold, review_band=cfg.review_band,
            birth_date_conflict_blocks_link=cfg.birth_date_conflict_blocks_link,
            given_name_conflict_blocks_link=cfg.given_name_conflict_blocks_link,
            strong_agreement=cfg.strong_agreement,
            birth_date_conflict_yields_to_link=cfg.birth_date_conflict_yields_to_link,
            attach_min_probability=cfg.attach_min_probability,
            # Far beyond the size check's limit: stop before ids are assigned from it.
            max_component_size=10 * cfg.max_cluster_size,
            run_id=context.run.run_id, model_version=model.version, now=now,
        )
        seconds = time.monotonic() - started
        context.log.info(f"matched {frame.height:,} records in {seconds:.1f}s: {outcome.stats}")
        history = pl.concat([previous_history.cast(HISTORY_SCHEMA), outcome.ids.events])
        frames = {
            PAIRS: outcome.pairs, REVIEW_QUEUE: outcome.review_queue,
            CLUSTERS: outcome.clusters, XREF: outcome.xref, ID_HISTORY: history,
            ID_MAP: outcome.ids.id_map,
        }
        writes = {out.key: out.table(frames[out.key]) for out in MATCH_OUTPUTS}
        with warehouse.connect() as con:
            replace_tables(con, list(writes.values()))

        sizes = (
            outcome.clusters.group_by("records").agg(pl.len().alias("clusters"))
            .sort("records").rename({"records": "cluster_size"})
        )
        events = outcome.ids.events.group_by("event").agg(pl.len().alias("count")).sort("event")
        stats_md = frame_to_markdown(
            pl.DataFrame({"figure": list(outcome.stats), "value": list(outcome.stats.values())})
        )
        yield dg.MaterializeResult(
            asset_key=PAIRS,
            metadata={
                **table_metadata(writes[PAIRS]),
                "model_version": dg.MetadataValue.text(model.version),
                "match_statistics": dg.MetadataValue.md(stats_md),
                "comparisons_scored": dg.MetadataValue.int(outcome.stats["comparisons_scored"]),
                "comparisons_preflight": dg.MetadataValue.md(frame_to_markdown(outcome.preflight)),
                "matching_seconds": dg.MetadataValue.float(round(seconds, 2)),
                "match_threshold": dg.MetadataValue.float(cfg.match_threshold),
                **{f"chart_{n}": _link(p) for n, p in outcome.charts.items()},
            },
        )
        yield dg.MaterializeResult(
            asset_key=REVIEW_QUEUE,
            metadata={
                **table_metadata(writes[REVIEW_QUEUE]),
                "review_band": dg.MetadataValue.text(
                    f"{cfg.review_band[0]} <= p < {cfg.review_band[1]}"
                ),
                "preview": dg.MetadataValue.md(frame_to_markdown(
                    outcome.review_queue.select(
                        "source_l", "source_record_id_l", "source_r", "source_record_id_r",
                        "match_probability", "suggested_action",
                    ), max_rows=10)),
            },
        )
        yield dg.MaterializeResult(
            asset_key=CLUSTERS,
            metadata={
                **table_metadata(writes[CLUSTERS]),
                "customers": dg.MetadataValue.int(outcome.clusters.height),
                "largest_cluster": dg.MetadataValue.int(
                    int(outcome.clusters.get_column("records").max() or 0)
                ),
                "cluster_size_distribution": dg.MetadataValue.md(_histogram_md(sizes)),
            },
        )
        yield dg.MaterializeResult(
            asset_key=XREF,
            metadata={
                **table_metadata(writes[XREF]),
                "customers": dg.MetadataValue.int(outcome.clusters.height),
                "records_per_link_kind": dg.MetadataValue.md(frame_to_markdown(
                    outcome.xref.group_by("linked_by").agg(pl.len().alias("records"))
                    .sort("linked_by")
                )),
            },
        )
        yield dg.MaterializeResult(
            asset_key=ID_HISTORY,
            metadata={
                **table_metadata(writes[ID_HISTORY]),
                "events_this_run": dg.MetadataValue.md(frame_to_markdown(events)),
            },
        )
        yield dg.MaterializeResult(asset_key=ID_MAP, metadata=table_metadata(writes[ID_MAP]))

    return [match_model, match_customers]


def _histogram_md(sizes: pl.DataFrame) -> str:
    """Cluster sizes as a markdown table with a bar per row (log-scaled to stay readable)."""
    peak = max(int(sizes.get_column("clusters").max() or 1), 1)
    bars = [
        "█" * max(1, round(20 * math.log1p(c) / math.log1p(peak)))
        for c in sizes.get_column("clusters")
    ]
    return frame_to_markdown(sizes.with_columns(pl.Series("bar", bars)), max_rows=50)


def write_model_charts(model, frame: pl.DataFrame, folder: Path) -> dict[str, Path]:
    """Match-weight and m/u charts of the model in use, as self-contained HTML."""
    target = folder / f"model_{model.version}"
    charts = {
        "match_weights": target / "match_weights.html",
        "m_u_parameters": target / "m_u_parameters.html",
    }
    if all(p.is_file() for p in charts.values()):
        return charts
    target.mkdir(parents=True, exist_ok=True)
    # The charts read only the settings, so a tiny in-memory DuckDB session is enough,
    # whichever backend trained the model (its SQL is transpiled to DuckDB's to be parsed).
    settings = engine.settings_in_dialect(model.splink_settings, "duckdb")
    with engine.open_backend(engine.BackendConfig(temp_directory=folder / ".tmp")) as db_api:
        linker = engine.linker_for(db_api, frame.head(10), settings)
        linker.visualisations.match_weights_chart().save(
            str(charts["match_weights"]), inline=True
        )
        linker.visualisations.m_u_parameters_chart().save(
            str(charts["m_u_parameters"]), inline=True
        )
    return charts
