"""Matching layer: the Splink model, and the pass that turns records into customers."""

from pathlib import Path

import dagster as dg

from cdi_pipeline.defs.keys import (
    CLUSTERS,
    CUSTOMER_RECORDS,
    ID_HISTORY,
    ID_MAP,
    MODEL,
    PAIRS,
    REVIEW_QUEUE,
    XREF,
)
from cdi_pipeline.defs.shared.metadata import table_metadata
from cdi_pipeline.defs.shared.resources import WAREHOUSE_POOL, WarehouseResource
from cdi_pipeline.lib.matching.backends import BackendConfig
from cdi_pipeline.lib.matching.matching_pass import MatchRun, match_records
from cdi_pipeline.lib.matching.model import ModelFit, fit_model
from cdi_pipeline.lib.matching.model_store import promote_model
from cdi_pipeline.lib.matching.tables import (
    CLUSTERS_TABLE,
    ID_HISTORY_TABLE,
    ID_MAP_TABLE,
    PAIRS_TABLE,
    REVIEW_QUEUE_TABLE,
    XREF_TABLE,
    MatchTable,
)
from cdi_pipeline.lib.registry import MatchingConfig, Registry
from cdi_pipeline.lib.storage import frame_to_markdown, replace_tables

# The tables of one matching pass, their asset keys and kinds, in the order they are written.
MATCH_OUTPUTS = (
    (PAIRS, PAIRS_TABLE, ("splink", "duckdb")),
    (REVIEW_QUEUE, REVIEW_QUEUE_TABLE, ("duckdb",)),
    (CLUSTERS, CLUSTERS_TABLE, ("duckdb",)),
    (XREF, XREF_TABLE, ("duckdb",)),
    (ID_HISTORY, ID_HISTORY_TABLE, ("duckdb",)),
    (ID_MAP, ID_MAP_TABLE, ("duckdb",)),
)


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


def backend_config(registry: Registry, warehouse: WarehouseResource) -> BackendConfig:
    """Splink backend settings from the registry and the warehouse resource."""
    cfg = registry.matching
    return BackendConfig(
        backend=cfg.backend,
        memory_limit=warehouse.memory_limit,
        threads=warehouse.threads,
        temp_directory=warehouse.root / ".splink_tmp",
        spark_master=cfg.spark_master,
        spark_driver_memory=cfg.spark_driver_memory,
    )


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
        fit = fit_model(
            warehouse.connect, cfg, backend_config(registry, warehouse),
            models_dir=models_dir(warehouse), charts_dir=reports_dir(warehouse),
            retrain=config.retrain, log=context.log,
        )
        with warehouse.connect() as con:
            replace_tables(con, [fit.parameters])
        if fit.retrained:
            promote_model(models_dir(warehouse), fit.model)
        return dg.MaterializeResult(
            metadata=_model_metadata(fit), data_version=dg.DataVersion(fit.model.version)
        )

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                key, group_name="matching", deps=[CUSTOMER_RECORDS, MODEL],
                kinds=set(kinds), tags={"layer": "matching"},
                description=table.description,
            )
            for key, table, kinds in MATCH_OUTPUTS
        ],
        pool=WAREHOUSE_POOL,
        name="match_customers",
    )
    def match_customers(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        """Every cleaned record matched into customers with the current model; the pairs,
        review queue, clusters and identity tables replaced together."""
        run = match_records(
            warehouse.connect, cfg, backend_config(registry, warehouse),
            models_dir=models_dir(warehouse), overrides_file=registry.overrides_file(),
            charts_dir=reports_dir(warehouse), run_id=context.run.run_id, log=context.log,
        )
        with warehouse.connect() as con:
            replace_tables(con, list(run.writes.values()))
        for key, table, _ in MATCH_OUTPUTS:
            yield dg.MaterializeResult(asset_key=key,
                                       metadata=_match_metadata(run, table, cfg))

    return [match_model, match_customers]


def _model_metadata(fit: ModelFit) -> dict[str, object]:
    """What the model asset shows: the parameter table, the model and how it came about."""
    model = fit.model
    return {
        **table_metadata(fit.parameters),
        "model_version": dg.MetadataValue.text(model.version),
        "model_file": _link(model.path),
        "trained_at": dg.MetadataValue.text(model.trained_at),
        "retrained": dg.MetadataValue.bool(fit.retrained),
        "retrain_reason": dg.MetadataValue.text(fit.retrain_reason or "reused"),
        "training_seconds": dg.MetadataValue.float(round(fit.seconds, 2)),
        "comparisons": dg.MetadataValue.text(", ".join(fit.spec.comparisons)),
        "blocking_rules": dg.MetadataValue.md(
            "\n".join(f"- `{', '.join(r)}`" for r in fit.spec.blocking_rules)
        ),
        "em_sessions": dg.MetadataValue.md(frame_to_markdown(fit.em_sessions)),
        "parameters": dg.MetadataValue.md(frame_to_markdown(fit.parameters.frame, max_rows=80)),
        **{f"chart_{name}": _link(path) for name, path in fit.charts.items()},
    }


def _match_metadata(run: MatchRun, table: MatchTable, cfg: MatchingConfig) -> dict[str, object]:
    """What each table of the matching pass shows beside its row count and schema."""
    write = run.writes[table.qualified]
    extra: dict[str, object] = {}
    if table is PAIRS_TABLE:
        extra = {
            "model_version": dg.MetadataValue.text(run.model.version),
            "match_statistics": dg.MetadataValue.md(frame_to_markdown(run.statistics)),
            "comparisons_scored": dg.MetadataValue.int(run.outcome.stats["comparisons_scored"]),
            "comparisons_preflight": dg.MetadataValue.md(
                frame_to_markdown(run.outcome.preflight)),
            "matching_seconds": dg.MetadataValue.float(round(run.seconds, 2)),
            "match_threshold": dg.MetadataValue.float(cfg.match_threshold),
            **{f"chart_{n}": _link(p) for n, p in run.outcome.charts.items()},
        }
    elif table is REVIEW_QUEUE_TABLE:
        extra = {
            "review_band": dg.MetadataValue.text(
                f"{cfg.review_band[0]} <= p < {cfg.review_band[1]}"
            ),
            "preview": dg.MetadataValue.md(frame_to_markdown(run.review_preview, max_rows=10)),
        }
    elif table is CLUSTERS_TABLE:
        extra = {
            "customers": dg.MetadataValue.int(run.outcome.clusters.height),
            "largest_cluster": dg.MetadataValue.int(run.largest_cluster),
            "cluster_size_distribution": dg.MetadataValue.md(run.cluster_size_histogram()),
        }
    elif table is XREF_TABLE:
        extra = {
            "customers": dg.MetadataValue.int(run.outcome.clusters.height),
            "records_per_link_kind": dg.MetadataValue.md(
                frame_to_markdown(run.records_per_link_kind)),
        }
    elif table is ID_HISTORY_TABLE:
        extra = {"events_this_run": dg.MetadataValue.md(frame_to_markdown(run.id_events))}
    return {**table_metadata(write), **extra}
