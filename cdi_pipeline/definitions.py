"""The `cdi_pipeline` code location: every layer's assets, checks, jobs and resources."""

from __future__ import annotations

import logging
from pathlib import Path

import dagster as dg

from cdi_pipeline import settings
from cdi_pipeline.defs.cleaned.assets import build_cleaned_assets
from cdi_pipeline.defs.cleaned.checks import build_cleaned_checks
from cdi_pipeline.defs.enrichment.assets import build_enrichment_assets
from cdi_pipeline.defs.golden.assets import build_golden_assets
from cdi_pipeline.defs.golden.checks import build_golden_checks
from cdi_pipeline.defs.governance.assets import build_governance_assets
from cdi_pipeline.defs.jobs import (
    PUBLISH_REFRESH,
    build_jobs,
    build_publish_sensor,
    quarterly_refresh_schedule,
)
from cdi_pipeline.defs.matching.assets import build_matching_assets
from cdi_pipeline.defs.matching.checks import build_matching_checks
from cdi_pipeline.defs.matching.incremental import build_incremental
from cdi_pipeline.defs.published.assets import analytics_file, no_direct_identifiers
from cdi_pipeline.defs.quality.assets import field_profile_asset, invalid_value_share_check
from cdi_pipeline.defs.raw.assets import build_raw_assets
from cdi_pipeline.defs.segments.assets import build_segment_assets
from cdi_pipeline.defs.segments.checks import build_segment_checks
from cdi_pipeline.defs.shared.resources import FileReferenceResource, WarehouseResource
from cdi_pipeline.lib.registry import load_registry

# The library's progress messages (training steps, pre-flight pair counts, pairs scored) are
# INFO; dagster.yaml lists the `cdi_pipeline` logger so they reach the run logs in the UI.
logging.getLogger("cdi_pipeline").setLevel(logging.INFO)


def build_definitions(
    registry_file: Path | None = None, warehouse_dir: Path | None = None
) -> dg.Definitions:
    """Assemble the code location for one source registry and warehouse folder."""
    registry = load_registry(registry_file or settings.registry_path())
    incremental_job, incoming_sensor = build_incremental(registry)
    jobs = build_jobs()
    publish_job = next(j for j in jobs if j.name == PUBLISH_REFRESH)
    warehouse = WarehouseResource(
        directory=str(warehouse_dir or settings.warehouse_dir()),
        memory_limit=settings.duckdb_memory_limit(),
    )
    return dg.Definitions(
        assets=[
            *build_governance_assets(registry),
            *build_raw_assets(registry),
            build_cleaned_assets(registry),
            field_profile_asset,
            *build_matching_assets(registry),
            *build_golden_assets(registry),
            *build_segment_assets(registry),
            *build_enrichment_assets(registry),
            analytics_file,
        ],
        asset_checks=[
            *build_cleaned_checks(registry),
            invalid_value_share_check,
            *build_matching_checks(registry),
            *build_golden_checks(),
            *build_segment_checks(registry),
            no_direct_identifiers,
        ],
        jobs=[*jobs, incremental_job],
        schedules=[quarterly_refresh_schedule],
        sensors=[incoming_sensor, build_publish_sensor(incremental_job, publish_job)],
        resources={
            "warehouse": warehouse,
            "reference": FileReferenceResource(directory=str(settings.reference_dir())),
        },
    )


defs = build_definitions()
