"""Jobs: the main end-to-end refresh."""

from __future__ import annotations

import dagster as dg

FULL_REFRESH = "full_refresh"


def build_jobs() -> list[dg.UnresolvedAssetJobDefinition]:
    """The jobs of the code location."""
    full_refresh = dg.define_asset_job(
        name=FULL_REFRESH,
        selection=dg.AssetSelection.all(),
        description="Rebuild every layer from the raw source files to the published tables.",
        # One process: the layers run one after another on one warehouse file anyway, and this
        # saves a Python start-up per step.
        executor_def=dg.in_process_executor,
        tags={"cdi/job": FULL_REFRESH},
    )
    return [full_refresh]
