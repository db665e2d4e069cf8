"""Published layer: the analyst file, masked and described."""

from __future__ import annotations

import dagster as dg

from cdi_pipeline.defs.published.assets import analytics_file, no_direct_identifiers
from cdi_pipeline.lib.registry import Registry


def defs(registry: Registry) -> dg.Definitions:
    """This layer's assets and checks for one source registry."""
    return dg.Definitions(assets=[analytics_file], asset_checks=[no_direct_identifiers])
