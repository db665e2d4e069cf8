"""Matching layer: the model, scored pairs, review queue, clusters and stable ids."""

from __future__ import annotations

import dagster as dg

from cdi_pipeline.defs.matching.assets import build_matching_assets
from cdi_pipeline.defs.matching.checks import build_matching_checks
from cdi_pipeline.lib.registry import Registry


def defs(registry: Registry) -> dg.Definitions:
    """This layer's assets and checks for one source registry."""
    return dg.Definitions(
        assets=build_matching_assets(registry), asset_checks=build_matching_checks(registry)
    )
